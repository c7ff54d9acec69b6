"""The engine: runs a use case's decision race-free, alone, in a group or atomically.

A decision (`decide(uow, command)`) first runs on this process's copies, without a
query. Then, holding the store's append lock, every version it read is checked;
whatever changed meanwhile, in this or any other process, is read there and the
decision runs again, until it rests only on what is current. Under the lock nothing
can change any more, so that decision is appended as it stands: a rule checked in a
decision holds under any concurrency, and a decision is never thrown away for a
lost race.
"""

from __future__ import annotations

import contextvars
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import ExitStack, suppress
from copy import deepcopy
from dataclasses import fields, replace
from datetime import date
from enum import Enum
from functools import partial
from itertools import islice
from typing import Any, TypeVar, cast, get_type_hints
from uuid import UUID

import orjson
from eventsourcing.application import AggregateNotFoundError, Application, Repository
from eventsourcing.domain import DomainEventProtocol, Snapshot
from eventsourcing.persistence import (
    JSONTranscoder,
    Mapper,
    RecordConflictError,
    StoredEvent,
    Transcoding,
)
from eventsourcing.utils import get_topic

from ledger.domain.base import LedgerAggregate
from ledger.domain.errors import LedgerError, NotFound
from ledger.engine.group_commit import Call, GroupCommitter, GroupObserver, commit_group
from ledger.engine.outcome import Attempt, Committed, Outcome, refusal
from ledger.engine.store import AppendSession, Changed, EventStore, Overtaken, Reads
from ledger.engine.unit_of_work import UnitOfWork, ambient, run_in

T = TypeVar("T")
C = TypeVar("C")
A = TypeVar("A", bound=LedgerAggregate)

#: a use case's decision: reads through the unit of work, changes aggregates, answers
Decide = Callable[[UnitOfWork, C], T]

CONFLICT_DEADLINE_SECONDS = 10.0
# A copy further behind than this many events catches up with the append lock
# released, a shorter tail under it (`Engine.commit`).
CATCH_UP_UNDER_LOCK = 1_000
# As many aggregates as this, never seen and asked for at once, are read with the
# append lock released too.
READ_AHEAD_AT = 100
# A long history (`LedgerAggregate.LONG_HISTORY`) is snapshotted, in the transaction of
# its events, each time it passes another multiple of this many: a process without a
# copy reads the latest snapshot and at most this many events after it.
SNAPSHOT_EVERY = 500
# A process whose copies other writers changed under its last commit, this recently,
# takes its next decision under the append lock only (`Engine.commit`).
OVERTAKEN_LATELY_SECONDS = 1.0
# A decision's events go to the store in statements of this many, each sent as soon as
# it is encoded, so that PostgreSQL inserts one while Python encodes the next.
APPEND_CHUNK = 2_000


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class ValueAsDict(Transcoding):
    """A dataclass of an aggregate's state (in its snapshots) as a dict of its fields;
    an enum field comes back as its enum, not its value."""

    def __init__(self, cls: type[Any]) -> None:
        self.type = cls
        self.name = f"{cls.__module__}:{cls.__qualname__}"
        self._enums = {
            name: hint
            for name, hint in get_type_hints(cls).items()
            if isinstance(hint, type) and issubclass(hint, Enum)
        }

    def encode(self, obj: Any) -> dict[str, Any]:
        return {f.name: getattr(obj, f.name) for f in fields(obj)}

    def decode(self, data: dict[str, Any]) -> Any:
        return self.type(
            **{k: self._enums[k](v) if k in self._enums else v for k, v in data.items()}
        )


class EventMapper(Mapper[UUID]):
    """The library's mapper, writing an event's JSON with orjson: the same bytes as its
    `JSONTranscoder`, in under half the time (docs/performance.md), which a settlement
    spends 40,000 times. What orjson would write its own way goes to the transcodings
    as in the json module (dates, values made of fields), save a `UUID` and an enum
    that is not a `str`, which it writes as a plain value where the json module would
    transcode or refuse them: no event holds one (tests/unit/test_event_encoding.py
    writes every event the demo records both ways), and snapshots, whose state is
    whatever an aggregate holds, go through the library's encoder, as does an event
    orjson cannot write (to raise the library's error)."""

    _OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        if isinstance(domain_event, Snapshot) or self.compressor or self.cipher:
            return super().to_stored_event(domain_event)
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        if (class_version := getattr(type(domain_event), "class_version", 1)) > 1:
            state["class_version"] = class_version
        try:
            encoded = orjson.dumps(state, default=self._transcoded, option=self._OPTIONS)
        except orjson.JSONEncodeError:  # the library's encoder, for its own error
            return super().to_stored_event(domain_event)
        topic = get_topic(type(domain_event))
        return StoredEvent(originator_id, originator_version, topic, encoded)

    def _transcoded(self, obj: Any) -> dict[str, Any]:
        transcoder = cast(JSONTranscoder, self.transcoder)
        transcoding = transcoder.types[type(obj)]
        return {"_type_": transcoding.name, "_data_": transcoding.encode(obj)}


