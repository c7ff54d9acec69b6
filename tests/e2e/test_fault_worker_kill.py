"""A `ledger projections run` process killed with SIGKILL in the middle of a batch.

The API runs without projections (`LEDGER_PROJECTIONS=separate`), so a backlog of
thousands of events waits for the worker process alone. Killed while its batch
transaction is open, it must leave the read models exactly at its last committed
position (nothing of the interrupted batch); restarted, it must reach the head and
leave every read-model table row for row what `ledger projections rebuild` makes
of the same events: no event lost, none applied twice.

The backlog: every kind of event through `/v1/batch` (fund year 2030), then the
bulk from `bench.generate` (fund years 2019-2028): events made by the domain's own
aggregates and appended in bulk, a few times faster than through HTTP, so that the
worker needs more than two batches of BATCH_SIZE.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

import bench.generate
from ledger.usecases.ledger import Ledger
from projections.worker import BATCH_SIZE
from tests.e2e.conftest import LEDGER, ROOT, Server
from tests.integration.test_projections import assert_plausible, assert_same_tables, dump

pytestmark = pytest.mark.db

Cli = Callable[..., subprocess.CompletedProcess[str]]

YEAR = 2030  # none of bench.generate's years
TALENTS = 20
GRANTS = 120
APPROVED = 80  # G-0 .. G-79; G-80 .. G-99 are rejected, the rest stay proposed
REVOKED = range(60, 70)  # approved, never paid
PAID = 40  # G-0 .. G-39 are paid before the kill, G-40 .. G-49 after it
DEADLINE_SECONDS = 60


@pytest.fixture
def ledger_env(ledger_env: dict[str, str]) -> dict[str, str]:
    """No projection worker inside `ledger serve`: only the processes this test runs."""
    return {**ledger_env, "LEDGER_PROJECTIONS": "separate"}


@dataclass
class Worker:
    """A `ledger projections run` process and its log."""

    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])

    def kill(self, sig: signal.Signals) -> None:
        """`sig` to the whole process group, and wait for the process to end."""
        os.killpg(self.proc.pid, sig)
        self.proc.wait(20)


@pytest.fixture
def workers(ledger_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], Worker]]:
    """`workers()` starts a worker process; any still running at the end is killed."""
    started: list[Worker] = []

    def start() -> Worker:
        log = tmp_path / f"worker-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [LEDGER, "projections", "run"],
                env=ledger_env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(Worker(proc, log))
        return started[-1]

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.kill(signal.SIGKILL)


# --- every kind of event, sent as atomic batches ----------------------------------


def op(name: str, /, **body: Any) -> dict[str, Any]:
    return {"op": name, "body": body}


def payment(i: int, month: str) -> dict[str, Any]:
    return op(
        "payment.record",
        payment_id=f"P-{i}",
        grant_id=f"G-{i}",
        amount="500.00",
        value_date=f"{month}-{i % 28 + 1:02d}",
        bank_reference=f"BR-{i}",
    )


def operations() -> list[tuple[str, list[dict[str, Any]]]]:
    """(role, operations) of each batch, in order: fund year, lines and talents;
    grants proposed, approved, rejected, revoked; payments and returns; rent waivers
    granted and ended; departures, clawbacks and recoveries."""
    lines = [("settling_in", "cash"), ("rent_subsidy", "cash"), ("housing", "in_kind")]
    setup = [op("fund_year.open", year=YEAR, currency="CNY")]
    setup += [
        op(
            "appropriation.add",
            year=YEAR,
            appropriation_id=f"A-{n}",
            programme=programme,
            kind=kind,
            amount="5000000",
            reference=f"嘉财预〔{YEAR}〕{n + 1}号",
        )
        for n, (programme, kind) in enumerate(lines)
    ]
    setup += [
        op(
            "talent.register",
            talent_id=f"T-{t}",
            name=f"人才{t}",
            category=("doctorate", "master", "leading")[t % 3],
            employer=f"某单位{t % 7}",
            arrived_on="2029-07-01",
            service_commitment_until="2034-06-30",
        )
        for t in range(TALENTS)
    ]
    setup += [
        op(
            "grant.propose",
            grant_id=f"G-{i}",
            talent_id=f"T-{i % TALENTS}",
            fund_year=YEAR,
            programme="rent_subsidy" if i % 3 == 0 else "settling_in",
            amount=f"{1000 + (i % 50) * 37}.{i % 100:02d}",
            policy_reference="人才新政第5条",
            reason=f"批次{i // 100}",
        )
        for i in range(GRANTS)
    ]
    decisions = [op("grant.approve", grant_id=f"G-{i}", note="同意") for i in range(APPROVED)]
    decisions += [
        op("grant.reject", grant_id=f"G-{i}", reason="材料不全")
        for i in range(APPROVED, APPROVED + 20)
    ]
    decisions += [op("grant.revoke", grant_id=f"G-{i}", reason="不符合条件") for i in REVOKED]
    rest = [payment(i, f"{YEAR}-03") for i in range(PAID)]
    rest += [
        op("payment.return", payment_id=f"P-{i}", returned_on=f"{YEAR}-04-01", reason="账户已注销")
        for i in range(10)
    ]
    rest += [
        op(
            "waiver.grant",
            waiver_id=f"W-{w}",
            talent_id=f"T-{w}",
            fund_year=YEAR,
            programme="housing",
            apartment=f"人才公寓 {w // 10}栋{w % 10}01",
            start_on=f"{YEAR}-01-01",
            end_on=f"{YEAR}-12-31",
            monthly_rent="1500",
        )
        for w in range(TALENTS)
    ]
    rest += [op("waiver.end", waiver_id=f"W-{w}", ended_on=f"{YEAR}-06-15") for w in range(5)]
    # T-0 .. T-4 leave; G-20 .. G-24 are theirs, paid 500.00 and never returned
    rest += [
        op("talent.depart", talent_id=f"T-{t}", departed_on=f"{YEAR}-09-01", reason="离职")
        for t in range(5)
    ]
    rest += [
        op(
            "clawback.assess",
            clawback_id=f"C-{t}",
            grant_id=f"G-{TALENTS + t}",
            amount="200.00",
            reason="服务期未满",
        )
        for t in range(5)
    ]
    rest += [recovery(t) for t in range(3)]
    return [("office", setup), ("approver", decisions), ("office", rest)]


def after_the_kill() -> list[dict[str, Any]]:
    """Writes that change what the killed worker had already projected."""
    return [
        *(payment(i, f"{YEAR}-05") for i in range(PAID, PAID + 10)),
        op("payment.return", payment_id="P-10", returned_on=f"{YEAR}-05-20", reason="户名不符"),
        op("waiver.end", waiver_id="W-5", ended_on=f"{YEAR}-08-31"),
        recovery(3),
    ]


def recovery(t: int) -> dict[str, Any]:
    return op(
        "clawback.recover",
        clawback_id=f"C-{t}",
        recovery_id=f"R-{t}",
        amount="200.00",
        value_date=f"{YEAR}-10-08",
        bank_reference=f"RB-{t}",
    )


def record(server: Server, key: str, ops: list[dict[str, Any]]) -> int:
    """One atomic batch; the position of its last event."""
    r = httpx.post(
        f"{server.url}/v1/batch",
        json={"atomic": True, "operations": ops},
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )
    assert r.status_code == 200, r.text[:2000]
    assert {res["status"] for res in r.json()["results"]} <= {200, 201}
    return int(r.headers["Ledger-Position"])


# --- looking at the database ------------------------------------------------------


def head(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()
    assert row is not None
    return int(row[0])


def tracked(conn: psycopg.Connection[Any]) -> int:
    """The position every view has reached."""
    row = conn.execute("SELECT min(position) FROM projection_tracking").fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


def batch_holders(conn: psycopg.Connection[Any]) -> list[int]:
    """The backends inside a worker's batch: holding the tracking rows FOR UPDATE."""
    rows = conn.execute(
        "SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND c.relname = 'projection_tracking' AND l.mode = 'RowShareLock' AND l.granted"
    ).fetchall()
    return [int(pid) for (pid,) in rows]


