"""Follows the event store and keeps the read models, one transaction per batch.

A batch locks the tracking row, reads the next events, folds them in memory and
writes every changed row plus the new position before committing: after a crash at
any point the batch is wholly applied or not at all, and two workers never apply
the same event. The in-memory image survives between batches only while this
worker is the one advancing the position (same generation, same position).
"""

from __future__ import annotations

import gc
import io
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from decimal import Decimal
from operator import attrgetter
from typing import Any, TypeVar
from uuid import UUID

import structlog
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore
from psycopg import Copy, Cursor, postgres, sql
from psycopg.copy import FileWriter
from psycopg.rows import DictRow, TupleRow, tuple_row

from ledger.adapters.postgres import EVENTS_TABLE, datastore_of, statements
from ledger.usecases.ledger import Ledger
from projections.fold import (
    AccountKey,
    BalanceKey,
    Changes,
    ClawbackRow,
    FundYearRow,
    GrantRow,
    Line,
    LineKey,
    PaymentRow,
    ReadModels,
    Stream,
    TalentRow,
    Touched,
)
from projections.schema import LINE_AMOUNTS, READ_MODEL_TABLES, TALENT_AMOUNTS, ensure_schema

log = structlog.get_logger(__name__)

PROJECTION = "ledger"
# Each batch costs a transaction, the tracking row and a statement per table: a rebuild
# of 400,000 events ran 9 % faster in batches of 20,000 than of 5,000 (no faster at 50,000).
BATCH_SIZE = 20_000
MAX_IMAGE_STREAMS = 2_000_000  # past this, start again from an image loaded on demand
# After any batch short of full, the worker waits this long: under a steady stream of
# writes a batch of a few events costs nearly what a batch of hundreds does (a
# transaction, the position, the rows it touches), so it lets more gather rather than
# run back to back. Reads lag writes by about this much.
POLL_SECONDS = 0.02
MIN_POSITION_WAIT_SECONDS = 5.0

Curs = Cursor[DictRow]


class SqlLoader:
    """Reads current rows through the batch's own transaction."""

    def __init__(self) -> None:
        self.curs: Curs | None = None

    def _one(self, query: str, params: Sequence[Any]) -> DictRow | None:
        assert self.curs is not None
        self.curs.execute(query, params)
        row: DictRow | None = self.curs.fetchone()
        return row

    def stream(self, stream_id: UUID) -> Stream | None:
        row = self._one(
            "SELECT kind, key, talent_id, year, programme, amount FROM rm_streams WHERE id = %s",
            (stream_id,),
        )
        return Stream(**row) if row else None

    def line(self, key: LineKey) -> Line | None:
        row = self._one("SELECT * FROM rm_lines WHERE year = %s AND programme = %s", key)
        return Line(row["kind"], {n: row[n] for n in LINE_AMOUNTS}) if row else None

    def balance(self, key: BalanceKey) -> dict[str, Decimal] | None:
        row = self._one(
            "SELECT * FROM rm_talent_balances WHERE talent_id = %s AND year = %s "
            "AND programme = %s",
            key,
        )
        return {n: row[n] for n in TALENT_AMOUNTS} if row else None

    def account(self, key: AccountKey) -> list[Decimal] | None:
        row = self._one(
            "SELECT debit, credit FROM rm_accounts WHERE year = %s AND account = %s "
            "AND programme = %s",
            key,
        )
        return [row["debit"], row["credit"]] if row else None

    def fund_year(self, year: int) -> FundYearRow | None:
        row = self._one(
            "SELECT currency, opened_position, closed_position FROM rm_fund_years WHERE year = %s",
            (year,),
        )
        return FundYearRow(**row) if row else None

    def talent(self, talent_id: str) -> TalentRow | None:
        row = self._one(
            "SELECT sealed_name, category, employer, arrived_on, service_commitment_until, "
            "registered_position, departed_on, departure_reason, departed_position "
            "FROM rm_talents WHERE talent_id = %s",
            (talent_id,),
        )
        return TalentRow(**row) if row else None

    def grant(self, grant_id: str) -> GrantRow | None:
        row = self._one(
            "SELECT talent_id, year, programme, amount, status, approved_at, paid, returned, "
            "clawed_back FROM rm_grants WHERE grant_id = %s",
            (grant_id,),
        )
        return GrantRow(**row) if row else None

    def payment(self, payment_id: str) -> PaymentRow | None:
        row = self._one(
            "SELECT grant_id, talent_id, year, programme, amount, value_date, bank_reference, "
            "returned_on FROM rm_payments WHERE payment_id = %s",
            (payment_id,),
        )
        return PaymentRow(**row) if row else None

    def clawback(self, clawback_id: str) -> ClawbackRow | None:
        row = self._one(
            "SELECT grant_id, talent_id, year, programme, amount, assessed_at, recovered "
            "FROM rm_clawbacks WHERE clawback_id = %s",
            (clawback_id,),
        )
        return ClawbackRow(**row) if row else None


