"""Database roles (CONTRACT §12): the owner creates the schema and grants an application
role only what the ledger needs; under that role the ledger works (writes, reads,
projections, a rebuild, checkpoints, keys) while PostgreSQL itself refuses to change
the history: UPDATE, DELETE, TRUNCATE, ALTER TABLE, and disabling triggers."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from api.app import create_app
from ledger.adapters.api_keys import issue_key
from ledger.adapters.postgres import MIGRATIONS, SchemaBehind, datastore_of
from ledger.domain.context import acting_as
from ledger.domain.errors import ValidationFailed
from ledger.entrypoints import runtime
from ledger.entrypoints.runtime import Settings, open_ledger
from projections.schema import ensure_schema, grant_read_models
from projections.worker import ProjectionWorker
from tests import commands as c
from tests.conftest import drop_role

pytestmark = [pytest.mark.db]

HISTORY = ("ledger_events", "ledger_checkpoints", "ledger_refusals", "ledger_snapshots")


@pytest.fixture(autouse=True)
def snapshot_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fund year is snapshotted at its second event (its appropriation in `life`), so
    that the application role writes a snapshot too."""
    monkeypatch.setattr("ledger.engine.engine.SNAPSHOT_EVERY", 2)


def granted_role(db_url: str, test_settings: Settings) -> str:
    """The test database set up by its owner, who grants a new application role."""
    role = "ledger_app_" + secrets.token_hex(4)
    owner = open_ledger(db_url, test_settings)
    try:
        ensure_schema(datastore_of(owner))
        grant_read_models(datastore_of(owner), role)
    finally:
        owner.close()
    return role


@pytest.fixture
def app_url(db_url: str, test_settings: Settings) -> Iterator[str]:
    """The test database set up by its owner, and the URL of a new application role."""
    role = granted_role(db_url, test_settings)
    try:
        yield make_conninfo(db_url, user=role)
    finally:
        drop_role(db_url, role)


def as_app(app_url: str, test_settings: Settings) -> Settings:
    return replace(test_settings, database_url=app_url)


def life(ledger_url: str, settings: Settings) -> None:
    ledger = open_ledger(ledger_url, settings)
    try:
        with acting_as("admin", "req-1"):
            ledger.execute(c.OpenFundYear(2024, "CNY"))
            ledger.execute(c.Appropriate(2024, "A-1", "settling_in", "cash", Decimal(900), "r"))
        with acting_as("clerk", "req-2"):
            ledger.execute(
                c.RegisterTalent(
                    "T-1", "王芳", "master", "某院", date(2024, 1, 5), date(2027, 1, 4)
                )
            )
            ledger.execute(
                c.ProposeGrant("G-1", "T-1", 2024, "settling_in", Decimal(300), "p", "r")
            )
        with acting_as("approver", "req-3"):
            ledger.execute(c.ApproveGrant("G-1"))
        with acting_as("treasury", "req-4"):
            ledger.execute(c.RecordPayment("P-1", "G-1", Decimal(100), date(2024, 3, 1), "BR-1"))
        ledger.notary.sign()
        issue_key(ledger, "wu", ["auditor"])
        worker = ProjectionWorker(ledger)
        worker.catch_up()
        assert worker.rebuild() > 0
        assert ledger.notary.verify().ok
        assert ledger.forget_talent("T-1").position > 0
    finally:
        ledger.close()


