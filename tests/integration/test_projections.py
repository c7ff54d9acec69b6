"""The read models are a pure function of the events (docs/design.md, "Read models").

Whatever way the events reach them (many small batches interleaved with writes,
several workers racing, a worker dying mid-batch), the read-model tables end up
row for row what a rebuild from scratch produces, and every event is applied once.
"""

from __future__ import annotations

import gc
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

import projections.worker as worker_module
from api.app import create_app
from ledger.adapters.postgres import datastore_of
from ledger.adapters.statement_csv import parse_statement
from ledger.adapters.statement_mt940 import parse_mt940
from ledger.domain.context import acting_as
from ledger.domain.grants import Grant
from ledger.domain.reconciliation import Statement
from ledger.engine.outcome import Outcome
from ledger.entrypoints.runtime import Settings, open_ledger
from ledger.usecases.ledger import Ledger
from projections import reads
from projections.schema import NewerReadModel
from projections.schema import tables as read_model_tables
from projections.tables import Table, Writes
from projections.view import Rows, View, handles
from projections.views import VIEWS
from projections.views.audit_trail import AuditTrail
from projections.waits import tracked_position
from projections.worker import NAMES, ProjectionWorker
from tests import commands as c
from tests.bank_statements import Entry, mt940
from tests.conftest import TEST_MASTER_KEY, TEST_SIGNING_KEY, install_key

pytestmark = pytest.mark.db

Step = tuple[str, Callable[[Ledger], Outcome[Any]]]
Dump = dict[str, list[tuple[Any, ...]]]


# --- a varied scenario, straight through the application ----------------------------


def _talent(t: str, name: str) -> Callable[[Ledger], Outcome[Any]]:
    return lambda a: a.execute(
        c.RegisterTalent(t, name, "doctorate", "某研究院", date(2020, 7, 1), date(2099, 6, 30))
    )


def _appropriate(
    year: int, ap: str, programme: str, kind: str, amount: str
) -> Callable[[Ledger], Outcome[Any]]:
    return lambda a: a.execute(
        c.Appropriate(year, ap, programme, kind, Decimal(amount), f"财预〔{year}〕{ap}号")
    )


def _propose(
    g: str, t: str, year: int, programme: str, amount: str
) -> Callable[[Ledger], Outcome[Any]]:
    return lambda a: a.execute(
        c.ProposeGrant(g, t, year, programme, Decimal(amount), "人才新政第5条", "安家补贴")
    )


def _approve(g: str) -> Callable[[Ledger], Outcome[Any]]:
    return lambda a: a.execute(c.ApproveGrant(g, "同意"))


def _pay(p: str, g: str, amount: str, day: date, br: str) -> Callable[..., Outcome[Any]]:
    return lambda a: a.execute(c.RecordPayment(p, g, Decimal(amount), day, br))


def _return(p: str, day: date) -> Callable[[Ledger], Outcome[Any]]:
    return lambda a: a.execute(c.ReturnPayment(p, day, "账户已注销"))


def _statement(
    data: bytes, parse: Callable[[bytes], Statement] = parse_statement
) -> Callable[[Ledger], Outcome[Any]]:
    """Import a bank statement (reconciled against the read models as they are)."""
    statement = parse(data)
    return lambda a: a.import_statement(
        statement,
        lambda s: reads.movements(datastore_of(a), s),
        lambda s: reads.previous_statement(datastore_of(a), s),
    )