_COLUMN_TYPES: dict[tuple[str, tuple[str, ...]], list[int]] = {}


def _column_types(curs: Curs, table: str, columns: Sequence[str]) -> list[int]:
    """The type OIDs of `columns`, for a binary COPY. The read models use built-in
    types only, whose OIDs are the same in every database, so they are asked once."""
    key = (table, tuple(columns))
    if key not in _COLUMN_TYPES:
        curs.execute(
            "SELECT attname, atttypid FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (table,),
        )
        oids = {r["attname"]: r["atttypid"] for r in curs.fetchall()}
        _COLUMN_TYPES[key] = [oids[c] for c in columns]
    return _COLUMN_TYPES[key]


K = TypeVar("K")
_NUMERIC = postgres.types["numeric"].oid


class Writes:
    """One batch's rows, formatted for COPY by the thread that folds them (psycopg
    formats in C): the thread that sends them then does little more than wait on
    PostgreSQL, and reads nothing from the in-memory image, which may have moved on."""

    def __init__(self) -> None:
        self._copies: list[tuple[sql.Composed, bytes]] = []
        self._upserts: list[tuple[sql.Composed, list[Sequence[Any]]]] = []

    def copy(
        self, curs: Curs, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        """Append rows by COPY, several times faster than row by row. psycopg builds a
        binary numeric from `Decimal.as_tuple()`: a row of amounts costs three times
        its text form, so tables with several amounts go as text, the others (where
        binary timestamps and ids win) as binary."""
        taken = list(rows)
        if not taken:
            return
        types = _column_types(curs, table, columns)
        binary = types.count(_NUMERIC) < 2
        buffer = io.BytesIO()
        with (
            curs.connection.cursor() as formatting,  # a Copy needs a cursor without results
            Copy(formatting, binary=binary, writer=FileWriter(buffer)) as copy,
        ):
            if binary:
                copy.set_types(types)
            for row in taken:
                copy.write_row(row)
        statement = sql.SQL("COPY {} ({}) FROM STDIN {}").format(
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL("(FORMAT BINARY)" if binary else ""),
        )
        self._copies.append((statement, buffer.getvalue()))

    def rows(
        self,
        curs: Curs,
        table: str,
        keys: Sequence[str],
        columns: Sequence[str],
        touched: Touched[K],
        row: Callable[[K], Sequence[Any]],
    ) -> None:
        """The rows of a current-state table: new ones appended, the others upserted."""
        self.copy(curs, table, (*keys, *columns), map(row, touched.created))
        if not touched.changed:
            return
        names = [*keys, *columns]
        statement = sql.SQL(
            "INSERT INTO {table} ({names}) VALUES ({values}) "
            "ON CONFLICT ({keys}) DO UPDATE SET {updates}"
        ).format(
            table=sql.Identifier(table),
            names=sql.SQL(", ").join(map(sql.Identifier, names)),
            values=sql.SQL(", ").join(sql.Placeholder() * len(names)),
            keys=sql.SQL(", ").join(map(sql.Identifier, keys)),
            updates=sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns
            ),
        )
        self._upserts.append((statement, [row(k) for k in touched.changed]))

    def send(self, curs: Curs) -> None:
        for statement, data in self._copies:
            with curs.copy(statement) as copy:
                copy.write(data)
        for upsert, rows in self._upserts:
            curs.executemany(upsert, rows)


