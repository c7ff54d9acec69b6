"""Follows the event store and keeps every view, one transaction per batch.

A batch locks the views' tracking rows, reads the next events once, folds them into
each view (`projections.view`) and writes every changed row plus each view's new
position before committing: after a crash at any point the batch is wholly applied or
not at all, and two workers never apply the same event. Views at different positions
(one just added, and being backfilled) are brought forward in batches of their own,
the most current first, until they meet. A view's in-memory image survives between
batches only while this worker is the one advancing its position.
"""

from __future__ import annotations

import gc
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import structlog
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.postgres import PostgresDatastore
from psycopg import Connection, sql
from psycopg.rows import TupleRow, tuple_row

from ledger.adapters.postgres import EVENTS_TABLE, datastore_of, head_position, statements
from ledger.usecases.ledger import Ledger
from ledger.usecases.progress import Progress
from projections.schema import ensure_schema, tables
from projections.streams import Streams
from projections.tables import Curs, Writes
from projections.view import At, Handler, View
from projections.views import VIEWS
from projections.waits import CHANNEL

log = structlog.get_logger(__name__)

# Each batch costs a transaction, the tracking rows and a statement per table: a rebuild
# of 400,000 events ran 9 % faster in batches of 20,000 than of 5,000 (no faster at 50,000).
BATCH_SIZE = 20_000
MAX_IMAGE_ROWS = 2_000_000  # past this, a view starts again from an image loaded on demand
#: a failed batch is tried again after this long; this many failures in a row is failing
RETRY_SECONDS = 1.0
FAILING_AFTER = 3
# After any batch short of full, the worker waits POLL_SECONDS, or REST_PER_BATCH times
# as long as the batch took if that is longer, up to MAX_REST_SECONDS: a batch of a
# few events costs nearly what a batch of hundreds does (a transaction, the positions,
# a statement per table), so it lets more gather rather than run back to back, and
# under a steady load it takes at most a fifth of its time, leaving the machine to
# the writes. A long batch (catching up) is not followed by a long rest. Reads lag
# writes by about the wait and the batch.
POLL_SECONDS = 0.02
REST_PER_BATCH = 4
MAX_REST_SECONDS = 0.1
#: the advisory lock whose holder leads (`ProjectionWorker.run_forever`); a worker that
#: does not lead tries again this often, and a leader checks its session as often
LEAD_KEY = 7_242_025
LEAD_RETRY_SECONDS = 1.0
#: a leader failing batch after batch steps down for this long, so that another leads
STEP_DOWN_SECONDS = 3 * LEAD_RETRY_SECONDS

NAMES = tuple(view.NAME for view in VIEWS)

_NEXT_EVENTS = (
    sql.SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state, recorded_at, "
        "hash FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
    )
    .format(sql.Identifier(EVENTS_TABLE))
    .as_string()
)  # rendered once, as `projections.tables`
_FIRST_EVENT = (
    sql.SQL(
        "SELECT originator_id, originator_version, topic, state FROM {} "
        "WHERE originator_id = %s AND originator_version = 1"
    )
    .format(sql.Identifier(EVENTS_TABLE))
    .as_string()
)


@contextmanager
def _batch(datastore: PostgresDatastore) -> Iterator[Curs]:
    """A batch's transaction, whose commit does not wait for the server to flush it to
    disk: the read models are derived from the events, and a batch that a crash of the
    server loses, its positions with it, is applied again from the positions that
    survived. The writer's commits, which must wait, then do not queue behind the read
    models' flushes (docs/performance.md, "stop 37")."""
    with datastore.transaction(commit=True) as curs:
        curs.execute("SET LOCAL synchronous_commit = off")
        yield curs


def _try_lead(session: Connection[Any]) -> bool:
    row = session.execute("SELECT pg_try_advisory_lock(%s) AS led", (LEAD_KEY,)).fetchone()
    return bool(row and row["led"])


def _next_events(curs: Curs, after: int, limit: int) -> list[TupleRow]:
    """The events after position `after`, as tuples in `_NEXT_EVENTS`'s column order:
    a dict per row slowed a rebuild by a twelfth (300,000 events: 30,400 -> 33,100/s)."""
    with curs.connection.cursor(row_factory=tuple_row) as rows:
        rows.execute(_NEXT_EVENTS, (after, limit))
        return rows.fetchall()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile (in the whole process). A rebuild's images
    grow, so each young-generation collection walks 50,000 objects that all survive:
    about 3 s of a rebuild of 1,000,000 events, against 0.8 s for the one collection
    once it is back on (29,600 -> 32,300 events/s, three runs each). Reference counting
    still frees what the fold drops; the few cycles it leaves wait for that collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Overtaken(Exception):
    """Another worker moved a position during a rebuild's pipelined pass."""


