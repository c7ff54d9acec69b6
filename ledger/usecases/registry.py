"""How a use case is declared: once, beside its decision, with everything a caller
needs to offer it (the HTTP routes, `/v1/batch` and the demo all read this), and how
the registries find what a new module declares."""

from __future__ import annotations

import hashlib
import importlib
import json
import pkgutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, is_dataclass
from functools import cache
from types import ModuleType
from typing import Any, Generic, TypeVar

from ledger.domain.errors import LedgerError
from ledger.engine.unit_of_work import UnitOfWork
from ledger.usecases.personal import Vault

C = TypeVar("C")
T = TypeVar("T")


#: the metadata of a command's field added after commands of its type were recorded
ADDED_LATER = {"added_later": True}


def fingerprint(command: object) -> str:
    """SHA-256 of the command's canonical JSON: equal for bodies that mean the same.

    Stored in every created aggregate, so its value must never change: commands are
    flat, and their fields are read as they are (`asdict` copied each one deeply). A
    field added later (`ADDED_LATER`) is left out while it is None, so that a command
    that does not use it keeps the fingerprint it had before the field existed."""
    later = _added_later(type(command))  # type: ignore[arg-type] # a class is hashable
    values = {k: v for k, v in vars(command).items() if not (v is None and k in later)}
    canonical = _CANONICAL.encode(values)
    return hashlib.sha256(f"{type(command).__name__}:{canonical}".encode()).hexdigest()


@cache
def _added_later(command: type[Any]) -> frozenset[str]:
    """A command type's fields added later (`ADDED_LATER`): asked of each command."""
    return frozenset(f.name for f in fields(command) if f.metadata.get("added_later"))


def _plain(value: Any) -> Any:
    """A field's value as JSON can hold it: a value made of fields as their object."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)


# what `json.dumps(values, sort_keys=True, default=_plain, ensure_ascii=False)` uses,
# made once: a settlement fingerprints 10,000 payments
_CANONICAL = json.JSONEncoder(sort_keys=True, default=_plain, ensure_ascii=False)


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


def modules_of(package: ModuleType) -> list[ModuleType]:
    """Every module of `package`, imported, by name: the registries of use cases, views
    and API resources read them, so that a new one is a new module and nothing else."""
    return [
        importlib.import_module(f"{package.__name__}.{module.name}")
        for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name)
    ]
