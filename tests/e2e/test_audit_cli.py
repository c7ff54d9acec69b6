"""`ledger audit verify`, `ledger projections rebuild` and `ledger export audit-trail`
(docs/cli.md), run as real processes on the test database."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from ledger.domain.context import acting_as
from ledger.usecases.ledger import Ledger
from projections.schema import tables as read_model_tables
from projections.worker import ProjectionWorker
from tests import commands as c
from tests.e2e.conftest import LEDGER, ROOT, Server
from tests.tampering import tamper

pytestmark = pytest.mark.db

Cli = Callable[..., subprocess.CompletedProcess[str]]


def record_some_events(app: Ledger) -> int:
    """A small life through the application; the number of events it recorded."""
    with acting_as("admin", "req-a"):
        app.execute(c.OpenFundYear(2024, "CNY"))
        app.execute(c.Appropriate(2024, "AP1", "settling_in", "cash", Decimal(50000), "财预"))
    with acting_as("clerk", "req-b"):
        app.execute(
            c.RegisterTalent("T1", "张伟", "doctorate", "某院", date(2023, 1, 1), date(2030, 1, 1))
        )
        app.execute(c.ProposeGrant("G1", "T1", 2024, "settling_in", Decimal(3000), "第5条", "安家"))
    with acting_as("approver", "req-c"):
        app.execute(c.ApproveGrant("G1", None))
    with acting_as("treasury", "req-d"):
        last = app.execute(
            c.RecordPayment("P1", "G1", Decimal(1000), date(2024, 3, 1), "BR1")
        ).position
    return last


def test_audit_verify_exits_0_on_an_intact_ledger(ledger: Ledger, cli: Cli) -> None:
    events = record_some_events(ledger)

    done = cli("audit", "verify")

    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(rf"\b{events}\b", done.stdout), done.stdout


def test_audit_verify_exits_0_on_a_fresh_empty_database(cli: Cli) -> None:
    done = cli("audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("column", ["state", "topic"])
def test_audit_verify_exits_1_and_names_the_first_altered_event(
    ledger: Ledger, cli: Cli, db_url: str, column: str
) -> None:
    events = record_some_events(ledger)
    bad = 4
    change = {
        "state": "state = convert_to(replace(convert_from(state, 'UTF8'), '3000', '9000'), 'UTF8')",
        "topic": "topic = topic || 'X'",
    }[column]
    tamper(db_url, f"UPDATE ledger_events SET {change} WHERE notification_id = %s", (bad,))
    assert bad < events

    done = cli("audit", "verify")

    assert done.returncode == 1, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert re.search(rf"position {bad}\b", output), output


def test_audit_verify_reports_a_deleted_event_at_the_next_position(
    ledger: Ledger, cli: Cli, db_url: str
) -> None:
    record_some_events(ledger)
    tamper(db_url, "DELETE FROM ledger_events WHERE notification_id = %s", (3,))

    done = cli("audit", "verify")

    assert done.returncode == 1
    assert re.search(r"position 4\b", done.stdout + done.stderr), done.stdout


def _tables(db_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every read-model table in a stable order; the journal without its `seq`, whose
    numbering depends on batch boundaries (the bug test_projections.py marks)."""
    with psycopg.connect(db_url) as conn:
        tables = {  # in a stable order, however many columns a table has
            table: sorted(
                conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))),
                key=repr,
            )
            for table in read_model_tables()
            if table != "rm_journal"
        }
        tables["rm_journal"] = conn.execute(
            "SELECT position, year, programme, account, debit, credit FROM rm_journal "
            "ORDER BY position, seq"
        ).fetchall()
    return tables


def test_projections_rebuild_exits_0_with_the_same_read_models(
    ledger: Ledger, cli: Cli, db_url: str
) -> None:
    events = record_some_events(ledger)
    worker = ProjectionWorker(ledger)
    while worker.run_batch(limit=2):
        pass
    incremental = _tables(db_url)
    assert len(incremental["rm_audit_trail"]) == events

    done = cli("projections", "rebuild", "--yes")

    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(rf"\b{events}\b", done.stdout), done.stdout
    assert _tables(db_url) == incremental
    with psycopg.connect(db_url) as conn:  # settled: vacuumed and analysed, not left to autovacuum
        unsettled = conn.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(%s) "
            "AND (last_vacuum IS NULL OR last_analyze IS NULL)",
            (read_model_tables(),),
        ).fetchall()
    assert unsettled == []