Tracked = dict[str, tuple[int, int]]  # view name -> (generation, position)


def _lock(curs: Curs, names: Iterable[str]) -> Tracked:
    """Lock the views' tracking rows for this transaction, in a fixed order."""
    curs.execute(
        "SELECT name, position, generation FROM projection_tracking WHERE name = ANY(%s) "
        "ORDER BY name FOR UPDATE",
        (list(names),),
    )
    return {r["name"]: (r["generation"], r["position"]) for r in curs.fetchall()}


_ADVANCE = (
    sql.SQL(
        "WITH advanced AS (UPDATE projection_tracking SET position = %s WHERE name = ANY(%s)) "
        "SELECT pg_notify({}, %s)"
    )
    .format(sql.Literal(CHANNEL))
    .as_string()
)


def _advance(curs: Curs, names: Sequence[str], position: int) -> None:
    """Move the views to `position`, and wake the waits for it when this commits
    (`projections.waits`): one round trip."""
    curs.execute(_ADVANCE, (position, list(names), str(position)))


class Fold:
    """Views folding the same run of events: each event is decoded once and handed to
    the views that handle it (the handlers of an event type looked up once)."""

    def __init__(self, mapper: Mapper[UUID], views: Sequence[View], streams: Streams) -> None:
        self._to_event = mapper.to_domain_event
        self._views = views
        self._streams = streams
        self._dispatch: dict[type, list[tuple[View, Handler]]] = {}

    def _handlers(self, event_class: type) -> list[tuple[View, Handler]]:
        found = self._dispatch.get(event_class)
        if found is None:
            found = self._dispatch[event_class] = [
                (view, handler)
                for view in self._views
                if (handler := view.handler(event_class)) is not None
            ]
        return found

    def apply(self, rows: Sequence[TupleRow]) -> None:
        stream_of, to_event = self._streams.of, self._to_event
        for position, originator_id, version, topic, state, recorded_at, hash_ in rows:
            event = to_event(StoredEvent(originator_id, version, topic, state))
            at = At(position, recorded_at, hash_.hex(), stream_of(event, originator_id, version))
            for view, handler in self._handlers(type(event)):
                view.at = at
                handler(view, event)

    def writes(self, curs: Curs) -> Writes:
        out = Writes()
        for view in self._views:
            view.write(out, curs)
        return out