def scenario(year: int, p: str) -> list[Step]:
    """Two fund years (the earlier one closed), three talents, every kind of event:
    grants approved, rejected, revoked; payments and returns (one after a revoke);
    waivers, one ended early; a departure, clawbacks and recoveries."""
    prev = year - 1
    t1, t2, t3 = f"{p}T1", f"{p}T2", f"{p}T3"
    return [
        ("admin", lambda a: a.execute(c.OpenFundYear(prev, "CNY"))),
        ("admin", _appropriate(prev, f"{p}AP0", "settling_in", "cash", "50000")),
        ("clerk", _talent(t1, "张伟")),
        ("clerk", _talent(t2, "李娜")),
        ("clerk", _talent(t3, "O'Brien, Seán")),
        ("clerk", _propose(f"{p}G0", t1, prev, "settling_in", "20000")),
        ("approver", _approve(f"{p}G0")),
        ("treasury", _pay(f"{p}P0", f"{p}G0", "20000", date(prev, 6, 1), f"{p}BR0")),
        ("admin", lambda a: a.execute(c.CloseFundYear(prev, "年度决算"))),
        ("admin", lambda a: a.execute(c.OpenFundYear(year, "CNY"))),
        ("admin", _appropriate(year, f"{p}AP1", "settling_in", "cash", "200000")),
        ("admin", _appropriate(year, f"{p}AP2", "rent_subsidy", "cash", "60000")),
        ("admin", _appropriate(year, f"{p}AP3", "housing", "in_kind", "60000")),
        ("admin", _appropriate(year, f"{p}AP4", "settling_in", "cash", "10000.50")),
        ("clerk", _propose(f"{p}G1", t1, year, "settling_in", "30000")),
        ("approver", _approve(f"{p}G1")),
        ("treasury", _pay(f"{p}P1", f"{p}G1", "10000", date(year, 3, 1), f"{p}BR1")),
        ("treasury", _pay(f"{p}P2", f"{p}G1", "15000", date(year, 4, 1), f"{p}BR2")),
        ("treasury", _return(f"{p}P2", date(year, 4, 3))),
        ("treasury", _pay(f"{p}P3", f"{p}G1", "5000.25", date(year, 5, 1), f"{p}BR3")),
        ("clerk", _propose(f"{p}G2", t2, year, "settling_in", "12000")),
        ("approver", lambda a: a.execute(c.RejectGrant(f"{p}G2", "材料不全"))),
        ("clerk", _propose(f"{p}G3", t2, year, "settling_in", "20000")),
        ("approver", _approve(f"{p}G3")),
        ("treasury", _pay(f"{p}P4", f"{p}G3", "8000", date(year, 3, 10), f"{p}BR4")),
        ("approver", lambda a: a.execute(c.RevokeGrant(f"{p}G3", "不符合条件"))),
        ("treasury", _return(f"{p}P4", date(year, 3, 20))),
        ("clerk", _propose(f"{p}G4", t3, year, "rent_subsidy", "6000")),
        ("approver", _approve(f"{p}G4")),
        ("treasury", _pay(f"{p}P5", f"{p}G4", "6000", date(year, 2, 1), f"{p}BR5")),
        (
            "clerk",
            lambda a: a.execute(
                c.GrantWaiver(
                    f"{p}W1",
                    t1,
                    year,
                    "housing",
                    "人才公寓 3栋201",
                    date(year, 1, 15),
                    date(year, 12, 31),
                    Decimal("2000"),
                )
            ),
        ),
        ("clerk", lambda a: a.execute(c.EndWaiver(f"{p}W1", date(year, 6, 15)))),
        (
            "clerk",
            lambda a: a.execute(
                c.GrantWaiver(
                    f"{p}W2",
                    t3,
                    year,
                    "housing",
                    "人才公寓 5栋102",
                    date(year, 3, 1),
                    date(year, 8, 31),
                    Decimal("1500.50"),
                )
            ),
        ),
        (
            "clerk",
            lambda a: a.execute(c.DepartTalent(t1, date(year, 9, 30), "调离本市")),
        ),
        (
            "clerk",
            lambda a: a.execute(
                c.AssessClawback(f"{p}C1", f"{p}G1", Decimal("12000"), "服务期未满")
            ),
        ),
        (
            "treasury",
            lambda a: a.execute(
                c.RecordRecovery(f"{p}C1", f"{p}R1", Decimal("5000"), date(year, 11, 1), f"{p}RB1")
            ),
        ),
        (
            "treasury",
            lambda a: a.execute(
                c.RecordRecovery(f"{p}C1", f"{p}R2", Decimal("2000"), date(year, 12, 1), f"{p}RB2")
            ),
        ),
        (
            "clerk",
            lambda a: a.execute(
                c.AssessClawback(f"{p}C0", f"{p}G0", Decimal("6000"), "服务期未满")
            ),
        ),
        (
            "treasury",
            lambda a: a.execute(
                c.RecordRecovery(f"{p}C0", f"{p}R0", Decimal("6000"), date(year, 12, 2), f"{p}RB0")
            ),
        ),
        ("clerk", _propose(f"{p}G5", t2, year, "rent_subsidy", "3000")),
        (
            "treasury",
            _statement(
                (
                    "value_date,bank_reference,amount,direction,counterparty\n"
                    f"{year}-03-01,{p}BR1,10000.00,debit,张伟\n"
                    f"{year}-04-01,{p}BR2,15000.01,debit,张伟\n"
                    f"{year}-06-01,{p}NOBODY,5.00,credit,某人\n"
                    f"{year}-06-02,{p}NOBODY2,6.00,credit,某人\n"
                ).encode()
            ),
        ),
        (
            "treasury",
            _statement(  # with its account and balances
                mt940(
                    [
                        Entry(f"{year}-02-20", f"{p}BR5", "6000.00", "debit", "O'Brien"),
                        Entry(f"{year}-11-01", f"{p}RB1", "5000.00", "credit", "张伟"),
                        Entry(f"{year}-11-02", f"{p}ELSE", "7.00", "debit", "某人"),
                    ],
                    opening="-20.00",
                    opened_on=f"{year}-02-01",
                    closed_on=f"{year}-11-30",
                ),
                parse_mt940,
            ),
        ),
    ]


