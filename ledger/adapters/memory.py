"""The ledger's stores in memory: the engine's event store (`ledger.engine.store`) and
the talents' key store, for tests of every use case and rule without a database.

The append lock is the recorder's own lock, held for the whole session, as
PostgreSQL's table lock is: nothing else can be appended meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from uuid import UUID

from eventsourcing.persistence import AggregateRecorder, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder, POPOFactory

from ledger.engine.store import Changed, Overtaken


class MemoryReads:
    def __init__(self, recorder: MemoryRecorder) -> None:
        self._recorder = recorder

    def changed(self, read_versions: Mapping[UUID, int], events_up_to: int) -> dict[UUID, Changed]:
        found: dict[UUID, Changed] = {}
        with self._recorder.locked():
            for i, read in read_versions.items():
                if (version := self._recorder.version(i)) != read:
                    few = version - read <= events_up_to
                    events = list(self._recorder.select_events(i, gt=read)) if few else []
                    found[i] = Changed(version, events)
        return found

    def events_after(self, versions: Mapping[UUID, int]) -> list[StoredEvent]:
        with self._recorder.locked():
            return [e for i, v in versions.items() for e in self._recorder.select_events(i, gt=v)]


class MemoryAppendSession(MemoryReads):
    """Reads made holding the append lock. What it appends is inserted when it ends
    without an error, all at once, as PostgreSQL's transaction commits."""

    def __init__(self, recorder: MemoryRecorder) -> None:
        super().__init__(recorder)
        self._events: list[StoredEvent] = []
        self._snapshots: list[StoredEvent] = []
        self._positions: Sequence[int] = ()

    def changed_later(
        self, read_versions: Mapping[UUID, int], events_up_to: int
    ) -> Callable[[], dict[UUID, Changed]]:
        # answered when called, by the thread that holds the lock (never by the thread
        # that sends a decision's statements ahead, which the lock would block): nothing
        # else can append meanwhile, so it finds what it would have found when sent
        return partial(self.changed, dict(read_versions), events_up_to)

    def expect_current(self, read_versions: Mapping[UUID, int]) -> None:
        # checked at once: nothing else can append while the session holds the lock
        if self.changed(read_versions, 0):
            raise Overtaken("a version read is no longer current")

    def lock_waited(self) -> float:
        return 0.0  # not measured: a lock in memory is held for microseconds

    def append(self, stored: Sequence[StoredEvent]) -> None:
        self._events.extend(stored)

    def positions(self) -> list[int]:
        return list(self._positions)

    def insert_snapshots(self, snapshots: Sequence[StoredEvent]) -> None:
        self._snapshots.extend(snapshots)

    def end(self) -> None:
        if self._events:
            self._positions = self._recorder.insert_events(self._events) or ()
        if self._snapshots:
            assert self._recorder.snapshots is not None
            self._recorder.snapshots.insert_events(self._snapshots)


class MemoryRecorder(POPOApplicationRecorder):
    #: the application's snapshot recorder, which `MemoryFactory` makes it know
    snapshots: AggregateRecorder | None = None

    def locked(self) -> AbstractContextManager[bool]:
        """The recorder's lock, which every insert takes."""
        return self._database_lock

    def version(self, aggregate_id: UUID) -> int:
        index = self._stored_events_index.get(str(aggregate_id))
        return max(index) if index else 0

    @contextmanager
    def reads(self) -> Iterator[MemoryReads]:
        yield MemoryReads(self)

    @contextmanager
    def append_session(self) -> Iterator[MemoryAppendSession]:
        with self._database_lock:
            session = MemoryAppendSession(self)
            yield session
            session.end()

    def append_checked(
        self,
        read_versions: Mapping[UUID, int],
        stored: Sequence[StoredEvent],
        snapshots: Sequence[StoredEvent],
    ) -> tuple[list[int], float]:
        with self._database_lock:
            session = MemoryAppendSession(self)
            session.expect_current(read_versions)
            session.append(stored)
            session.insert_snapshots(snapshots)
            session.end()
        return session.positions(), 0.0


class MemoryFactory(POPOFactory):
    """eventsourcing's in-memory persistence, with the recorder above."""

    def application_recorder(self) -> MemoryRecorder:
        self._events = MemoryRecorder()
        return self._events

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        recorder = super().aggregate_recorder(purpose)
        if purpose == "snapshots":  # made after the application's recorder
            self._events.snapshots = recorder
        return recorder


class MemoryKeyStore:
    """`ledger.usecases.personal.KeyStore` in a dict."""

    def __init__(self) -> None:
        self._keys: dict[str, bytes | None] = {}

    def get_or_add(self, wrapped: Mapping[str, bytes]) -> dict[str, bytes | None]:
        for talent_id, key in wrapped.items():
            self._keys.setdefault(talent_id, key)
        return {talent_id: self._keys[talent_id] for talent_id in wrapped}

    def find(self, talent_id: str) -> bytes | None:
        return self._keys.get(talent_id)

    def destroy(self, talent_id: str) -> bool:
        had = self._keys.get(talent_id) is not None
        if talent_id in self._keys:
            self._keys[talent_id] = None
        return had