def wait_mid_batch(db_url: str, worker: Worker, events: int) -> tuple[int, int]:
    """Poll until the worker has committed some batches, is inside another, and more
    than a whole batch remains after it; (its position then, its backend pid)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    with psycopg.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            assert worker.proc.poll() is None, worker.tail()
            position = tracked(conn)
            assert events - position > BATCH_SIZE, f"missed the window: at {position} of {events}"
            holders = batch_holders(conn)
            if position > 0 and holders:
                return position, holders[0]
            time.sleep(0.005)
    raise AssertionError(f"the worker never got going:\n{worker.tail()}")


def wait_gone(db_url: str, pid: int) -> None:
    """Until PostgreSQL has noticed the dead client and rolled its transaction back."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    with psycopg.connect(db_url, autocommit=True) as conn:
        while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, f"backend {pid} outlived its client"
            time.sleep(0.01)


def wait_caught_up(db_url: str, worker: Worker, position: int) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    with psycopg.connect(db_url, autocommit=True) as conn:
        while (at := tracked(conn)) < position:
            assert worker.proc.poll() is None, worker.tail()
            assert time.monotonic() < deadline, f"stuck at {at} of {position}:\n{worker.tail()}"
            time.sleep(0.02)
        assert at == position


def audit_positions(db_url: str) -> list[int]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT position FROM rm_audit_trail ORDER BY position").fetchall()
    return [int(p) for (p,) in rows]