class Contended(LedgerError):
    """Conflicting writers kept winning for the whole deadline: try again later."""

    code = "contended"


class AtomicRefusal(LedgerError):
    """One step of an atomic run was refused, so none of them was recorded."""

    def __init__(self, index: int, error: LedgerError) -> None:
        super().__init__(f"operation {index} was refused: {error.detail}")
        self.index = index
        self.error = error
        self.code = error.code


def _long_unseen(uow: UnitOfWork, attempt: Attempt[Any], known: Mapping[UUID, object]) -> set[UUID]:
    """What `uow` took to be missing for want of a copy and is not read yet, when it is
    worth reading with the lock released: a long history, or many aggregates, asked
    for at once (a disbursement run's thousands, `UnitOfWork.read_all`) or taken to
    be missing by a refused decision, which reads them all before its refusal stands
    (a settlement refused at its 500th item, the payments it created before)."""
    unseen = {i: cls for i, cls in uow.unseen.items() if i not in known}
    if (uow.reads_ahead or attempt.refused) and len(unseen) >= READ_AHEAD_AT:
        return set(unseen)
    return {i for i, cls in unseen.items() if cls.LONG_HISTORY}


def _to_record(uow: UnitOfWork, attempt: Attempt[Any]) -> list[DomainEventProtocol[UUID]]:
    """The events a decision adds, collected from its aggregates: none when it records
    nothing (a refusal)."""
    return [e for a in uow.aggregates for e in a.collect_events()] if attempt.record else []


def _encoded(
    mapper: Mapper[UUID], events: Sequence[DomainEventProtocol[UUID]]
) -> Iterator[list[StoredEvent]]:
    """`events` encoded a chunk at a time, each to be sent before the next is encoded:
    the store takes one while the next is encoded."""
    for start in range(0, len(events), APPEND_CHUNK):
        yield [mapper.to_stored_event(e) for e in events[start : start + APPEND_CHUNK]]


class _Abandoned(Exception):
    """Ends a sent-ahead session without recording anything."""


class _TooBigToGuess(BaseException):
    """Ends a decision taken under the lock on a guess (`Engine._commit_once`) once it
    has been handed APPEND_CHUNK aggregates: a big decision is taken the usual way,
    its events sent ahead. A `BaseException`, so that no command's handler takes it
    for the command's own failure."""


class _Bounded:
    """The watcher of a decision taken under the lock on a guess."""

    every = APPEND_CHUNK

    def progress(self, uow: UnitOfWork) -> None:
        raise _TooBigToGuess