def _records(
    out: Writes, curs: Curs, table: str, key: str, records: Mapping[Any, Any], touched: Touched[Any]
) -> None:
    """The touched dataclass rows of `records`, their fields as the columns."""
    if not records:
        return
    columns = [f.name for f in fields(next(iter(records.values())))]
    assert len(columns) > 1, "attrgetter of one name answers the value, not a tuple"
    values = attrgetter(*columns)  # in C: 0.7 µs a row, against 1.6 for getattr in Python
    out.rows(curs, table, (key,), columns, touched, lambda k: (k, *values(records[k])))


_AUDIT_COLUMNS = (
    "position",
    "recorded_at",
    "event_type",
    "talent_id",
    "grant_id",
    "payment_id",
    "waiver_id",
    "clawback_id",
    "recovery_id",
    "bank_reference",
    "fund_year",
    "programme",
    "amount",
    "actor",
    "reason",
    "reference",
    "request_id",
    "hash",
)


def prepare_writes(models: ReadModels, changes: Changes, curs: Curs) -> Writes:
    """Every row a batch changed, to be written in bulk."""
    out = Writes()
    out.copy(
        curs,
        "rm_streams",
        ("id", "kind", "key", "talent_id", "year", "programme", "amount"),
        (
            (i, s.kind, s.key, s.talent_id, s.year, s.programme, s.amount)
            for i, s in changes.streams.items()
        ),
    )
    _records(out, curs, "rm_fund_years", "year", models.fund_years, changes.fund_years)
    lines = models.lines
    out.rows(
        curs,
        "rm_lines",
        ("year", "programme"),
        ("kind", *LINE_AMOUNTS),
        changes.lines,
        lambda k: (*k, lines[k].kind, *lines[k].amounts.values()),
    )
    out.copy(
        curs,
        "rm_line_versions",
        ("year", "programme", "position", "kind", *LINE_AMOUNTS),
        changes.line_versions.values(),
    )
    _records(out, curs, "rm_talents", "talent_id", models.talents, changes.talents)
    balances = models.balances
    out.rows(
        curs,
        "rm_talent_balances",
        ("talent_id", "year", "programme"),
        TALENT_AMOUNTS,
        changes.balances,
        lambda k: (*k, *balances[k].values()),
    )
    out.copy(
        curs,
        "rm_talent_balance_versions",
        ("talent_id", "year", "programme", "position", *TALENT_AMOUNTS),
        changes.balance_versions.values(),
    )
    accounts = models.accounts
    out.rows(
        curs,
        "rm_accounts",
        ("year", "account", "programme"),
        ("debit", "credit"),
        changes.accounts,
        lambda k: (*k, *accounts[k]),
    )
    _records(out, curs, "rm_grants", "grant_id", models.grants, changes.grants)
    _records(out, curs, "rm_payments", "payment_id", models.payments, changes.payments)
    _records(out, curs, "rm_clawbacks", "clawback_id", models.clawbacks, changes.clawbacks)
    out.copy(
        curs,
        "rm_recoveries",
        ("clawback_id", "recovery_id", "amount", "value_date", "bank_reference"),
        changes.recoveries,
    )
    out.copy(
        curs,
        "rm_reconciliation_lines",
        ("reconciliation_id", "seq", "bucket", "bank_reference", "amount", "value_date"),
        changes.reconciliation_lines,
    )
    out.copy(curs, "rm_audit_trail", _AUDIT_COLUMNS, changes.audit)
    out.copy(
        curs,
        "rm_journal",
        ("position", "seq", "year", "programme", "account", "debit", "credit"),
        changes.journal,
    )
    return out


