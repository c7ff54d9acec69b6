"""Group commit: the use cases that arrive while a transaction is in flight go together
in the next one.

The event store takes a table lock on every append, so one event per transaction caps
writes whatever the concurrency. Here one writer thread per process runs the waiting
commands one after another on a shared unit of work (so a hot fund year is loaded
once and never conflicts with itself) and appends all their events in one
transaction. Every rule still holds: each command decides on the state left by the
ones before it, and the engine's `commit` re-checks everything read under the append
lock, where the whole group decides again on what changed. Each caller gets its own
result and position; a refused command records nothing.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from ledger.domain.errors import LedgerError
from ledger.engine.outcome import Attempt, Committed, Outcome, refusal
from ledger.engine.unit_of_work import UnitOfWork, run_in

T = TypeVar("T")


class Committing(Protocol):
    """The engine, as the writer uses it."""

    def commit(
        self,
        run: Callable[[UnitOfWork], Attempt[T]],
        answer: Callable[[Committed[T]], None] | None = None,
    ) -> Committed[T]: ...


MAX_GROUP = 128


@dataclass
class Call:
    """A command's decision waiting for its group, run in its caller's context."""

    call: Callable[[], Any]
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    future: Future[Any] = field(default_factory=Future)


class _Leaked(Exception):
    """A refused command had already changed the shared aggregates."""

    def __init__(self, index: int) -> None:
        self.index = index


#: told, after each group is recorded, how many commands it held, how many seconds its
#: append took (from asking for the lock to the commit), and how many of those it
#: waited for the append lock
GroupObserver = Callable[[int, float, float], None]


def commit_group(app: Committing, group: list[Call], observe: GroupObserver | None) -> None:
    """Decide `group` on one unit of work and record it in one transaction, in the
    calling thread: each call's future holds its outcome or its refusal when this
    returns (and already when it was recorded, before the process keeps its copies)."""
    try:
        _commit(app, group, observe)
    except BaseException as e:  # the writer must outlive any failure
        _fail(group, e)


class GroupCommitter:
    """A thread of its own committing the calls submitted meanwhile, group by group."""

    def __init__(self, app: Committing, observe: GroupObserver | None = None) -> None:
        self._app = app
        self._observe = observe
        self._queue: queue.SimpleQueue[Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="group-commit", daemon=True)
        self._thread.start()

    @property
    def in_writer(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, call: Callable[[], Outcome[T]]) -> Future[Outcome[T]]:
        """Run `call` (a use case, in the caller's context) in the next group."""
        if not self._thread.is_alive():
            raise RuntimeError("the group-commit writer has stopped")
        item = Call(call)
        self._queue.put(item)
        return item.future

    def run(self, call: Callable[[], Outcome[T]]) -> Outcome[T]:
        """Run `call` in the next group; wait for its own outcome."""
        return self.submit(call).result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while (first := self._queue.get()) is not None:
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this group
                    break
                group.append(item)
            commit_group(self._app, group, self._observe)


def _commit(app: Committing, group: list[Call], observe: GroupObserver | None) -> None:
    def attempt(uow: UnitOfWork) -> Attempt[tuple[dict[int, Any], dict[int, BaseException]]]:
        refused: dict[int, BaseException] = {}
        try:
            done = _run_all(uow, group, refused)
        except _Leaked:
            if len(group) > 1:
                raise
            return Attempt(({}, refused), refused=True, record=False)
        return Attempt((done, refused), refused=bool(refused))

    started = time.perf_counter()

    def answer(committed: Committed[tuple[dict[int, Any], dict[int, BaseException]]]) -> None:
        if observe is not None:
            observe(len(group), time.perf_counter() - started, committed.lock_waited)
        done, refused = committed.value
        positions = {id(event): position for event, position in committed.recorded}
        for index, item in enumerate(group):
            if index in refused:
                item.future.set_exception(refused[index])
                continue
            outcome, events = done[index]
            own = [positions[id(e)] for e in events]
            item.future.set_result(replace(outcome, position=max(own, default=committed.position)))

    try:
        # each caller is answered as soon as the group is recorded
        app.commit(attempt, answer)
    except _Leaked:
        # A refused command changed the shared aggregates: each command runs
        # alone, so that its refusal records nothing and touches no neighbour.
        for item in group:
            _commit(app, [item], observe)
    except Exception as e:  # the database failed, or too much contention
        _fail(group, e)


def _run_all(
    uow: UnitOfWork, group: list[Call], refused: dict[int, BaseException]
) -> dict[int, tuple[Outcome[Any], list[Any]]]:
    """Each command on the shared unit of work, with the events it added."""
    done: dict[int, tuple[Outcome[Any], list[Any]]] = {}
    for index, item in enumerate(group):
        mark = uow.mark()
        try:
            outcome = item.context.run(run_in, uow, item.call)
        except LedgerError as e:
            refused[index] = refusal(e)
            uow.discard_created_since(mark)
            if uow.changed_since(mark):
                raise _Leaked(index) from e
            continue
        except Exception as e:  # a bug in one command must not sink the others
            refused[index] = e
            raise _Leaked(index) from e
        done[index] = (outcome, uow.events_since(mark))
    return done


def _fail(group: list[Call], error: BaseException) -> None:
    """Nothing was recorded: every caller still waiting hears `error`."""
    for item in group:
        if not item.future.done():
            item.future.set_exception(error)