class _SentAhead:
    """A big decision's events, sent while it is still deciding, so that PostgreSQL
    inserts while Python decides (docs/performance.md, "stop 29" and "stop 30").

    Every `every` aggregates the decision is handed, the events it added among those
    are encoded and posted to a sender thread, each statement behind the check of
    every version read before it: the first takes the append lock, so the rest of the
    decision is taken holding it. The decision never waits for the server to take a
    statement (a statement larger than the socket's buffer waits until the server has
    inserted the one before). Nothing is recorded unless the decision ends accepted,
    on versions that every check found current; otherwise the session is rolled back
    and the decision is taken again the usual way (`Engine.commit`). The aggregates
    keep their pending events meanwhile: the unit of work still answers what each
    command changed."""

    every = APPEND_CHUNK

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sessions = ExitStack()
        self._session: AppendSession | None = None
        self._checks: list[Callable[[], dict[UUID, Changed]]] = []  # the sender's
        self._checked = 0  # the versions read (in order) that a check was posted for
        self._looked = 0  # the hand-outs looked at
        self._unseen = 0  # the aggregates taken to be missing looked at
        self._sent: dict[UUID, int] = {}  # each aggregate's pending events posted
        self.events: list[DomainEventProtocol[UUID]] = []  # all posted, in order
        self._outbox: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._sender: threading.Thread | None = None
        self._error: BaseException | None = None  # what a statement raised, in the sender
        self._failed = False

    def progress(self, uow: UnitOfWork) -> None:
        if self._failed:
            return
        # (a refused command's creations, discarded, may take the mark back below
        # `_looked`: the attempt is refused then, and never recorded this way)
        looked, self._looked = self._looked, uow.mark()
        unseen, self._unseen = self._unseen, len(uow.unseen)
        if self._error is not None or any(
            c.LONG_HISTORY for c in islice(uow.unseen.values(), unseen, None)
        ):
            self._give_up()  # to be read with the lock released, then decided again
            return
        try:
            self._send(uow, uow.handed_out_since(looked))
        except Exception:  # met again when decided the usual way
            self._give_up()

    def _give_up(self) -> None:
        """Send no more, and release the lock now, not when the decision ends."""
        self._failed = True
        with suppress(Exception):  # a broken connection is the pool's to replace
            self.abandon()

    def _send(self, uow: UnitOfWork, aggregates: Iterable[LedgerAggregate]) -> None:
        """Post the events not sent yet of `aggregates`, encoded, behind the check of
        every version read before them, which must not see them (nor any sent before)."""
        fresh = []
        for aggregate in aggregates:
            pending = aggregate.pending_events
            if len(pending) > (sent := self._sent.get(aggregate.id, 0)):
                fresh += pending[sent:]
                self._sent[aggregate.id] = len(pending)
        if not fresh:
            return
        unchecked = self._unchecked(uow)
        for stored in _encoded(self._engine.mapper, fresh):
            self._post(partial(self._statements, unchecked, stored))
            unchecked = {}
        self.events += fresh

    def _unchecked(self, uow: UnitOfWork) -> dict[UUID, int]:
        """The versions read since the last check was posted."""
        versions = uow.read_versions
        unchecked = dict(islice(versions.items(), self._checked, None))
        self._checked = len(versions)
        return unchecked

    def _post(self, statements: Callable[[], None]) -> None:
        """Have the sender run `statements` after those posted before; the session is
        opened here, in the decision's thread, which ends it too."""
        if self._session is None:
            self._session = self._sessions.enter_context(self._engine.store.append_session())
        if self._sender is None:
            # in the request's context: its logs and traces name the statements
            sender = threading.Thread(
                target=contextvars.copy_context().run, args=(self._send_posted,), name="sent-ahead"
            )
            sender.start()
            self._sender = sender  # only once started: `_sent_all` joins it
        self._outbox.put(statements)

    def _send_posted(self) -> None:
        """The sender thread: the statements in the order posted, until one fails or
        the session is abandoned (the rest are then skipped)."""
        while (statements := self._outbox.get()) is not None:
            if self._error is None and not self._failed:
                try:
                    statements()
                except BaseException as e:  # handed to the decision's thread, whatever it is
                    self._error = e

    def _statements(self, unchecked: dict[UUID, int], stored: list[StoredEvent]) -> None:
        session = self._session
        assert session is not None
        if unchecked:
            self._checks.append(session.changed_later(unchecked, CATCH_UP_UNDER_LOCK))
        if stored:
            session.append(stored)

    def _sent_all(self) -> None:
        """Wait until the sender has sent (or skipped) everything posted."""
        if self._sender is not None:
            self._outbox.put(None)
            self._sender.join()
            self._sender = None

    def record(self, uow: UnitOfWork, attempt: Attempt[Any]) -> tuple[list[int], float] | None:
        """Send the rest and commit, answering the positions of `events` and the seconds
        the lock was waited for; or roll back, answering None, when the decision is to
        be taken again the usual way: it was refused, rests on an aggregate to be read
        first, or read a version no longer current (or a statement failed)."""
        if self._sender is None or self._failed:
            return None
        session = self._session
        assert session is not None  # opened before the sender started
        accepted = False
        try:
            if not (attempt.refused or not attempt.record or _long_unseen(uow, attempt, {})):
                self._send(uow, uow.aggregates)
                # what was read after the last events went
                self._post(partial(self._statements, self._unchecked(uow), []))
                self._sent_all()
                if self._error is None:
                    if snapshots := self._engine.snapshots_due(uow.aggregates, self.events):
                        session.insert_snapshots(snapshots)
                    accepted = not any(check() for check in self._checks)
                    waited = session.lock_waited()
        except Exception:  # a statement failed: met again when decided the usual way
            accepted = False
        finally:
            if not accepted:
                self.abandon()
        if not accepted:
            return None
        self._sessions.close()  # the commit: if it fails, whether it took is unknown
        return session.positions(), waited

    def abandon(self) -> None:
        """Roll back whatever was sent (nothing, if the session committed)."""
        self._failed = True  # the sender skips what is still posted
        try:
            self._sent_all()
        finally:
            try:
                with self._sessions:
                    raise _Abandoned
            except _Abandoned:
                pass
            self._session = None


