"""An append session (`LedgerRecorder.append_session`) begins and commits its own
transaction inside a pipeline: whatever fails in it (a lock that times out, a
decision that raises) records nothing and leaves no transaction open on a pooled
connection, so the next write goes through."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import PersistenceError

from ledger.domain.context import acting_as
from ledger.engine import engine
from ledger.engine.engine import Engine
from ledger.entrypoints.runtime import Settings, open_ledger
from ledger.usecases.ledger import Ledger
from tests import commands as c

pytestmark = [pytest.mark.db]


def open_year(ledger: Ledger, year: int) -> None:
    with acting_as("admin", f"req-{year}"):
        ledger.execute(c.OpenFundYear(year, "CNY"))


def test_a_lock_that_times_out_records_nothing_and_the_next_write_goes_through(
    db_url: str, test_settings: Settings, count_events: Callable[[], int]
) -> None:
    ledger = open_ledger(db_url, replace(test_settings, lock_timeout_seconds=1))
    try:
        open_year(ledger, 2024)
        held, release = threading.Event(), threading.Event()

        def hold_the_lock() -> None:
            with psycopg.connect(db_url) as conn, conn.transaction():
                conn.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold_the_lock)
        holder.start()
        held.wait(10)
        try:
            with pytest.raises(PersistenceError, match="lock"):
                open_year(ledger, 2025)
        finally:
            release.set()
            holder.join()
        assert count_events() == 1
        open_year(ledger, 2025)  # on the same pool: no transaction was left open
        assert count_events() == 2
    finally:
        ledger.close()


def test_a_decision_that_raises_in_the_session_records_nothing(
    ledger: Ledger, count_events: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    open_year(ledger, 2024)
    with acting_as("admin", "req-a"):
        ledger.execute(c.Appropriate(2024, "A", "settling_in", "cash", Decimal(100), "r"))

    def raises(*args: object) -> list[object]:
        raise RuntimeError("a bug, after the decision, inside the session")

    monkeypatch.setattr(Engine, "snapshots_due", raises)
    with pytest.raises(RuntimeError, match="a bug"):
        open_year(ledger, 2025)
    assert count_events() == 2
    monkeypatch.undo()
    open_year(ledger, 2025)
    assert count_events() == 3


def test_a_large_decision_goes_a_chunk_at_a_time_and_is_recorded_whole(
    ledger: Ledger, db_url: str, count_events: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server has the first chunk before the second is encoded; a failure while
    encoding a later chunk records none of them, and the next write goes through."""
    monkeypatch.setattr(engine, "APPEND_CHUNK", 2)
    open_year(ledger, 2024)
    encode = ledger.mapper.to_stored_event
    encoded: list[object] = []
    sent_before_the_second: list[str] = []

    def encoding(event: Any) -> Any:
        if len(encoded) == 2:
            with psycopg.connect(db_url) as conn:
                sent_before_the_second.extend(
                    q
                    for (q,) in conn.execute(
                        "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                        "AND state IN ('active', 'idle in transaction')"
                    )
                )
        encoded.append(event)
        return encode(event)

    monkeypatch.setattr(ledger.mapper, "to_stored_event", encoding)
    appropriations = [
        c.Appropriate(2024, f"A{n}", "settling_in", "cash", Decimal(100 + n), "r") for n in range(5)
    ]
    with acting_as("admin", "req-five"):
        outcomes = ledger.execute_atomic(appropriations)
    assert len(encoded) == 5
    assert any(q.startswith("INSERT INTO") for q in sent_before_the_second)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT notification_id, originator_version FROM ledger_events ORDER BY 1"
        ).fetchall()
    assert [v for _, v in rows] == list(range(1, 7))  # the year's 6 events, in order
    assert {o.position for o in outcomes} == {rows[-1][0]}

    def fails_on_the_fourth(event: Any) -> Any:
        if len(encoded) == 8:
            raise RuntimeError("a bug while encoding the second chunk")
        return encoding(event)

    monkeypatch.setattr(ledger.mapper, "to_stored_event", fails_on_the_fourth)
    more = [c.Appropriate(2024, f"B{n}", "settling_in", "cash", Decimal(1), "r") for n in range(5)]
    with acting_as("admin", "req-more"), pytest.raises(RuntimeError, match="second chunk"):
        ledger.execute_atomic(more)
    assert count_events() == 6
    monkeypatch.setattr(ledger.mapper, "to_stored_event", encode)
    with acting_as("admin", "req-more-again"):
        ledger.execute_atomic(more)
    assert count_events() == 11
