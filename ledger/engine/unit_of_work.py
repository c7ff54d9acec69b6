"""The unit of work: what one attempt of a use case read and wrote, with the versions
it read, so that the engine can check them under the append lock."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from datetime import date
from typing import Any, Protocol, TypeVar
from uuid import UUID

from ledger.domain.base import LedgerAggregate, is_retry
from ledger.domain.errors import InvalidState, NotFound, ValidationFailed

T = TypeVar("T")
A = TypeVar("A", bound=LedgerAggregate)


class Copies(Protocol):
    """Where a unit of work finds aggregates it was not handed: the process's cache,
    and the store for a resource as it was created; and what the business date is."""

    def today(self) -> date: ...

    def cached_copy(self, aggregate_id: UUID) -> LedgerAggregate | None: ...

    def has_copy(self, aggregate_id: UUID) -> bool: ...

    def original(self, cls: type[A], aggregate_id: UUID) -> A: ...


class Watcher(Protocol):
    """Told, every `every` aggregates handed out, how a decision is getting on: the
    engine sends a big decision's events while it is still deciding."""

    every: int

    def progress(self, uow: UnitOfWork) -> None: ...


class UnitOfWork:
    """The aggregates one attempt of a use case read and wrote, with their versions.

    It reads no database: it hands out copies of `known` aggregates (read under the
    append lock, or a long history just before it) or else of this process's cache,
    and takes an aggregate it has never seen to be missing. The engine checks every
    version it read before anything is recorded."""

    def __init__(
        self,
        copies: Copies,
        known: Mapping[UUID, LedgerAggregate | None] | None = None,
        watcher: Watcher | None = None,
    ) -> None:
        self._copies = copies
        self._watcher = watcher
        self._next_progress = watcher.every if watcher else 0
        self._known = known or {}
        self._versions: dict[UUID, int] = {}
        self._aggregates: dict[UUID, LedgerAggregate] = {}
        # every aggregate handed out or added, with its version then: what a command
        # changed is found among those handed out since it started, not all of them
        self._handed_out: list[tuple[LedgerAggregate, int]] = []
        # taken to be missing for want of a copy, with the class asked for
        self.unseen: dict[UUID, type[LedgerAggregate]] = {}
        # whether those are many, asked for at once (`read_all`): worth reading ahead
        self.reads_ahead = False

    def find(self, cls: type[A], key: Any) -> A | None:
        aggregate_id: UUID = cls.create_id(key)
        if aggregate_id in self._aggregates:
            found = self._aggregates[aggregate_id]
            assert isinstance(found, cls)
            self._hand_out(found, found.version)
            return found
        if aggregate_id in self._known:
            known = self._known[aggregate_id]
            aggregate = known.copy() if known is not None else None
        else:
            aggregate = self._copies.cached_copy(aggregate_id)
            if aggregate is None:
                self.unseen[aggregate_id] = cls
        if aggregate is None:
            self._versions[aggregate_id] = 0
            return None
        if not isinstance(aggregate, cls):
            raise InvalidState(f"{key!r} names a {type(aggregate).__name__}")
        self._versions[aggregate_id] = aggregate.version
        self._aggregates[aggregate_id] = aggregate
        self._hand_out(aggregate, aggregate.version)
        return aggregate

    def _hand_out(self, aggregate: LedgerAggregate, version: int) -> None:
        self._handed_out.append((aggregate, version))
        if self._watcher is not None and len(self._handed_out) >= self._next_progress:
            self._next_progress += self._watcher.every
            self._watcher.progress(self)

    def today(self) -> date:
        """The business date (in the ledger's time zone) the decision is taken on."""
        return self._copies.today()

    def read_all(self, wanted: Iterable[tuple[type[LedgerAggregate], Any]]) -> None:
        """Look up many aggregates a decision needs to exist (a run's thousands of
        grants). When this process lacked a copy of any, the attempt is refused for now:
        the engine then reads every one it lacked in one query and decides again, instead
        of a round under the append lock for each (a decision finding one missing stops
        there). What a decision creates needs no such look-up: taken to be missing, it
        is checked under the lock with every other version read, in the same query."""
        for cls, key in wanted:
            aggregate_id = cls.create_id(key)
            if not (
                aggregate_id in self._aggregates
                or aggregate_id in self._known
                or self._copies.has_copy(aggregate_id)
            ):
                self.unseen[aggregate_id] = cls
        if self.unseen:
            self.reads_ahead = True
            raise NotFound(f"{len(self.unseen)} aggregates are not read yet")

    def get(self, cls: type[A], key: Any, what: str) -> A:
        """Load an aggregate named in the path: missing is `not_found`."""
        found = self.find(cls, key)
        if found is None:
            raise NotFound(f"no {what} {key}")
        return found

    def refer(self, cls: type[A], key: Any, field: str, what: str) -> A:
        """Load an aggregate a body field refers to: missing is a `validation_error`."""
        found = self.find(cls, key)
        if found is None:
            raise ValidationFailed(field, f"no {what} {key}")
        return found

    def created_by(self, cls: type[A], key: Any, fingerprint: str) -> A | None:
        """The aggregate under `key` as the command with this fingerprint created it (a
        retry, to be answered as it was), or None when there is none yet. Another
        command's aggregate under the same key is an `idempotency_conflict`."""
        existing = self.find(cls, key)
        if not is_retry(existing, fingerprint, str(key)):
            return None
        assert existing is not None
        if existing.pending_events and existing.pending_events[0].originator_version == 1:
            return existing  # created earlier in this same unit of work
        return self._copies.original(cls, existing.id)

    def add(self, aggregate: A) -> A:
        """A new aggregate, to be recorded with the rest (`discard_created_since` relies
        on its id being new to this unit of work)."""
        assert aggregate.id not in self._aggregates, f"{aggregate.id} is in it already"
        self._aggregates[aggregate.id] = aggregate
        self._hand_out(aggregate, aggregate.version - len(aggregate.pending_events))
        return aggregate

    @property
    def aggregates(self) -> list[LedgerAggregate]:
        return list(self._aggregates.values())

    def mark(self) -> int:
        """A point in this unit of work to ask `events_since` about."""
        return len(self._handed_out)

    def handed_out_since(self, mark: int) -> list[LedgerAggregate]:
        """The aggregates handed out since `mark`, some maybe more than once."""
        return [a for a, _ in self._handed_out[mark:]]

    def events_since(self, mark: int) -> list[Any]:
        """The events added since `mark`, by commands that can only have changed what
        they were handed since."""
        first: dict[UUID, tuple[LedgerAggregate, int]] = {}
        for aggregate, version in self._handed_out[mark:]:
            first.setdefault(aggregate.id, (aggregate, version))
        # an aggregate's pending events end with its newest: take only those past `v`
        return [
            e for a, v in first.values() if a.version > v for e in a.pending_events[v - a.version :]
        ]

    def changed_since(self, mark: int) -> bool:
        """Whether `events_since(mark)` has any, without listing them (a settlement
        hands out tens of thousands of aggregates)."""
        return any(a.version > v for a, v in self._handed_out[mark:])

    def discard_created_since(self, mark: int) -> None:
        """Forget the aggregates a refused command created: nothing else has seen them,
        so its refusal leaves the others as they were (what it changed of them is
        another matter: `events_since`)."""
        created = {a.id for a, version in self._handed_out[mark:] if version == 0}
        for aggregate_id in created:
            del self._aggregates[aggregate_id]
        self._handed_out[mark:] = [h for h in self._handed_out[mark:] if h[0].id not in created]

    @property
    def read_versions(self) -> Mapping[UUID, int]:
        return self._versions


_ambient: ContextVar[UnitOfWork | None] = ContextVar("ambient_unit_of_work", default=None)


def ambient() -> UnitOfWork | None:
    """The unit of work a group or an atomic run shares, while one is running here."""
    return _ambient.get()


def run_in(uow: UnitOfWork, call: Callable[[], T]) -> T:
    """Run `call` (runs of use cases) inside `uow`, saving nothing."""
    token = _ambient.set(uow)
    try:
        return call()
    finally:
        _ambient.reset(token)
