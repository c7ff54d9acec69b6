"""Who may do what: the roles a key holds, and the principal acting with it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ledger.domain.errors import SeparationOfDuties

ROLES = ("admin", "clerk", "approver", "treasury", "auditor")
#: roles no one key may hold together: who approves a grant must not also pay it
APART = frozenset({"approver", "treasury"})


def check_duties(roles: Iterable[str]) -> None:
    if set(roles) >= APART:
        raise SeparationOfDuties("no key may hold both approver and treasury")


@dataclass(frozen=True)
class Principal:
    """The holder of an authenticated key: its name is recorded as the actor of every
    event it causes."""

    name: str
    roles: frozenset[str]
