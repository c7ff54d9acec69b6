"""An append session (`LedgerRecorder.append_session`) begins and commits its own
transaction inside a pipeline: whatever fails in it (a lock that times out, a
decision that raises) records nothing and leaves no transaction open on a pooled
connection, so the next write goes through."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

import psycopg
import pytest
from eventsourcing.persistence import PersistenceError

from ledger.domain.context import acting_as
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