def max_positions(db_url: str) -> dict[str, int]:
    """The last position each position-keyed read model holds."""
    tables = ("rm_line_versions", "rm_talent_balance_versions", "rm_journal")
    with psycopg.connect(db_url) as conn:
        rows = [
            conn.execute(
                sql.SQL("SELECT coalesce(max(position), 0) FROM {}").format(sql.Identifier(t))
            ).fetchone()
            for t in tables
        ]
    return {t: int(row[0]) for t, row in zip(tables, rows, strict=True) if row is not None}


def statement() -> bytes:
    """Some payments as the bank saw them, a return, and a line the ledger lacks."""
    lines = ["value_date,bank_reference,amount,direction,counterparty"]
    lines += [f"{YEAR}-03-{i % 28 + 1:02d},BR-{i},500.00,debit,人才{i}" for i in range(20, PAID)]
    lines += [f"{YEAR}-04-01,BR-0,500.00,credit,人才0", f"{YEAR}-03-15,BR-X,9.99,debit,某人"]
    return ("\n".join(lines) + "\n").encode()


def test_a_worker_killed_mid_batch_resumes_to_the_read_models_a_rebuild_gives(
    ledger: Ledger,
    serve: Callable[..., Server],
    make_key: Callable[..., str],
    cli: Cli,
    workers: Callable[[], Worker],
    db_url: str,
) -> None:
    keys = {
        "office": make_key("fault-office", "admin", "clerk", "treasury", "auditor"),
        "approver": make_key("fault-approver", "approver"),
    }
    server = serve()
    for role, ops in operations():
        record(server, keys[role], ops)
    bench.generate.generate(ledger, 2 * BATCH_SIZE)
    backlog = head(db_url)
    assert backlog > 2 * BATCH_SIZE
    with psycopg.connect(db_url) as conn:
        assert tracked(conn) == 0  # `ledger serve` projects nothing here

    first = workers()
    position, backend = wait_mid_batch(db_url, first, backlog)
    first.kill(signal.SIGKILL)
    wait_gone(db_url, backend)

    # the read models stop exactly at the last committed batch: the interrupted one
    # left nothing behind
    with psycopg.connect(db_url) as conn:
        killed_at = tracked(conn)
    assert killed_at in (position, position + BATCH_SIZE), (position, killed_at)
    assert 0 < killed_at < backlog
    assert audit_positions(db_url) == list(range(1, killed_at + 1))
    assert all(p <= killed_at for p in max_positions(db_url).values()), max_positions(db_url)

    # more writes while no worker runs, then a new worker, and a statement that
    # waits for it (503 until the read models include everything recorded)
    more = record(server, keys["office"], after_the_kill())
    second = workers()
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        r = httpx.post(
            f"{server.url}/v1/reconciliations",
            content=statement(),
            headers={"Authorization": f"Bearer {keys['office']}", "Content-Type": "text/csv"},
            timeout=30,
        )
        if r.status_code != 503 or time.monotonic() > deadline:
            break
    assert r.status_code == 201, f"{r.text}\n{second.tail()}"
    assert len(r.json()["matched"]) == PAID - 20 + 1, r.text
    last = int(r.headers["Ledger-Position"])
    assert last == head(db_url) > more > backlog
    wait_caught_up(db_url, second, last)
    ready = httpx.get(f"{server.url}/readyz").json()
    assert (ready["head_position"], ready["projection_lag"]) == (last, 0), ready

    # every event applied exactly once, and the tables what a rebuild makes of them
    second.kill(signal.SIGTERM)
    incremental = dump(db_url)
    assert_plausible(incremental, last)  # every table has rows; one audit entry a position
    rebuilt = cli("projections", "rebuild", "--yes")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert f"from {last} events" in rebuilt.stdout, rebuilt.stdout
    assert_same_tables(dump(db_url), incremental)