def test_projections_rebuild_works_on_a_fresh_empty_database(cli: Cli) -> None:
    done = cli("projections", "rebuild", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr


# --- the export: the same bytes as the API --------------------------------------------


def run_bytes(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    """A `ledger` command with its standard output as raw bytes (no newline translation)."""
    return subprocess.run(
        [LEDGER, *args], env=env, cwd=ROOT, capture_output=True, timeout=120, check=False
    )


def _populate_over_http(server: Server, keys: dict[str, str]) -> int:
    def post(role: str, path: str, body: dict[str, Any]) -> httpx.Response:
        r = httpx.post(
            server.url + path,
            json=body,
            headers={"Authorization": f"Bearer {keys[role]}", "X-Request-Id": f"cli-{role}"},
        )
        assert r.status_code in (200, 201), r.text
        return r

    post("admin", "/v1/fund-years", {"year": 2024, "currency": "CNY"})
    post("admin", "/v1/fund-years", {"year": 2025, "currency": "CNY"})
    for year in (2024, 2025):
        post(
            "admin",
            f"/v1/fund-years/{year}/appropriations",
            {
                "appropriation_id": f"AP{year}",
                "programme": "settling_in",
                "kind": "cash",
                "amount": "50000",
                "reference": "=财预〔2024〕12号",
            },
        )
    talent = {
        "talent_id": "T1",
        "name": "O'Brien, 张",
        "category": "doctorate",
        "employer": "某研究院",
        "arrived_on": "2023-06-01",
        "service_commitment_until": "2028-05-31",
    }
    post("clerk", "/v1/talents", talent)
    grant = {
        "grant_id": "G1",
        "talent_id": "T1",
        "fund_year": 2024,
        "programme": "settling_in",
        "amount": "3000.5",
        "policy_reference": '+86 "quoted", policy',
        "reason": "安家补贴\n第二行",
    }
    post("clerk", "/v1/grants", grant)
    post("approver", "/v1/grants/G1/approve", {"note": "@ok"})
    payment = {
        "payment_id": "P1",
        "grant_id": "G1",
        "amount": "1000",
        "value_date": "2024-03-01",
        "bank_reference": "BR1",
    }
    r = post("treasury", "/v1/payments", payment)
    r = post("treasury", "/v1/payments/P1/return", {"returned_on": "2024-03-04", "reason": "-退票"})
    return int(r.headers["Ledger-Position"])


def test_export_audit_trail_writes_the_bytes_the_api_serves(
    serve: Callable[..., Server],
    make_key: Callable[..., str],
    ledger_env: dict[str, str],
    tmp_path: Path,
) -> None:
    keys = {role: make_key(role, role) for role in ("admin", "clerk", "approver", "treasury")}
    keys["auditor"] = make_key("auditor", "auditor")
    server = serve()
    last = _populate_over_http(server, keys)
    auth = {"Authorization": f"Bearer {keys['auditor']}"}

    for year in ("2024", "2025", None):
        params: dict[str, Any] = {"min_position": last}
        args = ["export", "audit-trail"]
        if year is not None:
            params["fund_year"] = year
            args += ["--fund-year", year]
        r = httpx.get(f"{server.url}/v1/exports/audit-trail.csv", params=params, headers=auth)
        assert r.status_code == 200, r.text
        served = r.content
        assert served.count(b"\r\n") > 2
        if year != "2025":
            assert "安家补贴\n第二行".encode() in served

        out = tmp_path / f"trail-{year}.csv"
        done = run_bytes(ledger_env, *args, "--out", str(out))
        assert done.returncode == 0, done.stderr.decode()
        assert out.read_bytes() == served, year

        printed = run_bytes(ledger_env, *args)
        assert printed.returncode == 0, printed.stderr.decode()
        assert printed.stdout == served, year