class ProjectionWorker:
    """Applies events after each view's tracked position; safe to run in many processes."""

    def __init__(self, app: Ledger, views: Sequence[type[View]] = VIEWS) -> None:
        self.app = app
        self.datastore = datastore_of(app)
        ensure_schema(self.datastore, views)
        self.views = {view.NAME: view for view in views}
        self._curs: Curs | None = None  # the cursor of the batch being folded
        self._streams = Streams(self._first_event)
        self._images: dict[str, View] = {}
        self._cached_at: Tracked = {}
        self._stop = threading.Event()

    def _first_event(self, aggregate_id: UUID) -> Any:
        """An aggregate's first event, for a stream created before this worker started."""
        assert self._curs is not None
        self._curs.execute(_FIRST_EVENT, (aggregate_id,))
        row = self._curs.fetchone()
        assert row is not None, f"no first event of {aggregate_id}"
        return self.app.mapper.to_domain_event(StoredEvent(**row))

    def _image(self, name: str, at: tuple[int, int]) -> View:
        """The view's image, kept if this worker left it at `at`, else started afresh."""
        image = self._images.get(name)
        if image is None or self._cached_at.get(name) != at or image.size() > MAX_IMAGE_ROWS:
            image = self._images[name] = self.views[name](self._streams, complete=at[1] == 0)
        return image

    def run_batch(self, limit: int = BATCH_SIZE) -> int:
        """Apply the next batch to the views, in one transaction while they stand at one
        position; views behind the others (one being backfilled) follow in batches of
        their own, the most current first. Returns how many events were applied, every
        batch counted."""
        applied = 0
        left = list(self.views)
        while left:
            names: list[str] = []
            try:
                with _batch(self.datastore) as curs:
                    tracked = _lock(curs, left)
                    head = max(position for _, position in tracked.values())
                    names = [n for n in left if tracked[n][1] == head]
                    applied += self._fold_batch(curs, names, tracked, limit)
            except BaseException:
                for name in names:  # the images may hold what was rolled back
                    self._cached_at.pop(name, None)
                raise
            finally:
                self._curs = None
            left = [n for n in left if n not in names]
        return applied

    def _fold_batch(self, curs: Curs, names: list[str], tracked: Tracked, limit: int) -> int:
        """The next events after the position `names` share, folded into them."""
        images = [self._image(name, tracked[name]) for name in names]
        self._curs = curs
        for image in images:
            image.curs = curs
        after = tracked[names[0]][1]
        rows = _next_events(curs, after, limit)
        if not rows:
            self._cached_at.update((n, tracked[n]) for n in names)
            return 0
        fold = Fold(self.app.mapper, images, self._streams)
        fold.apply(rows)
        fold.writes(curs).send(curs)
        position = rows[-1][0]
        _advance(curs, names, position)
        self._cached_at.update((n, (tracked[n][0], position)) for n in names)
        self._streams.trim()
        return len(rows)

    def catch_up(self) -> int:
        """Apply everything recorded so far; returns how many events were applied."""
        total = 0
        while applied := self.run_batch():
            total += applied
        return total

    def rebuild(self, progress: Progress | None = None) -> int:
        """Empty every view and apply all events again, telling `progress` (positions
        folded, the last) as it goes."""
        names = list(self.views)
        with self.datastore.transaction(commit=True) as curs:
            tracked = _lock(curs, names)
            curs.execute(
                sql.SQL("TRUNCATE {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, tables(self.views[n] for n in names)))
                )
            )
            for name in names:
                curs.execute(
                    "UPDATE projection_tracking SET position = 0, generation = %s WHERE name = %s",
                    (tracked[name][0] + 1, name),
                )
        generations = {name: tracked[name][0] + 1 for name in names}
        for name in names:
            self._cached_at.pop(name, None)
        with _collector_paused():
            return self._replay(generations, progress) + self.catch_up()

    def _replay(self, generations: dict[str, int], progress: Progress | None) -> int:
        """A rebuild's first pass: this thread decodes and folds the next batch while
        another writes the one before, so PostgreSQL's half of the work runs beside
        Python's. Each batch still commits with its positions; should another worker
        move a position meanwhile, or an image outgrow MAX_IMAGE_ROWS, the pass stops
        and `catch_up` carries on."""
        images = {n: self.views[n](self._streams, complete=True) for n in generations}
        fold = Fold(self.app.mapper, list(images.values()), self._streams)
        batches: queue.Queue[tuple[Writes, int, int] | None] = queue.Queue(maxsize=2)
        committed: list[int] = []
        failed: list[BaseException] = []
        writer = threading.Thread(
            target=self._write_batches, args=(batches, generations, committed, failed)
        )
        writer.start()
        last, finished = 0, False
        head = head_position(self.datastore) if progress else 0
        try:
            # each batch read by one statement, outside any transaction: a fold (or a
            # wait on the writer) must not sit idle inside one, which the session's
            # idle timeout would end
            while not failed and all(i.size() <= MAX_IMAGE_ROWS for i in images.values()):
                with statements(self.datastore) as curs:
                    self._curs = curs
                    rows = _next_events(curs, last, BATCH_SIZE)
                    if not rows:
                        finished = True
                        break
                    fold.apply(rows)
                    batches.put((fold.writes(curs), rows[-1][0], len(rows)))
                last = rows[-1][0]
                if progress:
                    progress(last, head)
        finally:
            self._curs = None
            batches.put(None)
            writer.join()
        if failed and not isinstance(failed[0], _Overtaken):
            raise failed[0]
        if finished and not failed:
            self._images.update(images)
            self._cached_at.update((n, (g, last)) for n, g in generations.items())
        return sum(committed)

    def _write_batches(
        self,
        batches: queue.Queue[tuple[Writes, int, int] | None],
        generations: dict[str, int],
        committed: list[int],
        failed: list[BaseException],
    ) -> None:
        names = list(generations)
        position = 0
        while (batch := batches.get()) is not None:
            if failed:
                continue  # drain, so that the folding thread never blocks
            writes, last, count = batch
            try:
                with _batch(self.datastore) as curs:
                    expected = {n: (g, position) for n, g in generations.items()}
                    if _lock(curs, names) != expected:
                        raise _Overtaken
                    writes.send(curs)
                    _advance(curs, names, last)
                position = last
                committed.append(count)
            except BaseException as e:  # handed to the folding thread, which raises it
                failed.append(e)

    #: batches, or attempts to lead, failed one after the other (reset by a batch that
    #: succeeds, or by finding that another worker leads)
    failures_in_a_row = 0

    @property
    def failing(self) -> bool:
        """Whether it keeps failing (on an event it cannot apply, or a database that
        stays away): what `/readyz` reports."""
        return self.failures_in_a_row >= FAILING_AFTER

    #: whether this worker is the one of the deployment that applies batches
    leading = False

    def run_forever(self) -> None:
        """Apply batches as events come, while this worker leads: one worker of all
        those running against the database (one per API process, as `ledger serve`
        comes) does, the others wait to take over. Batches are safe from any number of
        workers at once; one alone keeps its images between batches and spares the
        others' processes the same work done again."""
        log.info("projection_worker_started", views=list(self.views))
        while not self._stop.is_set():
            try:
                with self.datastore.get_connection() as session:
                    if not _try_lead(session):
                        self.failures_in_a_row = 0  # the database answers; another leads
                    elif self._lead(session):
                        # failing, it stepped down: long enough for another to lead
                        self._stop.wait(STEP_DOWN_SECONDS)
            except Exception:  # a worker must outlive a database restart
                self.failures_in_a_row += 1
                log.exception("projection_lead_failed", in_a_row=self.failures_in_a_row)
                self._stop.wait(RETRY_SECONDS)
                continue
            self._stop.wait(LEAD_RETRY_SECONDS)

    def _lead(self, session: Connection[Any]) -> bool:
        """Apply batches until stopped, holding the lead on `session`; give it up if
        the session is lost (the database restarted: another may lead now), or when
        failing (another worker may do better: answers True then)."""
        self.leading = True
        log.info("projection_worker_leading")
        # a leader whose host or network is lost keeps the lock until the server
        # drops its session: after about 11 s of silence, not the system's 2 hours
        session.execute(
            "SELECT set_config('tcp_keepalives_idle', '5', false), "
            "set_config('tcp_keepalives_interval', '2', false), "
            "set_config('tcp_keepalives_count', '3', false)"
        )
        checked = time.monotonic()
        try:
            while not self._stop.is_set():
                if time.monotonic() - checked > LEAD_RETRY_SECONDS:
                    session.execute("SELECT 1")  # the lock lives as long as the session
                    checked = time.monotonic()
                started = time.monotonic()
                try:
                    applied = self.run_batch()
                except Exception:  # a worker must outlive a database restart
                    self.failures_in_a_row += 1
                    log.exception("projection_batch_failed", in_a_row=self.failures_in_a_row)
                    if self.failing:
                        log.warning("projection_worker_stepping_down")
                        return True
                    self._stop.wait(RETRY_SECONDS)
                    continue
                self.failures_in_a_row = 0
                if applied < BATCH_SIZE:
                    took = time.monotonic() - started
                    rest = min(MAX_REST_SECONDS, REST_PER_BATCH * took)
                    self._stop.wait(max(POLL_SECONDS, rest))
            return False
        finally:
            self.leading = False
            if not session.broken:
                session.execute("SELECT pg_advisory_unlock(%s)", (LEAD_KEY,))

    _thread: threading.Thread | None = None

    def start(self) -> None:
        """`run_forever` in a thread of its own, until `stop`."""
        self._thread = threading.Thread(target=self.run_forever, name="projections", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop, and wait for a batch under way (its lead given up) for up to `timeout`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def settle(datastore: PostgresDatastore) -> None:
    """VACUUM (ANALYZE) the read models. A rebuild is one large bulk load: until this
    runs the planner has no statistics for it, and autovacuum does the same work
    later, under traffic (in `make bench` it ran through the as-of reads)."""
    with statements(datastore) as curs:  # VACUUM runs outside any transaction
        curs.execute(
            sql.SQL("VACUUM (ANALYZE) {}").format(sql.SQL(", ").join(map(sql.Identifier, tables())))
        )
