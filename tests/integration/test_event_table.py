"""The event table itself refuses to change or lose a row (docs/design.md, "Integrity"):
not the application's good manners, the database's."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from ledger.usecases.ledger import Ledger
from tests import commands as c

REFUSED = [
    "UPDATE ledger_events SET topic = 'x'",
    "UPDATE ledger_events SET state = '\\x00'::bytea WHERE notification_id = 1",
    "UPDATE ledger_events SET originator_version = originator_version + 1",
    "DELETE FROM ledger_events",
    "DELETE FROM ledger_events WHERE notification_id = 1",
    "TRUNCATE ledger_events",
]


def _rows(db_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT * FROM ledger_events ORDER BY notification_id").fetchall()


@pytest.fixture
def one_event(ledger: Ledger, db_url: str) -> list[tuple[Any, ...]]:
    """One event written through the application; the stored rows."""
    outcome = ledger.execute(c.OpenFundYear(2024, "CNY"))
    assert outcome.position == 1
    rows = _rows(db_url)
    assert len(rows) == 1
    return rows


def test_the_event_table_refuses_update_delete_and_truncate(
    ledger: Ledger,
    db_url: str,
    one_event: list[tuple[Any, ...]],
    subtests: pytest.Subtests,
) -> None:
    for statement in REFUSED:
        with subtests.test(statement), psycopg.connect(db_url) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="immutable"):
                conn.execute(statement)
            conn.rollback()
        assert _rows(db_url) == one_event
    with subtests.test("in autocommit mode, on one connection that stays usable"):
        with psycopg.connect(db_url, autocommit=True) as conn:
            for statement in REFUSED:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
            assert conn.execute("SELECT count(*) FROM ledger_events").fetchone() == (1,)
        assert _rows(db_url) == one_event
    with subtests.test("the ledger still appends after refused changes"):
        outcome = ledger.execute(c.OpenFundYear(2025, "CNY"))
        assert outcome.position == 2
        rows = _rows(db_url)
        assert rows[:1] == one_event
        assert len(rows) == 2


def test_an_event_written_over_http_is_protected_too(api: Any, db_url: str) -> None:
    response = api("admin").post("/v1/fund-years", json={"year": 2024, "currency": "CNY"})
    assert response.status_code == 201
    before = _rows(db_url)
    with psycopg.connect(db_url) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE ledger_events SET topic = 'x'")
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM ledger_events")
    assert _rows(db_url) == before