_NEXT_EVENTS = sql.SQL(
    "SELECT notification_id, originator_id, originator_version, topic, state, recorded_at, "
    "hash FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
).format(sql.Identifier(EVENTS_TABLE))


def _next_events(curs: Curs, after: int, limit: int) -> list[TupleRow]:
    """The events after position `after`, as tuples in `_NEXT_EVENTS`'s column order:
    a dict per row slowed a rebuild by a twelfth (300,000 events: 30,400 -> 33,100/s)."""
    with curs.connection.cursor(row_factory=tuple_row) as rows:
        rows.execute(_NEXT_EVENTS, (after, limit))
        return rows.fetchall()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile (in the whole process). A rebuild's image
    grows (up to MAX_IMAGE_STREAMS), so each young-generation collection walks 50,000
    objects that all survive: about 3 s of a rebuild of 1,000,000 events, against
    0.8 s for the one collection once it is back on (29,600 -> 32,300 events/s, three
    runs each). Reference counting still frees what the fold drops; the few cycles
    it leaves wait for that collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Overtaken(Exception):
    """Another worker moved the position during a rebuild's pipelined pass."""


def _lock_tracking(curs: Curs) -> tuple[int, int]:
    """Lock the tracking row for this transaction: (generation, position)."""
    curs.execute(
        "SELECT position, generation FROM projection_tracking WHERE name = %s FOR UPDATE",
        (PROJECTION,),
    )
    row = curs.fetchone()
    assert row is not None, "projection_tracking is not migrated"
    return row["generation"], row["position"]


def _set_position(curs: Curs, position: int) -> None:
    curs.execute(
        "UPDATE projection_tracking SET position = %s WHERE name = %s", (position, PROJECTION)
    )


