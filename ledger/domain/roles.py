"""Who may do what: the roles a key holds, and the principal acting with it."""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("admin", "clerk", "approver", "treasury", "auditor")


@dataclass(frozen=True)
class Principal:
    """The holder of an authenticated key: its name is recorded as the actor of every
    event it causes."""

    name: str
    roles: frozenset[str]
