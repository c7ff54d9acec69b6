"""API keys as the ledger records them: who issued each, to whom, with which roles and
until when, and who revoked it. The secret itself never enters an event; the table
`api_keys` holds its digest for authentication (`ledger.adapters.api_keys`)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import event

from ledger.domain.base import LedgerAggregate, stream_id
from ledger.domain.roles import check_duties


class ApiKey(LedgerAggregate):
    @staticmethod
    def create_id(name: str) -> UUID:
        return stream_id("api-keys", name)

    class Issued(LedgerAggregate.Created):
        name: str
        roles: list[str]
        expires_at: datetime | None

    @classmethod
    def issue(cls, name: str, roles: list[str], expires_at: datetime | None) -> ApiKey:
        check_duties(roles)
        return cls.recorded(name, roles, expires_at)

    @classmethod
    def recorded(cls, name: str, roles: list[str], expires_at: datetime | None) -> ApiKey:
        """A key as it was issued before keys were events: recorded as it is, so that
        it can be revoked, whatever it holds."""
        return cls(name, sorted(set(roles)), expires_at)

    @event(Issued)
    def __init__(self, name: str, roles: list[str], expires_at: datetime | None) -> None:
        self.name = name
        self.roles = roles
        self.expires_at = expires_at
        self.revoked = False

    class Revoked(LedgerAggregate.Event):
        pass

    def revoke(self) -> None:
        """Revoke the key; revoking it again changes nothing."""
        if not self.revoked:
            self._revoked()

    @event(Revoked)
    def _revoked(self) -> None:
        self.revoked = True
