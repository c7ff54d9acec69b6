"""API keys issued and revoked, recorded in the chain with who did it (CONTRACT §13).
The secret and its digest are the adapter's (`ledger.adapters.api_keys`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ledger.domain.errors import NameTaken, NotFound, SeparationOfDuties
from ledger.domain.keys import ApiKey
from ledger.engine.unit_of_work import UnitOfWork
from ledger.usecases.registry import use_case


@dataclass(frozen=True)
class IssueKey:
    name: str
    roles: tuple[str, ...]
    expires_at: datetime | None


@dataclass(frozen=True)
class RevokeKey:
    name: str
    # what the key table knows of it: a key issued before keys were events is recorded
    # as issued when it is first revoked
    roles: tuple[str, ...]
    expires_at: datetime | None


@use_case(IssueKey, role="admin", refuses=(NameTaken, SeparationOfDuties))
def issue_key(uow: UnitOfWork, cmd: IssueKey) -> ApiKey:
    """A name is never reused, revoked or not: a key's history stays one key's."""
    if uow.find(ApiKey, cmd.name) is not None:
        raise NameTaken(f"a key named {cmd.name} exists (names are never reused)")
    return uow.add(ApiKey.issue(cmd.name, list(cmd.roles), cmd.expires_at))


@use_case(RevokeKey, role="admin", refuses=(NotFound,))
def revoke_key(uow: UnitOfWork, cmd: RevokeKey) -> ApiKey:
    key = uow.find(ApiKey, cmd.name)
    if key is None:
        key = uow.add(ApiKey.recorded(cmd.name, list(cmd.roles), cmd.expires_at))
    key.revoke()
    return key