class ProjectionWorker:
    """Applies events after the tracked position; safe to run in many processes."""

    def __init__(self, app: Ledger) -> None:
        self.app = app
        self.datastore = datastore_of(app)
        ensure_schema(self.datastore)
        self._loader = SqlLoader()
        self._models = ReadModels(self._loader)
        self._cached_at: tuple[int, int] | None = None
        self._stop = threading.Event()

    def run_batch(self, limit: int = BATCH_SIZE) -> int:
        """Apply the next batch; returns how many events it applied."""
        try:
            with self.datastore.transaction(commit=True) as curs:
                return self._run_batch(curs, limit)
        except BaseException:
            self._cached_at = None  # the image may hold what was rolled back
            raise

    def _run_batch(self, curs: Curs, limit: int) -> int:
        at = _lock_tracking(curs)
        if at != self._cached_at or len(self._models.streams) > MAX_IMAGE_STREAMS:
            self._models = ReadModels(self._loader, complete=at[1] == 0)
        self._loader.curs = curs
        rows = _next_events(curs, at[1], limit)
        if not rows:
            self._cached_at = at
            return 0
        self._apply(self._models, rows)
        prepare_writes(self._models, self._models.take_changes(), curs).send(curs)
        position = rows[-1][0]
        _set_position(curs, position)
        self._cached_at = (at[0], position)
        return len(rows)

    def _fold_next(self, models: ReadModels, after: int) -> tuple[Writes, int, int] | None:
        """Fold the next batch after `after`: its writes, last position and size."""
        with statements(self.datastore) as curs:  # no transaction left idle while folding
            rows = _next_events(curs, after, BATCH_SIZE)
            if not rows:
                return None
            self._apply(models, rows)
            writes = prepare_writes(models, models.take_changes(), curs)
            return writes, rows[-1][0], len(rows)

    def _apply(self, models: ReadModels, rows: Sequence[TupleRow]) -> None:
        to_event = self.app.mapper.to_domain_event
        for position, originator_id, version, topic, state, recorded_at, hash_ in rows:
            event = to_event(StoredEvent(originator_id, version, topic, state))
            models.apply(event, position, recorded_at, hash_.hex())

    def catch_up(self) -> int:
        """Apply everything recorded so far; returns how many events were applied."""
        total = 0
        while applied := self.run_batch():
            total += applied
        return total

    def rebuild(self) -> int:
        """Empty every read model and apply all events again from the first."""
        with self.datastore.transaction(commit=True) as curs:
            generation = _lock_tracking(curs)[0] + 1
            curs.execute(
                sql.SQL("TRUNCATE {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, READ_MODEL_TABLES))
                )
            )
            curs.execute(
                "UPDATE projection_tracking SET position = 0, generation = %s WHERE name = %s",
                (generation, PROJECTION),
            )
        self._cached_at = None
        with _collector_paused():
            return self._replay(generation) + self.catch_up()

    def _replay(self, generation: int) -> int:
        """A rebuild's first pass: this thread decodes and folds the next batch while
        another writes the one before, so PostgreSQL's half of the work runs beside
        Python's. Each batch still commits with its position; should another worker
        move the position meanwhile, or the image outgrow MAX_IMAGE_STREAMS, the pass
        stops and `catch_up` carries on."""
        models = ReadModels(self._loader, complete=True)
        batches: queue.Queue[tuple[Writes, int, int] | None] = queue.Queue(maxsize=2)
        committed: list[int] = []
        failed: list[BaseException] = []
        writer = threading.Thread(
            target=self._write_batches, args=(batches, generation, committed, failed)
        )
        writer.start()
        last, finished = 0, False
        try:
            # each batch read by one statement, outside any transaction: a fold (or a
            # wait on the writer) must not sit idle inside one, which the session's
            # idle timeout would end
            while not failed and len(models.streams) <= MAX_IMAGE_STREAMS:
                batch = self._fold_next(models, last)
                if batch is None:
                    finished = True
                    break
                last = batch[1]
                batches.put(batch)
        finally:
            batches.put(None)
            writer.join()
        if failed and not isinstance(failed[0], _Overtaken):
            raise failed[0]
        if finished and not failed:
            self._models, self._cached_at = models, (generation, last)
        return sum(committed)

    def _write_batches(
        self,
        batches: queue.Queue[tuple[Writes, int, int] | None],
        generation: int,
        committed: list[int],
        failed: list[BaseException],
    ) -> None:
        position = 0
        while (batch := batches.get()) is not None:
            if failed:
                continue  # drain, so that the folding thread never blocks
            writes, last, count = batch
            try:
                with self.datastore.transaction(commit=True) as curs:
                    if _lock_tracking(curs) != (generation, position):
                        raise _Overtaken
                    writes.send(curs)
                    _set_position(curs, last)
                position = last
                committed.append(count)
            except BaseException as e:  # handed to the folding thread, which raises it
                failed.append(e)

    def run_forever(self) -> None:
        log.info("projection_worker_started", projection=PROJECTION)
        while not self._stop.is_set():
            try:
                if self.run_batch() < BATCH_SIZE:
                    self._stop.wait(POLL_SECONDS)
            except Exception:  # a worker must outlive a database restart
                log.exception("projection_batch_failed")
                self._stop.wait(1.0)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name="projections", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()


def settle(datastore: PostgresDatastore) -> None:
    """VACUUM (ANALYZE) the read models. A rebuild is one large bulk load: until this
    runs the planner has no statistics for it, and autovacuum does the same work
    later, under traffic (in `make bench` it ran through the as-of reads)."""
    with statements(datastore) as curs:  # VACUUM runs outside any transaction
        curs.execute(
            sql.SQL("VACUUM (ANALYZE) {}").format(
                sql.SQL(", ").join(map(sql.Identifier, READ_MODEL_TABLES))
            )
        )


def tracked_position(datastore: PostgresDatastore) -> int:
    with statements(datastore) as curs:
        curs.execute("SELECT position FROM projection_tracking WHERE name = %s", (PROJECTION,))
        row = curs.fetchone()
        return int(row["position"]) if row else 0


def wait_for_position(datastore: PostgresDatastore, position: int) -> bool:
    """Poll until the read models include `position`; False after the wait limit."""
    deadline = time.monotonic() + MIN_POSITION_WAIT_SECONDS
    while tracked_position(datastore) < position:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