def run_scenario(
    app: Ledger, steps: list[Step], after_each: Callable[[], object] = lambda: None
) -> int:
    """Run every step as its actor; the position of the last event recorded."""
    last = 0
    for n, (actor, step) in enumerate(steps):
        with acting_as(actor, f"req-{actor}-{n}"):
            outcome = step(app)
        assert not outcome.replayed, f"step {n} recorded nothing"
        last = outcome.position
        after_each()
    return last


# --- looking at the tables ----------------------------------------------------------


def dump(db_url: str) -> Dump:
    """Every read-model table, each ordered by all of its columns."""
    tables: Dump = {}
    with psycopg.connect(db_url) as conn:
        for table in read_model_tables():
            count = conn.execute(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = %s", (table,)
            ).fetchone()
            assert count is not None
            assert count[0] > 0, f"no table {table}"
            order = sql.SQL(", ").join(sql.Literal(i) for i in range(1, count[0] + 1))
            query = sql.SQL("SELECT * FROM {} ORDER BY {}").format(sql.Identifier(table), order)
            tables[table] = conn.execute(query).fetchall()
    return tables


def head(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()
    assert row is not None
    return int(row[0])


def tracking(db_url: str) -> tuple[int, int]:
    """The position and generation every view stands at."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT DISTINCT position, generation FROM projection_tracking")
        (row,) = rows.fetchall()
    return int(row[0]), int(row[1])


def on_each_event(m: pytest.MonkeyPatch, hook: Callable[[], None]) -> None:
    """Run `hook` as each event is folded (the audit trail folds every one, once)."""

    def wrapped(handler: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        def fold(view: Any, event: Any) -> None:
            hook()
            handler(view, event)

        return fold

    m.setattr(AuditTrail, "HANDLERS", {t: wrapped(h) for t, h in AuditTrail.HANDLERS.items()})


# tables whose second column `seq` numbers rows within their first column's group
SEQUENCED = ("rm_journal", "rm_reconciliation_lines")


def seq_per_group(tables: Dump) -> Dump:
    """The tables with each `seq` of SEQUENCED renumbered 0, 1, ... within its group
    (keeping the order): the identity on a table whose seq counts per group."""
    renumbered = dict(tables)
    for table in SEQUENCED:
        if table not in tables:
            continue
        rows = []
        seq = 0
        for n, row in enumerate(tables[table]):
            seq = seq + 1 if n and row[0] == tables[table][n - 1][0] else 0
            rows.append((row[0], seq, *row[2:]))
        renumbered[table] = rows
    return renumbered


def assert_same_tables(got: Dump, want: Dump, *, exact_seq: bool = False) -> None:
    """Row by row, every table. Unless `exact_seq`, a `seq` of SEQUENCED is compared
    by its order within its group only: its numbering depends on batch boundaries
    (see test_seq_numbers_do_not_depend_on_batch_boundaries), a bug checked once
    there so that it does not hide every other table's comparison."""
    if not exact_seq:
        got, want = seq_per_group(got), seq_per_group(want)
    assert list(got) == list(want)
    for table in want:
        assert got[table] == want[table], f"{table} differs"


# the tables the scenario fills (a table added later is compared, if maybe empty)
FILLED = (
    "rm_fund_years",
    "rm_lines",
    "rm_line_versions",
    "rm_talents",
    "rm_talent_balances",
    "rm_talent_balance_versions",
    "rm_audit_trail",
    "rm_journal",
    "rm_accounts",
    "rm_grants",
    "rm_payments",
    "rm_clawbacks",
    "rm_recoveries",
    "rm_reconciliation_lines",
)


def assert_plausible(tables: Dump, events: int) -> None:
    """The scenario's tables have rows, and the audit trail one per event position."""
    for table in FILLED:
        if table in tables:
            assert tables[table], f"{table} is empty"
    assert [row[0] for row in tables["rm_audit_trail"]] == list(range(1, events + 1))


def rebuilt(db_url: str, settings: Settings) -> Dump:
    """The tables after a rebuild by a worker of its own."""
    app = open_ledger(db_url, settings)
    try:
        applied = ProjectionWorker(app).rebuild()
    finally:
        app.close()
    assert applied == head(db_url)
    return dump(db_url)


# --- (a) a rebuild equals many small incremental batches ----------------------------


def test_a_rebuild_gives_the_tables_that_small_incremental_batches_gave(
    ledger: Ledger, worker: ProjectionWorker, db_url: str, test_settings: Settings
) -> None:
    batches: list[int] = []
    last = run_scenario(
        ledger, scenario(2024, "a-"), after_each=lambda: batches.append(worker.run_batch(limit=3))
    )
    while applied := worker.run_batch(limit=3):
        batches.append(applied)

    assert all(0 < n <= 3 for n in batches if n), batches
    assert sum(batches) == last == head(db_url)
    assert len([n for n in batches if n]) > last // 3  # many batches, not one
    assert tracking(db_url)[0] == last
    incremental = dump(db_url)
    assert_plausible(incremental, last)

    generation = tracking(db_url)[1]
    assert worker.rebuild() == last
    assert tracking(db_url) == (last, generation + 1)
    assert_same_tables(dump(db_url), incremental)
    # and by a worker that never saw the events before
    assert_same_tables(rebuilt(db_url, test_settings), incremental)


def test_seq_numbers_do_not_depend_on_batch_boundaries(
    ledger: Ledger, worker: ProjectionWorker, db_url: str, test_settings: Settings
) -> None:
    run_scenario(ledger, scenario(2024, "s-"), after_each=lambda: worker.run_batch(limit=1))
    worker.catch_up()
    incremental = dump(db_url)
    assert_same_tables(rebuilt(db_url, test_settings), incremental, exact_seq=True)


def test_reconciliation_line_seq_counts_within_its_reconciliation(
    ledger: Ledger, worker: ProjectionWorker, db_url: str
) -> None:
    steps = [step for step in scenario(2024, "r-") if step[1].__qualname__.startswith("_statem")]
    assert len(steps) == 2
    run_scenario(ledger, steps)
    worker.catch_up()  # both statements in one batch
    rows = dump(db_url)["rm_reconciliation_lines"]
    for reconciliation in {row[0] for row in rows}:
        seqs = [row[1] for row in rows if row[0] == reconciliation]
        assert seqs == list(range(len(seqs))), (reconciliation, seqs)


def test_writes_after_a_rebuild_continue_incrementally_like_a_rebuild(
    ledger: Ledger, worker: ProjectionWorker, db_url: str, test_settings: Settings
) -> None:
    """A worker whose image predates a rebuild by another worker must not reuse it."""
    steps = scenario(2024, "b-")
    run_scenario(ledger, steps[:20], after_each=lambda: worker.run_batch(limit=3))
    worker.catch_up()
    rebuilt(db_url, test_settings)  # another worker rebuilds meanwhile
    run_scenario(ledger, steps[20:], after_each=lambda: worker.run_batch(limit=2))
    worker.catch_up()
    incremental = dump(db_url)
    assert_plausible(incremental, head(db_url))
    assert_same_tables(rebuilt(db_url, test_settings), incremental)


def test_a_rebuild_of_an_empty_ledger_gives_empty_tables(
    worker: ProjectionWorker, db_url: str
) -> None:
    assert worker.rebuild() == 0
    assert all(rows == [] for rows in dump(db_url).values())
    assert tracking(db_url)[0] == 0


@pytest.mark.parametrize("fails", [False, True])
def test_a_rebuild_folds_with_the_cyclic_collector_paused_and_turns_it_back_on(
    ledger: Ledger,
    worker: ProjectionWorker,
    monkeypatch: pytest.MonkeyPatch,
    fails: bool,
) -> None:
    """Its image only grows: collections during the fold would walk it in vain."""
    run_scenario(ledger, scenario(2024, "gc-"))
    collector_on: list[bool] = []

    def fold() -> None:
        collector_on.append(gc.isenabled())
        if fails:
            raise RuntimeError("the fold failed")

    on_each_event(monkeypatch, fold)
    assert gc.isenabled()
    if fails:
        with pytest.raises(RuntimeError):
            worker.rebuild()
    else:
        worker.rebuild()
    assert collector_on and not any(collector_on)
    assert gc.isenabled()


def test_a_worker_overtaking_a_rebuild_ends_its_pipelined_pass_and_applies_nothing_twice(
    ledger: Ledger,
    worker: ProjectionWorker,
    db_url: str,
    test_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While a rebuild folds ahead of its writer thread, another worker may take a batch:
    the writer must see the position moved, and the rebuild carry on the usual way."""
    last = run_scenario(ledger, scenario(2024, "o-"))
    other = ProjectionWorker(ledger)
    overtook: list[int] = []
    calls = 0

    def fold() -> None:
        nonlocal calls
        calls += 1
        if calls == 12:  # the rebuild's third batch of five
            overtook.append(other.run_batch(limit=3))

    with monkeypatch.context() as m:
        m.setattr(worker_module, "BATCH_SIZE", 5)
        on_each_event(m, fold)
        applied = worker.rebuild()

    assert overtook == [3]
    assert applied == last - 3
    assert tracking(db_url)[0] == last
    tables = dump(db_url)
    assert_plausible(tables, last)
    assert_same_tables(rebuilt(db_url, test_settings), tables)


# --- (b) workers racing never apply an event twice ------------------------------------


def test_concurrent_workers_during_writes_apply_every_event_exactly_once(
    db_url: str, test_settings: Settings
) -> None:
    apps = [open_ledger(db_url, test_settings) for _ in range(5)]
    writers, worker_apps = apps[:2], apps[2:]
    workers = [ProjectionWorker(app) for app in worker_apps]
    applied = [0] * len(workers)
    errors: list[BaseException] = []
    stop = threading.Event()

    def work(i: int) -> None:
        rng = random.Random(i)
        try:
            while not stop.is_set():
                n = workers[i].run_batch(limit=rng.randint(1, 4))
                applied[i] += n
                if n == 0:
                    time.sleep(0.002)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    def write(i: int) -> None:
        try:
            run_scenario(writers[i], scenario(2024 + 10 * i, f"w{i}-"))
        except BaseException as e:
            errors.append(e)

    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(workers))]
        writing = [threading.Thread(target=write, args=(i,)) for i in range(len(writers))]
        for t in [*threads, *writing]:
            t.start()
        for t in writing:
            t.join(timeout=120)
        deadline = time.monotonic() + 60
        while tracking(db_url)[0] < head(db_url) and time.monotonic() < deadline and not errors:
            time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        stop.set()
        for app in apps:
            app.close()

    assert errors == []
    events = head(db_url)
    assert events > 2 * len(scenario(2024, "x"))  # both writers ran to the end
    assert tracking(db_url)[0] == events
    assert sum(applied) == events, applied  # each event applied by exactly one worker
    assert sum(1 for n in applied if n) >= 2, applied  # the workers really shared the work
    concurrent = dump(db_url)
    assert_plausible(concurrent, events)
    assert_same_tables(rebuilt(db_url, test_settings), concurrent)


# --- (c) a worker dying mid-batch leaves nothing behind -------------------------------


class Crash(Exception):
    """The worker dies here."""


class CrashingCursor:
    """A cursor that dies on its `fail_at`-th write statement (execute, executemany, copy)."""

    def __init__(self, curs: Any, fail_at: int) -> None:
        self._curs = curs
        self._left = fail_at

    def _tick(self) -> None:
        self._left -= 1
        if self._left <= 0:
            raise Crash("the worker died while writing")

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        self._tick()
        return self._curs.execute(*args, **kwargs)

    def executemany(self, *args: Any, **kwargs: Any) -> Any:
        self._tick()
        return self._curs.executemany(*args, **kwargs)

    def copy(self, *args: Any, **kwargs: Any) -> Any:
        self._tick()
        return self._curs.copy(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._curs, name)


def _crash_while_folding(m: pytest.MonkeyPatch, nth: int) -> None:
    calls = 0

    def fold() -> None:
        nonlocal calls
        calls += 1
        if calls == nth:
            raise Crash("the worker died while folding")

    on_each_event(m, fold)


def _crash_while_writing(m: pytest.MonkeyPatch, fail_at: int) -> None:
    real = Writes.send

    def send(self: Writes, curs: Any) -> None:
        real(self, CrashingCursor(curs, fail_at))
        raise Crash("the worker died after its last write statement")  # fewer than fail_at

    m.setattr(Writes, "send", send)


def _crash_after_writing(m: pytest.MonkeyPatch, _: int) -> None:
    real = Writes.send

    def send(self: Writes, curs: Any) -> None:
        real(self, curs)
        raise Crash("the worker died before moving its position")

    m.setattr(Writes, "send", send)


CRASHES = {
    "folding-first-event": (_crash_while_folding, 1),
    "folding-mid-batch": (_crash_while_folding, 6),
    "folding-last-event": (_crash_while_folding, 10),
    "writing-first-statement": (_crash_while_writing, 1),
    "writing-after-some-tables": (_crash_while_writing, 3),
    "writing-mid-tables": (_crash_while_writing, 5),
    "writing-after-most-tables": (_crash_while_writing, 8),
    "after-writing-before-position": (_crash_after_writing, 0),
}


def test_a_batch_commits_without_waiting_for_the_disk_and_only_it(
    ledger: Ledger, worker: ProjectionWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read models are derived: a batch's commit need not wait for the server's
    flush (a crash loses it with its positions, and it is applied again), so that the
    writer's commits do not queue behind it. The setting ends with the batch."""
    run_scenario(ledger, scenario(2024, "sc-"))
    seen: list[str] = []
    send = Writes.send

    def sending(writes: Writes, curs: Any) -> None:
        seen.append(curs.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"])
        send(writes, curs)

    monkeypatch.setattr(Writes, "send", sending)
    worker.run_batch(limit=5)
    worker.rebuild()
    assert len(seen) >= 2 and set(seen) == {"off"}
    with datastore_of(ledger).transaction(commit=False) as curs:
        assert curs.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"] == "on"


@pytest.mark.parametrize("resume", ["same-worker", "fresh-worker"])
@pytest.mark.parametrize("crash", list(CRASHES))
def test_a_worker_dying_mid_batch_rolls_back_and_the_next_catches_up(
    ledger: Ledger,
    worker: ProjectionWorker,
    db_url: str,
    test_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    crash: str,
    resume: str,
) -> None:
    run_scenario(ledger, scenario(2024, "c-"))
    assert worker.run_batch(limit=10) == 10
    assert worker.run_batch(limit=7) == 7  # the worker's image is warm
    before = dump(db_url)
    at = tracking(db_url)
    assert at[0] == 17

    inject, n = CRASHES[crash]
    with monkeypatch.context() as m:
        inject(m, n)
        with pytest.raises(Crash):
            worker.run_batch(limit=10)

    assert tracking(db_url) == at
    assert_same_tables(dump(db_url), before)
    resumer = worker if resume == "same-worker" else ProjectionWorker(ledger)
    assert resumer.catch_up() == head(db_url) - 17
    # more writes after the crash, applied by the resumer on its (rebuilt) image
    run_scenario(ledger, scenario(2030, "d-")[:12], after_each=lambda: resumer.run_batch(limit=4))
    resumer.catch_up()
    after = dump(db_url)
    assert_plausible(after, head(db_url))
    assert_same_tables(rebuilt(db_url, test_settings), after)


# --- (d) readiness reports the lag ---------------------------------------------------


@pytest.fixture
def client_without_workers(db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Any]]:
    settings = Settings(
        database_url=db_url,
        data_dir=tmp_path,
        pool_size=4,
        projections_in_process=False,
        master_key=TEST_MASTER_KEY,
        signing_key=TEST_SIGNING_KEY,
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, app


def test_readyz_reports_the_projection_lag_until_a_worker_catches_up(
    client_without_workers: tuple[TestClient, Any], db_url: str
) -> None:
    client, app = client_without_workers
    key = install_key(datastore_of(app.state.ledger), "admin", ["admin"])
    client.headers["Authorization"] = f"Bearer {key}"
    r = client.post("/v1/fund-years", json={"year": 2024, "currency": "CNY"})
    assert r.status_code == 201, r.text
    body = {
        "appropriation_id": "AP-1",
        "programme": "settling_in",
        "kind": "cash",
        "amount": "1000",
        "reference": "财预〔2024〕1号",
    }
    r = client.post("/v1/fund-years/2024/appropriations", json=body)
    assert r.status_code == 201, r.text
    position = int(r.headers["Ledger-Position"])

    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    lagging = ready.json()
    assert lagging["database"] is True
    assert lagging["head_position"] == position == head(db_url)
    assert lagging["projection_position"] == 0
    assert lagging["projection_lag"] == position > 0
    assert tracked_position(datastore_of(app.state.ledger), NAMES) == 0  # really no worker ran

    assert ProjectionWorker(app.state.ledger).catch_up() == position
    caught_up = client.get("/readyz").json()
    assert caught_up["head_position"] == caught_up["projection_position"] == position
    assert caught_up["projection_lag"] == 0

    r = client.post("/v1/fund-years/2024/appropriations", json={**body, "appropriation_id": "AP-2"})
    assert r.status_code == 201, r.text
    assert client.get("/readyz").json()["projection_lag"] == int(r.headers["Ledger-Position"]) - (
        position
    )


# --- (e) a new view is backfilled alone ---------------------------------------------


class GrantCount(View):
    """A read model added later: grants proposed per talent."""

    NAME = "grant_count"
    VERSION = 1
    TABLES = (
        Table("rm_grant_count", {"talent_id": "text", "grants": "int NOT NULL"}, ("talent_id",)),
    )

    def __init__(self, streams: Any, *, complete: bool) -> None:
        super().__init__(streams, complete=complete)
        self.counts: Rows[str, list[int]] = Rows(self.TABLES[0], lambda k, n: (k, n[0]))

    def size(self) -> int:
        return len(self.counts.rows)

    def write(self, out: Writes, curs: Any) -> None:
        self.counts.write(out, curs)

    @handles(Grant.Proposed)
    def _proposed(self, e: Grant.Proposed) -> None:
        count = self.stored(self.counts, e.talent_id, lambda r: [r["grants"]])
        if count is None:
            count = self.counts.create(e.talent_id, [0])
        self.counts.touch(e.talent_id)
        count[0] += 1


def test_a_view_added_later_is_backfilled_alone_while_the_others_carry_on(
    ledger: Ledger, worker: ProjectionWorker, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    last = run_scenario(ledger, scenario(2024, "v-"))
    worker.catch_up()
    before = dump(db_url)
    with psycopg.connect(db_url) as conn:
        existing = conn.execute("SELECT name, position, generation FROM projection_tracking")
        at_head = sorted(existing.fetchall())
    assert {position for _, position, _ in at_head} == {last}

    folded_by_the_others: list[int] = []
    on_each_event(monkeypatch, lambda: folded_by_the_others.append(1))
    added = ProjectionWorker(ledger, (*VIEWS, GrantCount))
    with psycopg.connect(db_url) as conn:
        assert conn.execute(
            "SELECT position FROM projection_tracking WHERE name = 'grant_count'"
        ).fetchone() == (0,)
    assert added.catch_up() == last  # every event, once, for the new view alone
    assert folded_by_the_others == []
    assert_same_tables(dump(db_url), before)
    with psycopg.connect(db_url) as conn:
        tracked = sorted(conn.execute("SELECT name, position, generation FROM projection_tracking"))
        counts = dict(conn.execute("SELECT talent_id, grants FROM rm_grant_count").fetchall())
        proposed = conn.execute(
            "SELECT talent_id, count(*) FROM rm_grants GROUP BY talent_id"
        ).fetchall()
    assert [row for row in tracked if row[0] != "grant_count"] == at_head
    assert counts == dict(proposed) and counts

    # writes after it reach every view together
    run_scenario(ledger, scenario(2030, "w-")[:10])
    added.catch_up()
    assert tracking(db_url)[0] == head(db_url)


def test_a_view_whose_version_rises_is_dropped_and_backfilled_alone(
    ledger: Ledger, worker: ProjectionWorker, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    last = run_scenario(ledger, scenario(2024, "x-"))
    ProjectionWorker(ledger, (*VIEWS, GrantCount)).catch_up()
    with psycopg.connect(db_url) as conn:
        generations = dict(conn.execute("SELECT name, generation FROM projection_tracking"))
    monkeypatch.setattr(GrantCount, "VERSION", 2)
    upgraded = ProjectionWorker(ledger, (*VIEWS, GrantCount))
    with psycopg.connect(db_url) as conn:
        after = {
            n: (p, g)
            for n, p, g in conn.execute(
                "SELECT name, position, generation FROM projection_tracking"
            )
        }
        assert conn.execute("SELECT count(*) FROM rm_grant_count").fetchone() == (0,)
    assert after.pop("grant_count") == (0, generations["grant_count"] + 1)
    assert after == {n: (last, g) for n, g in generations.items() if n != "grant_count"}
    assert upgraded.catch_up() == last
    monkeypatch.setattr(GrantCount, "VERSION", 1)
    with pytest.raises(NewerReadModel):
        ProjectionWorker(ledger, (*VIEWS, GrantCount))


def test_readyz_is_503_past_the_lag_allowed_and_ready_once_caught_up(
    test_settings: Settings,
) -> None:
    app = create_app(replace(test_settings, projections_in_process=False, ready_max_lag=1))
    with TestClient(app, raise_server_exceptions=False) as client:
        key = install_key(datastore_of(app.state.ledger), "admin", ["admin"])
        client.headers["Authorization"] = f"Bearer {key}"
        assert client.get("/readyz").status_code == 200
        for year in (2024, 2025):
            assert client.post("/v1/fund-years", json={"year": year, "currency": "CNY"}).is_success
        lagging = client.get("/readyz")
        assert lagging.status_code == 503
        assert lagging.json()["code"] == "unavailable"
        assert "lag 2 events behind, over 1" in lagging.json()["detail"]
        ProjectionWorker(app.state.ledger).catch_up()
        assert client.get("/readyz").status_code == 200


def test_readyz_is_503_when_the_projection_worker_stops_or_keeps_failing(
    api: Callable[[str | None], TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = api(None)
    app = client.app
    worker = app.state.worker  # type: ignore[attr-defined]
    assert client.get("/readyz").status_code == 200

    def fails(limit: int = 0) -> int:
        raise RuntimeError("an event it cannot apply")

    monkeypatch.setattr(worker, "run_batch", fails)
    monkeypatch.setattr(worker_module, "RETRY_SECONDS", 0.05)
    deadline = time.monotonic() + 10
    while client.get("/readyz").status_code == 200:
        assert time.monotonic() < deadline, "a failing worker was still reported ready"
        time.sleep(0.05)
    failing = client.get("/readyz").json()
    assert "failed" in failing["detail"] and "batches in a row" in failing["detail"]
    monkeypatch.undo()  # it applies batches again: ready again
    deadline = time.monotonic() + 10
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    worker.stop()
    assert "the projection worker has stopped" in client.get("/readyz").json()["detail"]


@pytest.fixture
def two_processes(
    ledger: Ledger, db_url: str, test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[ProjectionWorker]]:
    """A projection worker for each of two processes on one database (not started:
    `start` them), trying for the lead every 0.1 s; stopped at the end."""
    monkeypatch.setattr(worker_module, "LEAD_RETRY_SECONDS", 0.1)
    other = open_ledger(db_url, test_settings)
    workers = [ProjectionWorker(ledger), ProjectionWorker(other)]
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop()
        other.close()


def until(condition: Callable[[], bool], failure: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.01)


def test_one_worker_of_a_deployment_leads_and_another_takes_over_when_it_stops(
    ledger: Ledger, db_url: str, two_processes: list[ProjectionWorker], monkeypatch: Any
) -> None:
    """As `ledger serve --workers 2` comes, each process runs a worker: one applies
    every batch, the other waits, and takes over once the first is gone."""
    workers = two_processes
    applied = [0, 0]
    for i, worker in enumerate(workers):

        def counted(limit: int = worker_module.BATCH_SIZE, i: int = i, w: Any = worker) -> int:
            n = ProjectionWorker.run_batch(w, limit)
            applied[i] += n
            return n

        monkeypatch.setattr(worker, "run_batch", counted)
        worker.start()

    def caught_up(year: int) -> None:
        with acting_as("admin", f"req-{year}"):
            ledger.execute(c.OpenFundYear(year, "CNY"))
        until(lambda: tracking(db_url)[0] == head(db_url), "no worker applied the events")

    for year in range(2024, 2030):
        caught_up(year)
    leader = next(i for i, w in enumerate(workers) if w.leading)
    assert not workers[1 - leader].leading
    assert applied[1 - leader] == 0 and applied[leader] == head(db_url)
    workers[leader].stop()
    caught_up(2030)
    assert workers[1 - leader].leading
    assert applied[1 - leader] == 1  # the event after the first stopped leading


def test_a_leader_failing_batch_after_batch_steps_down_for_another(
    ledger: Ledger, db_url: str, two_processes: list[ProjectionWorker], monkeypatch: Any
) -> None:
    """A leader that cannot apply a batch (its process's trouble, say) gives the lead
    up for a while, so that another worker applies them."""
    monkeypatch.setattr(worker_module, "RETRY_SECONDS", 0.01)
    monkeypatch.setattr(worker_module, "STEP_DOWN_SECONDS", 1.0)
    troubled, sound = two_processes

    def fails(limit: int = 0) -> int:
        raise RuntimeError("this process cannot apply a batch")

    monkeypatch.setattr(troubled, "run_batch", fails)
    troubled.start()
    until(lambda: troubled.leading, "the first worker never led")
    sound.start()
    with acting_as("admin", "req-year"):
        ledger.execute(c.OpenFundYear(2024, "CNY"))
    until(lambda: tracking(db_url)[0] == head(db_url), "no worker took over")
    assert sound.leading
    assert troubled.failures_in_a_row >= worker_module.FAILING_AFTER


def test_a_waiting_worker_is_not_failing_for_what_it_met_before(
    two_processes: list[ProjectionWorker],
) -> None:
    """Once the database answers again, a worker that waits for the lead is not counted
    as failing (it applies no batch that could prove it sound), so `/readyz` sends
    requests to its process again."""
    leader, waiting = two_processes
    leader.start()
    until(lambda: leader.leading, "the first worker never led")
    waiting.failures_in_a_row = worker_module.FAILING_AFTER  # the database was away
    waiting.start()
    until(lambda: not waiting.failing, "a waiting worker stayed failing")
    assert not waiting.leading


def test_after_a_short_batch_a_leader_rests_four_times_as_long_as_it_took(
    worker: ProjectionWorker, monkeypatch: Any
) -> None:
    """Under a steady stream of writes, batches of a few events would run back to back,
    each a transaction and a statement per table: a leader rests after each
    REST_PER_BATCH times as long as it took, so that it takes at most a fifth of its
    time, and the next batch finds more events gathered; but never longer than
    MAX_REST_SECONDS, so that reads do not wait out a long batch's rest."""
    took = [0.02, 0.3, 0.02]  # the second, a catching up
    started: list[float] = []

    def slow(limit: int = 0) -> int:
        started.append(time.monotonic())
        time.sleep(took[min(len(started), len(took)) - 1])
        return 1  # short of a full batch

    monkeypatch.setattr(worker, "run_batch", slow)
    worker.start()
    until(lambda: len(started) >= 3, "the worker never led")
    worker.stop()
    rests = [b - a - t for (a, b), t in zip(itertools.pairwise(started), took, strict=False)]
    assert rests[0] >= 0.02 * worker_module.REST_PER_BATCH
    assert worker_module.MAX_REST_SECONDS <= rests[1] < 0.3 * worker_module.REST_PER_BATCH / 2