def test_the_ledger_works_under_the_application_role(app_url: str, test_settings: Settings) -> None:
    settings = as_app(app_url, test_settings)
    life(app_url, settings)
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
    with psycopg.connect(app_url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (
            conninfo_to_dict(app_url)["user"],
        )
        assert conn.execute("SELECT count(*) FROM ledger_events").fetchone()[0] > 8  # type: ignore[index]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {t} SET {c} = {c}",
        "DELETE FROM {t}",
        "TRUNCATE {t}",
        "ALTER TABLE {t} DISABLE TRIGGER ALL",
        "ALTER TABLE {t} ADD COLUMN sneaky text",
        "DROP TABLE {t}",
        "LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE",
    ],
)
@pytest.mark.parametrize("table", HISTORY)
def test_postgresql_itself_refuses_to_change_the_history_to_the_application_role(
    app_url: str, test_settings: Settings, statement: str, table: str
) -> None:
    life(app_url, as_app(app_url, test_settings))
    column = {
        "ledger_events": "topic",
        "ledger_checkpoints": "note",
        "ledger_refusals": "code",
        "ledger_snapshots": "topic",
    }
    query = statement.format(t=table, c=column[table])
    with psycopg.connect(app_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(query)


@pytest.mark.parametrize("column", ["notification_id", "recorded_at", "hash"])
def test_the_application_role_appends_only_what_an_append_writes(app_url: str, column: str) -> None:
    """The position, the instant and the hash are the database's to set."""
    value = {"notification_id": "1", "recorded_at": "now()", "hash": "'\\x00'::bytea"}[column]
    with psycopg.connect(app_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            f"INSERT INTO ledger_events (originator_id, originator_version, topic, state, {column})"
            f" VALUES (gen_random_uuid(), 1, 't', 'x'::bytea, {value})"
        )


def test_the_application_role_cannot_bypass_the_triggers(app_url: str) -> None:
    with psycopg.connect(app_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SET session_replication_role = replica")


def test_the_application_role_cannot_stand_a_table_in_for_the_ledgers(app_url: str) -> None:
    """A temporary `ledger_events` would come first in the owner's functions' search."""
    with psycopg.connect(app_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CREATE TEMPORARY TABLE ledger_events (hash bytea)")


def test_an_upgrade_the_application_role_may_not_make_is_refused_naming_who_may(
    app_url: str, db_url: str, test_settings: Settings
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM ledger_schema WHERE name = 'refusals'")
    with pytest.raises(SchemaBehind, match="ledger db init --app-role"):
        open_ledger(app_url, as_app(app_url, test_settings))


def test_a_role_name_is_checked(db_url: str, test_settings: Settings) -> None:
    owner = open_ledger(db_url, test_settings)
    try:
        with pytest.raises(ValidationFailed, match="not a role name"):
            grant_read_models(datastore_of(owner), 'x"; DROP TABLE ledger_events; --')
    finally:
        owner.close()


def test_a_role_granted_before_the_lock_wait_migration_appends_after_it(
    app_url: str, db_url: str, test_settings: Settings
) -> None:
    """An owner's command migrates on opening; the application role granted by an
    earlier `db init` may call the new append lock without another one."""
    with psycopg.connect(db_url, autocommit=True) as conn:  # as the release before left it
        conn.execute("DROP FUNCTION ledger_lock_events_waited()")
        conn.execute("DELETE FROM ledger_schema WHERE name = 'append-lock-wait'")
    open_ledger(db_url, test_settings).close()  # the owner's command, migrating
    life(app_url, as_app(app_url, test_settings))


def test_a_role_granted_before_the_snapshots_migration_writes_snapshots_after_it(
    app_url: str, db_url: str, test_settings: Settings
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:  # as the release before left it
        conn.execute("DROP TABLE ledger_snapshots")
        conn.execute("DELETE FROM ledger_schema WHERE name = 'snapshots'")
    open_ledger(db_url, test_settings).close()  # the owner's command, migrating
    life(app_url, as_app(app_url, test_settings))
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT originator_version FROM ledger_snapshots").fetchall() == [(2,)]


def test_a_role_granted_before_the_lock_had_a_table_of_its_own_appends_after_it(
    db_url: str, test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release before locked the history itself, its chain's trigger as the owner;
    an owner's command migrates, and the role granted by the earlier `db init` appends
    under the new lock, every event chained."""
    with monkeypatch.context() as before:
        steps = [step for step in MIGRATIONS if step[0] != "append-lock-own-table"]
        before.setattr(runtime, "MIGRATIONS", steps)
        role = granted_role(db_url, test_settings)
    try:
        owner = open_ledger(db_url, test_settings)  # the owner's command, migrating
        try:
            app_url = make_conninfo(db_url, user=role)
            life(app_url, as_app(app_url, test_settings))
            result = owner.notary.verify()
        finally:
            owner.close()
        assert result.ok
        assert result.events_checked > 8
    finally:
        drop_role(db_url, role)
