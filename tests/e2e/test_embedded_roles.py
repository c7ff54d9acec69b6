"""The embedded default sets both database roles up itself (CONTRACT §12): `ledger serve`
with no `LEDGER_DATABASE_URL` starts its own PostgreSQL, sets the schema up as the
server's superuser, and serves as `ledger_app`, which appends but cannot change the
history. And `ledger db init --app-role` does the same for an external database."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.conftest import TEST_MASTER_KEY, TEST_SIGNING_KEY, drop_role
from tests.e2e.conftest import Server, run_ledger

pytestmark = pytest.mark.db


def _embedded_dsn(data_dir: Path, user: str) -> str:
    """How to reach the embedded server `ledger serve` started (its postmaster.pid)."""
    lines = (data_dir / "pg" / "postmaster.pid").read_text().splitlines()
    return make_conninfo(host=lines[4], port=lines[3], user=user, dbname="ledger")


def test_the_embedded_server_serves_as_an_application_role(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env.update(
        LEDGER_DATA_DIR=str(data_dir),
        LEDGER_MASTER_KEY=TEST_MASTER_KEY,
        LEDGER_SIGNING_KEY=TEST_SIGNING_KEY,
    )
    server = Server(env, tmp_path / "serve.log")
    try:
        made = run_ledger(
            env, "keys", "create", "--actor", "test-admin", "--name", "e2e-admin", "--role", "admin"
        )
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip().splitlines()[-1]
        opened = httpx.post(
            f"{server.url}/v1/fund-years",
            json={"year": 2025, "currency": "CNY"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert opened.status_code == 201, opened.text

        with psycopg.connect(_embedded_dsn(data_dir, "postgres")) as conn:
            users = conn.execute(
                "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = 'ledger' "
                "AND pid <> pg_backend_pid()"
            ).fetchall()
        assert ("ledger_app",) in users
        with (
            psycopg.connect(_embedded_dsn(data_dir, "ledger_app")) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute("UPDATE ledger_events SET topic = topic")
    finally:
        server.stop()


def test_db_init_sets_up_an_application_role_that_serves(
    ledger_env: dict[str, str],
    db_url: str,
    serve: Callable[..., Server],
    cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    role = "e2e_app_" + secrets.token_hex(4)
    done = cli("db", "init", "--app-role", role)
    assert done.returncode == 0, done.stderr
    assert role in done.stdout
    made = cli("keys", "create", "--actor", "test-admin", "--name", "e2e-clerk", "--role", "admin")
    key = made.stdout.strip().splitlines()[-1]
    try:
        ledger_env["LEDGER_DATABASE_URL"] = make_conninfo(db_url, user=role)
        server = serve()
        opened = httpx.post(
            f"{server.url}/v1/fund-years",
            json={"year": 2025, "currency": "CNY"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert opened.status_code == 201, opened.text
        server.stop()
    finally:
        drop_role(db_url, role)