class Engine(Application[UUID]):
    """An eventsourcing application whose store is an `EventStore` (PostgreSQL or
    memory), and which runs decisions as described above."""

    _committer: GroupCommitter | None = None
    # what other writers changed under this process's last commit, and when
    _overtaken: frozenset[UUID] = frozenset()
    _overtaken_at = 0.0
    #: the business date now; set by whoever opens it, who knows the time zone
    today: Callable[[], date]
    # the library's snapshot store and snapshots, written and read by `commit` alone
    is_snapshotting_enabled = True

    def construct_mapper(self) -> Mapper[UUID]:
        transcoder = self.construct_transcoder()
        assert isinstance(transcoder, JSONTranscoder)
        return EventMapper(transcoder)

    def construct_repository(self) -> Repository[UUID]:
        """The library's repository, without the snapshot store: only long histories
        have snapshots and `load` never reads one, so a load costs one query, not two."""
        repository = super().construct_repository()
        repository.snapshot_store = None
        return repository

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    @property
    def store(self) -> EventStore:
        return cast(EventStore, self.recorder)

    def start_group_commit(self, observe: GroupObserver | None = None) -> None:
        """From now on, concurrent decisions of this process share transactions;
        `observe` is told each group's size, how long its append took and how long it
        waited for the append lock."""
        self._committer = GroupCommitter(self, observe)

    def close(self) -> None:
        if self._committer is not None:
            self._committer.close()
            self._committer = None
        super().close()

    # --- running decisions ------------------------------------------------------

    def run(self, decide: Decide[C, T], command: C) -> Outcome[T]:
        """Run one decision: inside the ambient unit of work of a group or an atomic run
        (which records everything at once), through the group committer, or alone."""
        uow = ambient()
        if uow is not None:
            mark = uow.mark()
            value = decide(uow, command)
            # a snapshot: later commands of the same unit may change the same aggregate
            return Outcome(deepcopy(value), 0, replayed=not uow.changed_since(mark))
        committer = self._committer
        if committer is not None and not committer.in_writer:
            return committer.run(partial(self.run, decide, command))

        def attempt(uow: UnitOfWork) -> Attempt[T | LedgerError]:
            try:
                # a copy, as above, taken before the commit makes what the decision
                # changed this process's cached copies (which a load may fast-forward)
                return Attempt(deepcopy(decide(uow, command)))
            except LedgerError as e:
                return Attempt(refusal(e), refused=True, record=False)

        done = self.commit(attempt)
        if isinstance(done.value, LedgerError):
            raise done.value
        return Outcome(done.value, done.position, replayed=not done.recorded)

    def run_later(self, decide: Decide[C, T], command: C) -> Future[Outcome[T]]:
        """`run` in the next group commit, without waiting: for a caller that must not
        block, such as an event loop."""
        if self._committer is None:
            raise RuntimeError("group commit is not started")
        return self._committer.submit(partial(self.run, decide, command))

    def run_group(
        self,
        steps: Sequence[tuple[Decide[Any, Any], Any, contextvars.Context]],
        observe: GroupObserver | None = None,
    ) -> list[Future[Outcome[Any]]]:
        """Run decisions, each in its context, as one group commit in the calling thread:
        for a process whose one thread gathers the group itself (`ledger serve`'s writer).
        Their futures are done when it returns."""
        group = [
            Call(partial(self.run, decide, command), context) for decide, command, context in steps
        ]
        commit_group(self, group, observe)
        return [call.future for call in group]

    def run_atomic(self, steps: Sequence[tuple[Decide[Any, Any], Any]]) -> list[Outcome[Any]]:
        """Run several decisions as one unit of work: all are recorded in one
        transaction, or none is. A refusal raises `AtomicRefusal` naming the first
        step that failed."""

        def attempt(uow: UnitOfWork) -> Attempt[list[Outcome[Any]] | AtomicRefusal]:
            outcomes = []
            refused = None
            for index, (decide, command) in enumerate(steps):
                try:
                    outcomes.append(run_in(uow, partial(self.run, decide, command)))
                except LedgerError as e:
                    # the steps after it still run, so that everything the whole run
                    # reads is known when it is checked, not one refusal at a time
                    refused = refused or AtomicRefusal(index, refusal(e))
            if refused is not None:
                return Attempt(refused, refused=True, record=False)
            return Attempt(outcomes)

        done = self.commit(attempt)
        if isinstance(done.value, AtomicRefusal):
            raise done.value
        return [replace(o, position=done.position) for o in done.value]

    # --- the commit ---------------------------------------------------------------

    def commit(
        self,
        run: Callable[[UnitOfWork], Attempt[T]],
        answer: Callable[[Committed[T]], None] | None = None,
    ) -> Committed[T]:
        """Decide with `run`, then record what it changed, race-free; `answer` is told
        what was recorded before the process keeps the new copies (a settlement's
        50,000 take a tenth of a second), so its callers need not wait for that.

        `run` first decides on this process's copies, without a query. A decision
        that is not refused is then recorded by one statement, which checks every
        version it read (`_record_checked`); one found stale there records nothing and
        is taken again under the lock, what it read brought current there first.
        Otherwise (a refusal, a big decision), holding the append lock, every version
        it read is checked; what changed (or what a refusal may have missed) is read
        there, and `run` decides again, until a decision rests only on what is
        current. Under the lock nothing can change any more, so that decision is
        recorded as it stands. A fund year this process has
        never seen, or any copy more than CATCH_UP_UNDER_LOCK events behind, is read
        with the lock released (once per decision), and checked under it like any
        other. A big decision taken with the lock released sends its events as it
        goes (`_SentAhead`), and is recorded at once when every check finds what it
        read current. A process whose copies others changed under its last commit,
        lately, skips the first decision: it would be taken again (docs/design.md)."""
        deadline = time.monotonic() + CONFLICT_DEADLINE_SECONDS
        guess = True
        while True:
            try:
                return self._commit_once(run, answer, guess)
            except (Overtaken, _TooBigToGuess):  # the guess missed, or it is a big one:
                guess = False  # nothing was recorded; decided on the copies first
            except RecordConflictError:  # something wrote an aggregate it never read
                if time.monotonic() > deadline:
                    raise Contended("too many concurrent writers; retry") from None
                time.sleep(random.uniform(0.001, 0.02))  # noqa: S311 - jitter, not crypto

    def _commit_once(
        self,
        run: Callable[[UnitOfWork], Attempt[T]],
        answer: Callable[[Committed[T]], None] | None,
        guess: bool,
    ) -> Committed[T]:
        known: dict[UUID, LedgerAggregate | None] = {}
        store = self.store
        overtaken: set[UUID] = set()  # what others changed under this process's copies
        # Overtaken lately, a decision on this process's copies would be taken again
        # under the lock: it is taken there only, once what others change is current.
        hot = self._overtaken_lately() if guess else {}
        decided: tuple[UnitOfWork, Attempt[T]] | None = None
        ahead: set[UUID] = set()
        read_ahead: set[UUID] = set()
        waited = 0.0
        decide_first = not hot  # on this process's copies, with the lock released
        while True:
            if ahead or decide_first:
                decide_first = False
                if ahead:
                    read_ahead |= ahead
                    unseen = decided[0].unseen if decided is not None else {}
                    bases = self._bases(dict.fromkeys(ahead), known)
                    with store.reads() as reads:
                        self._read_current(reads, self._from_snapshots(bases, unseen), known)
                uow, attempt, done = self._decide_sending_ahead(run, known, answer)
                if done is not None:
                    self._note_overtaken(overtaken)
                    return done
                decided = uow, attempt
                # A decision may rest on a fund year this process has never seen (taken
                # to be missing), or on a copy far behind. Its first read replays all its
                # events, seconds for a long year, which every writer of every process
                # would wait out under the lock: it is read with the lock released, each
                # at most once (so that writers elsewhere cannot keep it behind), and
                # under the lock only what changed since is read.
                ahead = _long_unseen(uow, attempt, known)
                pending = sum(len(a.pending_events) for a in uow.aggregates)
                if guess and not ahead and not attempt.refused and pending <= APPEND_CHUNK:
                    done = self._record_checked(uow, attempt, answer, overtaken)
                    if done is not None:
                        return done
                    # a copy it read was stale: decided again under the lock, once what
                    # it read is current there
                    hot, decided = dict(uow.read_versions), None
                continue
            with store.append_session() as session:
                if decided is None:
                    decided, ahead = self._decide_on_a_guess(
                        session, run, hot, known, read_ahead, overtaken
                    )
                else:
                    uow, attempt, ahead = self._decide_again(
                        session, run, *decided, known, read_ahead, overtaken
                    )
                    decided = uow, attempt
                if not ahead:
                    assert decided is not None  # with nothing ahead, it has decided
                    uow, attempt = decided
                    # what `save` would do here (a fast-forwarding cache, snapshots of
                    # long histories), less its protocol checks of every aggregate (6 %
                    # of a batch's time), and in the session's transaction
                    events = _to_record(uow, attempt)
                    for stored in _encoded(self.mapper, events):
                        session.append(stored)
                    if snapshots := self.snapshots_due(uow.aggregates, events):
                        session.insert_snapshots(snapshots)
                    waited += session.lock_waited()
                    break
                waited += session.lock_waited()
        self._note_overtaken(overtaken)
        # the positions are answered with the commit, which released the lock
        return self._committed(uow, attempt, events, session.positions(), waited, answer)

    def _record_checked(
        self,
        uow: UnitOfWork,
        attempt: Attempt[T],
        answer: Callable[[Committed[T]], None] | None,
        overtaken: set[UUID],
    ) -> Committed[T] | None:
        """Record a decision taken on this process's copies, which are current unless
        another process wrote since: the store takes the lock, checks every version
        read and appends, in one statement, no answer awaited holding the lock. None
        when a copy was stale: nothing was recorded."""
        events = _to_record(uow, attempt)
        stored = [self.mapper.to_stored_event(e) for e in events]  # at most one chunk
        snapshots = self.snapshots_due(uow.aggregates, events)
        try:
            positions, waited = self.store.append_checked(uow.read_versions, stored, snapshots)
        except Overtaken:
            return None
        self._note_overtaken(overtaken)
        return self._committed(uow, attempt, events, positions, waited, answer)

    def _overtaken_lately(self) -> dict[UUID, int]:
        """The versions of this process's copies of what other writers changed under
        its last commit, if that was lately (OVERTAKEN_LATELY_SECONDS): what is best
        brought current before deciding, under the lock."""
        if time.monotonic() - self._overtaken_at > OVERTAKEN_LATELY_SECONDS:
            return {}
        return {i: a.version for i in self._overtaken if (a := self._cached(i)) is not None}

    def _note_overtaken(self, overtaken: set[UUID]) -> None:
        """Remember what other writers changed under this commit's copies (nothing: the
        next decision is taken on this process's copies first, as usual). Only a
        guess at where the next decision is best taken: every version it reads is
        checked under the lock whatever this holds."""
        self._overtaken = frozenset(overtaken)
        self._overtaken_at = time.monotonic()

    def _decide_on_a_guess(
        self,
        session: AppendSession,
        run: Callable[[UnitOfWork], Attempt[T]],
        hot: Mapping[UUID, int],
        known: dict[UUID, LedgerAggregate | None],
        read_ahead: set[UUID],
        overtaken: set[UUID],
    ) -> tuple[tuple[UnitOfWork, Attempt[T]] | None, set[UUID]]:
        """Under the lock, bring current the copies in `hot` (their check goes with the
        lock, and what changed comes with it), then decide, and have the server check
        what else the decision read ahead of its events: if that changed too, nothing
        is recorded (`Overtaken`, in `commit`). A refusal may rest on what it has not
        read yet (`read_all`): it is checked as any other (`_decide_again`). Answers
        the decision, and what to read with the lock released first (a copy too far
        behind: then no decision was taken)."""
        changes = session.changed(hot, CATCH_UP_UNDER_LOCK)
        versions = {i: c.version for i, c in changes.items()}
        if behind := self._catch_up(session, versions, changes, known, read_ahead):
            overtaken.update(i for i in changes if hot.get(i))  # not what it never had
            return None, behind
        uow = UnitOfWork(self, known, watcher=_Bounded())
        attempt = run(uow)
        # what it read of them: a group that read none (no proposal in it) is no
        # reason to decide the next one under the lock
        overtaken.update(i for i in changes.keys() & uow.read_versions.keys() if hot.get(i))
        if attempt.refused:
            uow, attempt, ahead = self._decide_again(
                session, run, uow, attempt, known, read_ahead, overtaken
            )
        elif not (ahead := _long_unseen(uow, attempt, known)):
            session.expect_current(uow.read_versions)
        return (uow, attempt), ahead

    def _decide_sending_ahead(
        self,
        run: Callable[[UnitOfWork], Attempt[T]],
        known: Mapping[UUID, LedgerAggregate | None],
        answer: Callable[[Committed[T]], None] | None,
    ) -> tuple[UnitOfWork, Attempt[T], Committed[T] | None]:
        """Decide with the lock released, on `known` or else the cache, a big decision's
        events going ahead (`_SentAhead`): recorded if they could be, else to be
        checked and recorded the usual way."""
        ahead_of_time = _SentAhead(self)
        uow = UnitOfWork(self, known, watcher=ahead_of_time)
        try:
            attempt = run(uow)
        except BaseException:
            with suppress(Exception):  # the decision's own error is the one to raise
                ahead_of_time.abandon()
            raise
        if (sent := ahead_of_time.record(uow, attempt)) is None:
            return uow, attempt, None
        for aggregate in uow.aggregates:
            aggregate.collect_events()  # recorded: no longer pending
        positions, waited = sent
        done = self._committed(uow, attempt, ahead_of_time.events, positions, waited, answer)
        return uow, attempt, done

    def _committed(
        self,
        uow: UnitOfWork,
        attempt: Attempt[T],
        events: Sequence[DomainEventProtocol[UUID]],
        positions: Sequence[int],
        waited: float,
        answer: Callable[[Committed[T]], None] | None,
    ) -> Committed[T]:
        """What was recorded, told to `answer` before the process keeps the new copies."""
        recorded = list(zip(events, positions, strict=True))
        # When nothing was recorded, any position at or after the decision will do for
        # read-your-writes, and the head is one index lookup away.
        position = max(positions, default=0) or (self.store.max_notification_id() or 0)
        committed = Committed(attempt.value, recorded, position, waited)
        if answer is not None:
            answer(committed)
        self._remember(uow)
        return committed

    def _decide_again(
        self,
        session: AppendSession,
        run: Callable[[UnitOfWork], Attempt[T]],
        uow: UnitOfWork,
        attempt: Attempt[T],
        known: dict[UUID, LedgerAggregate | None],
        read_ahead: set[UUID],
        overtaken: set[UUID],
    ) -> tuple[UnitOfWork, Attempt[T], set[UUID]]:
        """Under the lock, read what changed since `uow` read it and, for a refusal,
        what it took to be missing (in the version check's query), and decide again,
        until the decision rests only on what is current (answering no aggregate).
        Or stop early, before reading anything, answering the aggregates better read
        with the lock released: a fund year never seen, or any copy more than
        CATCH_UP_UNDER_LOCK events behind the base it would be read from, unless it
        was read ahead already. Nothing is appended while the lock is held, so a
        version found current here stays current: a decision taken again is checked
        only for what it read otherwise (often nothing, and no query)."""
        current: dict[UUID, int] = {}  # the version of each aggregate, as of the lock
        while True:
            if unseen := _long_unseen(uow, attempt, known):  # what is read ahead is known
                return uow, attempt, unseen
            unchecked = {i: v for i, v in uow.read_versions.items() if current.get(i) != v}
            changes = session.changed(unchecked, CATCH_UP_UNDER_LOCK) if unchecked else {}
            versions: dict[UUID, int | None] = {i: c.version for i, c in changes.items()}
            current.update(unchecked)
            current.update({i: c.version for i, c in changes.items()})
            if attempt.refused:
                versions.update(dict.fromkeys(uow.unseen.keys() - known.keys() - versions.keys()))
            if not versions:
                return uow, attempt, set()
            overtaken.update(i for i in changes if unchecked[i])  # not what it never had
            if behind := self._catch_up(session, versions, changes, known, read_ahead):
                return uow, attempt, behind
            current.update({i: a.version if (a := known[i]) else 0 for i in versions})
            uow = UnitOfWork(self, known)
            attempt = run(uow)

    def _catch_up(
        self,
        session: Reads,
        versions: Mapping[UUID, int | None],
        changes: Mapping[UUID, Changed],
        known: dict[UUID, LedgerAggregate | None],
        read_ahead: set[UUID],
    ) -> set[UUID]:
        """Bring `known` up to the given `versions`, with the events that came with the
        check (`changes`) when they are all there; or, reading nothing, answer those
        more than CATCH_UP_UNDER_LOCK events behind (unless read ahead already)."""
        bases = self._bases(versions, known)
        behind = {
            i
            for i, version in versions.items()
            if version is not None
            and version - (base.version if (base := bases[i]) else 0) > CATCH_UP_UNDER_LOCK
        } - read_ahead
        if behind:
            return behind
        # what changed came with the check, when read from the base it applies to
        fetched = {
            i: c.events
            for i, c in changes.items()
            if len(c.events) == c.version - (base.version if (base := bases[i]) else 0)
        }
        self._read_current(session, bases, known, fetched)
        return set()

    def _bases(
        self, versions: Mapping[UUID, int | None], known: Mapping[UUID, LedgerAggregate | None]
    ) -> dict[UUID, LedgerAggregate | None]:
        """What to bring the given aggregates up to date from (at their current
        version, when known): the copy in `known` or else in the cache when it is not
        ahead, else nothing (from their first event)."""
        bases: dict[UUID, LedgerAggregate | None] = {}
        for aggregate_id, version in versions.items():
            base = known.get(aggregate_id) or self.cached_copy(aggregate_id)
            bases[aggregate_id] = (
                base if base is not None and (version is None or base.version <= version) else None
            )
        return bases

    def _from_snapshots(
        self,
        bases: dict[UUID, LedgerAggregate | None],
        unseen: Mapping[UUID, type[LedgerAggregate]],
    ) -> dict[UUID, LedgerAggregate | None]:
        """`bases`, where a long history has a snapshot newer than its base (none, or a
        copy far behind), from that snapshot: one query each, with the lock released."""
        assert self.snapshots is not None
        for aggregate_id, base in bases.items():
            if not getattr(unseen.get(aggregate_id, type(base)), "LONG_HISTORY", False):
                continue
            for snapshot in self.snapshots.get(aggregate_id, desc=True, limit=1):
                if base is None or snapshot.originator_version > base.version:
                    bases[aggregate_id] = cast(
                        LedgerAggregate, cast(Snapshot, snapshot).mutate(None)
                    )
        return bases

    def snapshots_due(
        self, aggregates: Iterable[LedgerAggregate], recorded: Sequence[DomainEventProtocol[UUID]]
    ) -> list[StoredEvent]:
        """Snapshots of the long histories that the `recorded` events (just collected
        from `aggregates`) took past a multiple of SNAPSHOT_EVERY, to be stored with them."""
        long = {a.id: a for a in aggregates if a.LONG_HISTORY}
        counts = Counter(e.originator_id for e in recorded if e.originator_id in long)
        return [
            self.mapper.to_stored_event(type(a).Snapshot.take(a))
            for i, n in counts.items()
            if (a := long[i]).version // SNAPSHOT_EVERY > (a.version - n) // SNAPSHOT_EVERY
        ]

    def _read_current(
        self,
        session: Reads,
        bases: Mapping[UUID, LedgerAggregate | None],
        known: dict[UUID, LedgerAggregate | None],
        fetched: Mapping[UUID, list[StoredEvent]] | None = None,
    ) -> None:
        """Bring `known` up to date with the store from `bases`: with the events
        `fetched` already, and the others' in one query."""
        fetched = fetched or {}
        events: dict[UUID | str, list[Any]] = {i: [] for i in bases}
        rest = {i: b.version if b else 0 for i, b in bases.items() if i not in fetched}
        stored_events = [e for i in bases if i in fetched for e in fetched[i]]
        for stored in stored_events + (session.events_after(rest) if rest else []):
            events[stored.originator_id].append(self.mapper.to_domain_event(stored))
        for aggregate_id, base in bases.items():
            aggregate = base
            for event in events[aggregate_id]:
                aggregate = event.mutate(aggregate)
            known[aggregate_id] = aggregate

    def _remember(self, uow: UnitOfWork) -> None:
        """Keep what was just recorded (or checked) as this process's latest copies: the
        unit of work's own aggregates, with no copy of their own, since nothing else
        refers to them once it is done (every answer is a copy, `run`)."""
        cache = self.repository.cache
        if cache is not None:
            for aggregate in uow.aggregates:
                if not aggregate.pending_events:  # a refusal's changes are not kept
                    cache.put(aggregate.id, aggregate)

    # --- copies -------------------------------------------------------------------

    def cached_copy(self, aggregate_id: UUID) -> LedgerAggregate | None:
        """A copy of this process's latest copy of an aggregate, if it has one."""
        cached = self._cached(aggregate_id)
        try:
            return cached.copy() if cached is not None else None
        except RuntimeError:  # raced a fast-forward in place
            return None

    def has_copy(self, aggregate_id: UUID) -> bool:
        """Whether this process has a copy of an aggregate (without making one)."""
        return self._cached(aggregate_id) is not None

    def _cached(self, aggregate_id: UUID) -> LedgerAggregate | None:
        """This process's latest copy of an aggregate itself, if it has one: never to
        be changed, only copied or read."""
        cache = self.repository.cache
        try:
            cached = cache.get(aggregate_id) if cache is not None else None
        except KeyError:
            return None
        return cached if isinstance(cached, LedgerAggregate) else None

    def original(self, cls: type[A], aggregate_id: UUID) -> A:
        """An aggregate as it was created (version 1), read from the store."""
        original: LedgerAggregate = self.repository.get(aggregate_id, version=cls.INITIAL_VERSION)
        assert isinstance(original, cls)
        return original

    def load(self, cls: type[A], key: Any, what: str) -> A:
        """The current state of one resource, straight from its events."""
        try:
            aggregate: LedgerAggregate = self.repository.get(cls.create_id(key))
        except AggregateNotFoundError:
            raise NotFound(f"no {what} {key}") from None
        if not isinstance(aggregate, cls):
            raise NotFound(f"no {what} {key}")
        return aggregate
