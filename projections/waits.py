"""Waiting until the read models include a position (`min_position`, `as_of_position`,
a decision that must see every event recorded).

A projection worker notifies `CHANNEL` in the transaction of each batch it commits, so
one connection per process and primary LISTENs, and a notification wakes every wait in
the process: none polls the database while nothing happens. A standby replays the batch
a moment after the primary commits it and notifies no one (PostgreSQL delivers no
notification on a standby), so a wait there reads its position again at growing
intervals, from 5 ms up to 100 ms, starting over at each notification; so do waits
while the listening connection is lost, until it is back.

A read that waits on a standby takes the primary past `STANDBY_WAIT_SECONDS`: a standby
that lags does not fail reads the primary can answer (docs/deployment.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import psycopg
import structlog
from eventsourcing.postgres import PostgresDatastore
from psycopg import sql

from ledger.adapters.postgres import head_position, statements
from ledger.adapters.replica import Standby, primary_of
from ledger.domain.errors import NotReached, TooManyWaiting, ValidationFailed

log = structlog.get_logger(__name__)

CHANNEL = "ledger_projections"
MIN_POSITION_WAIT_SECONDS = 5.0
#: at most this many waits of a process at once, each in a thread of the pool that runs
#: plain endpoints (40): past it a 503 at once, and `/healthz`, writes and other reads
#: keep their threads. A read whose position is there already takes no place.
WAITING_AT_ONCE = 16
_waiting = threading.BoundedSemaphore(WAITING_AT_ONCE)
STANDBY_WAIT_SECONDS = 1.0
#: with the listener connected, a wait on the primary reads again only this often
#: unless woken (a notification is lost only with its connection)
QUIET_SECONDS = 1.0
FIRST_POLL_SECONDS = 0.005
LAST_POLL_SECONDS = 0.1
RECONNECT_SECONDS = 1.0
#: a listening connection whose server vanished is noticed within about half a minute
#: (a wait polls meanwhile), where TCP alone would take hours; the URL's own win
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def tracked_position(datastore: PostgresDatastore, names: Sequence[str]) -> int:
    """The position every one of the named views has reached; with none named, the
    last event recorded (a read of the events themselves waits for nothing else)."""
    if not names:
        return head_position(datastore)
    with statements(datastore) as curs:
        curs.execute(
            "SELECT coalesce(min(position), 0) AS position FROM projection_tracking "
            "WHERE name = ANY(%s)",
            (list(names),),
        )
        row = curs.fetchone()
        return int(row["position"]) if row else 0


class Listener:
    """One primary's notifications, in a thread that lives as long as the primary's
    pool: a generation number that each one moves on, and a condition that wakes
    whoever waits for it to move."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        self.pool = datastore.pool
        self._changed = threading.Condition()
        self.generation = 0
        self.listening = False
        threading.Thread(target=self._listen_forever, name="positions", daemon=True).start()

    def wait(self, generation: int, timeout: float) -> int:
        """Until the generation moves past `generation` or `timeout` passes; the
        generation then."""
        with self._changed:
            self._changed.wait_for(lambda: self.generation != generation, timeout)
            return self.generation

    def _moved(self) -> None:
        with self._changed:
            self.generation += 1
            self._changed.notify_all()

    def _listen_forever(self) -> None:
        kwargs = self.pool.kwargs
        assert isinstance(kwargs, dict)  # as `use_ledger_pool` makes it
        while not self.pool.closed:
            try:
                with psycopg.connect(**{**KEEPALIVES, **kwargs}, autocommit=True) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    self.listening = True
                    self._moved()  # what was committed before listening is not missed
                    while not self.pool.closed:
                        for _ in conn.notifies(timeout=QUIET_SECONDS):
                            self._moved()
            except Exception as e:  # the thread must outlive anything: waits rely on it
                if not self.pool.closed:
                    log.warning("positions_listener_lost", error=type(e).__name__)
            finally:
                self.listening = False
            if not self.pool.closed:
                time.sleep(RECONNECT_SECONDS)
        with _listeners_lock:
            if _listeners.get(id(self.pool)) is self:
                del _listeners[id(self.pool)]


_listeners: dict[int, Listener] = {}
_listeners_lock = threading.Lock()


def _listener(primary: PostgresDatastore) -> Listener:
    """The listener on `primary`'s pool, started at the first wait on it."""
    with _listeners_lock:
        listener = _listeners.get(id(primary.pool))
        if listener is None or listener.pool is not primary.pool:
            listener = _listeners[id(primary.pool)] = Listener(primary)
        return listener


def _wait(
    datastore: PostgresDatastore, position: int, names: Sequence[str], seconds: float
) -> bool:
    listener = _listener(primary_of(datastore))
    on_standby = isinstance(datastore, Standby)
    deadline = time.monotonic() + seconds
    generation = listener.generation
    poll = FIRST_POLL_SECONDS
    while tracked_position(datastore, names) < position:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        quiet = listener.listening and not on_standby
        moved = listener.wait(generation, min(left, QUIET_SECONDS if quiet else poll))
        if moved != generation:
            generation, poll = moved, FIRST_POLL_SECONDS
        else:
            poll = min(poll * 2, LAST_POLL_SECONDS)
    return True


def reach(
    datastore: PostgresDatastore,
    position: int,
    names: Sequence[str],
    parameter: str = "min_position",
) -> PostgresDatastore:
    """The datastore to read from once its named views include `position`: `datastore`
    itself, or, when it is a standby that has not replayed the position within
    `STANDBY_WAIT_SECONDS`, its primary. A position past the last event recorded is none
    a write has answered: waiting could not help, so it is refused at once, naming the
    query `parameter` that gave it. `NotReached` past the wait; `TooManyWaiting` at once
    when `WAITING_AT_ONCE` waits are under way in this process."""
    if tracked_position(datastore, names) >= position:
        return datastore
    primary = primary_of(datastore)
    head = head_position(primary)
    if position > head:
        raise ValidationFailed(
            parameter, f"no event has position {position}: the last recorded is {head}", "query"
        )
    if not _waiting.acquire(blocking=False):
        raise TooManyWaiting(
            f"{WAITING_AT_ONCE} reads are waiting for the read models already; retry"
        )
    try:
        started = time.monotonic()
        if primary is not datastore:
            if _wait(datastore, position, names, STANDBY_WAIT_SECONDS):
                return datastore
            log.info("standby_behind", position=position)
        left = MIN_POSITION_WAIT_SECONDS - (time.monotonic() - started)
        if _wait(primary, position, names, left):
            return primary
        raise NotReached(position)
    finally:
        _waiting.release()
