"""How a use case is declared: once, beside its decision, with everything a caller
needs to offer it (the HTTP routes, `/v1/batch` and the demo all read this)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ledger.domain.errors import LedgerError
from ledger.engine.unit_of_work import UnitOfWork
from ledger.usecases.personal import Vault

C = TypeVar("C")
T = TypeVar("T")


@dataclass(frozen=True)
class UseCase(Generic[C, T]):
    """A write: the command it takes, the role that may ask for it, the refusals it can
    answer (besides a malformed or unknown reference), and its decision. `prepare`
    does, before the decision and outside any lock, what needs I/O (sealing a name)."""

    command: type[C]
    decide: Callable[[UnitOfWork, Any], T]
    role: str
    refuses: tuple[type[LedgerError], ...]
    prepare: Callable[[Vault, C], Any] | None = None

    def __call__(self, uow: UnitOfWork, command: Any) -> T:
        return self.decide(uow, command)


def use_case(
    command: type[C],
    *,
    role: str,
    refuses: tuple[type[LedgerError], ...] = (),
    prepare: Callable[[Vault, C], Any] | None = None,
) -> Callable[[Callable[[UnitOfWork, Any], T]], UseCase[C, T]]:
    """Declare the decorated decision as the use case of `command`."""

    def declare(decide: Callable[[UnitOfWork, Any], T]) -> UseCase[C, T]:
        return UseCase(command, decide, role, refuses, prepare)

    return declare
