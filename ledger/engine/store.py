"""What the engine needs of an event store: reads of what changed, and an append
session in which nothing else can be appended (`ledger.adapters.postgres` on
PostgreSQL, `ledger.adapters.memory` in memory)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from eventsourcing.persistence import StoredEvent


@dataclass(frozen=True)
class Changed:
    """An aggregate whose version is no longer the one read: its version now, and its
    events after the one read, unless they were more than asked for (then none)."""

    version: int
    events: list[StoredEvent]


class Overtaken(Exception):
    """A version a session was told to expect (`AppendSession.expect_current`) was no
    longer current: the session recorded nothing."""


class Reads(Protocol):
    def changed(self, read_versions: Mapping[UUID, int], events_up_to: int) -> dict[UUID, Changed]:
        """The aggregates whose version is no longer the one read, with what they became:
        one query for the check and the read, when at most `events_up_to` were added."""

    def events_after(self, versions: Mapping[UUID, int]) -> list[StoredEvent]:
        """The events of each aggregate past the given version, in version order."""


class AppendSession(Reads, Protocol):
    """Reads made while no other writer, in any process, can append, and the append."""

    def changed_later(
        self, read_versions: Mapping[UUID, int], events_up_to: int
    ) -> Callable[[], dict[UUID, Changed]]:
        """`changed`, sent at once and answered when called: a decision still being
        taken goes on meanwhile, and events appended after it wait behind it."""

    def expect_current(self, read_versions: Mapping[UUID, int]) -> None:
        """Have the store check, ahead of what is appended next, that every version read
        is still current, without awaiting the answer: if one is not, the session
        records nothing and raises `Overtaken` when it ends."""

    def lock_waited(self) -> float:
        """Seconds the session waited for the append lock (known once it has read)."""

    def append(self, stored: Sequence[StoredEvent]) -> None:
        """Append events, after any appended before in the session; all are recorded
        when it ends, or none is."""

    def positions(self) -> list[int]:
        """The positions of the appended events, in order (known once it has ended)."""

    def insert_snapshots(self, snapshots: Sequence[StoredEvent]) -> None:
        """Record snapshots with the session's events, in its transaction."""


class EventStore(Protocol):
    def reads(self) -> AbstractContextManager[Reads]:
        """Reads holding no lock: what they find may be overtaken before an append
        session checks it again."""

    def append_session(self) -> AbstractContextManager[AppendSession]:
        """A session holding the append lock until it ends."""

    def append_checked(
        self,
        read_versions: Mapping[UUID, int],
        stored: Sequence[StoredEvent],
        snapshots: Sequence[StoredEvent],
    ) -> tuple[list[int], float]:
        """At once, as one append session would and in one statement: take the lock,
        check that every version read is current (else record nothing and raise
        `Overtaken`), append the events and snapshots. Answers the events' positions
        and the seconds the lock was waited for."""

    def max_notification_id(self) -> int | None:
        """The position of the last event recorded, None when there is none."""
