"""Snapshots of long histories (`ledger.engine.engine.SNAPSHOT_EVERY`): a fund year is
snapshotted with the events that take it past each multiple, and a process with no
copy of it decides from the latest snapshot and the events after it, as it would from
the whole history."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from ledger.domain.budget import Appropriation, FundYear, LineKind
from ledger.domain.context import acting_as
from ledger.domain.errors import BudgetExceeded
from ledger.entrypoints.runtime import Settings, open_ledger, open_memory_ledger
from ledger.usecases.ledger import Ledger
from tests import commands as c

pytestmark = [pytest.mark.db]

EVERY = 10
YEAR = 2024
FUND_YEAR = FundYear.create_id(YEAR)


@pytest.fixture(autouse=True)
def snapshot_every_ten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ledger.engine.engine.SNAPSHOT_EVERY", EVERY)


def a_year(ledger: Ledger, grants: int, budget: Decimal = Decimal(1000)) -> None:
    """A fund year (opened, appropriated: versions 1 and 2) and `grants` grants of 1
    yuan each, one command apiece: version 2 + grants."""
    with acting_as("admin", "req-year"):
        ledger.execute(c.OpenFundYear(YEAR, "CNY"))
        ledger.execute(c.Appropriate(YEAR, "A-1", "settling_in", "cash", budget, "r"))
    with acting_as("clerk", "req-talent"):
        ledger.execute(
            c.RegisterTalent("T-1", "王芳", "master", "某院", date(2024, 1, 5), date(2027, 1, 4))
        )
    for n in range(grants):
        propose(ledger, n)


def propose(ledger: Ledger, n: int, amount: Decimal = Decimal(1)) -> None:
    with acting_as("clerk", f"req-{n}"):
        ledger.execute(c.ProposeGrant(f"G-{n}", "T-1", YEAR, "settling_in", amount, "p", "r"))


def snapshot_versions(db_url: str) -> list[int]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT originator_version FROM ledger_snapshots WHERE originator_id = %s "
            "ORDER BY originator_version",
            (FUND_YEAR,),
        ).fetchall()
    return [version for (version,) in rows]


@pytest.fixture
def cold(db_url: str, test_settings: Settings) -> Iterator[Callable[[], tuple[Ledger, list[int]]]]:
    """A new process's ledger (no copy of anything), and the versions of the fund
    year's events it decodes (snapshots apart)."""
    opened: list[Ledger] = []

    def open_cold() -> tuple[Ledger, list[int]]:
        ledger = open_ledger(db_url, test_settings)
        opened.append(ledger)
        decoded: list[int] = []
        to_domain_event = ledger.mapper.to_domain_event

        def counting(stored: StoredEvent) -> Any:
            if stored.originator_id == FUND_YEAR and "Snapshot" not in stored.topic:
                decoded.append(stored.originator_version)
            return to_domain_event(stored)

        ledger.mapper.to_domain_event = counting  # type: ignore[method-assign]
        return ledger, decoded

    yield open_cold
    for ledger in opened:
        ledger.close()


def test_a_fund_year_is_snapshotted_each_time_it_passes_a_multiple(
    ledger: Ledger, db_url: str
) -> None:
    a_year(ledger, 25)  # versions 3..27
    assert snapshot_versions(db_url) == [10, 20]
    steps = [
        ledger.step(c.ProposeGrant(f"B-{n}", "T-1", YEAR, "settling_in", Decimal(1), "p", "r"))
        for n in range(5)
    ]
    with acting_as("clerk", "req-atomic"):
        ledger.run_atomic(steps)  # 28..32: past 30 in one transaction, one snapshot
    assert snapshot_versions(db_url) == [10, 20, 32]


def test_a_process_without_a_copy_decides_from_the_latest_snapshot(
    ledger: Ledger, db_url: str, cold: Callable[[], tuple[Ledger, list[int]]]
) -> None:
    a_year(ledger, 25, budget=Decimal(30))  # 27 events, 25 yuan committed
    fresh, decoded = cold()
    propose(fresh, 100, Decimal(5))  # exactly what is left
    assert decoded == list(range(21, 28))  # the snapshot at 20, then only what followed
    with pytest.raises(BudgetExceeded):  # and the budget it holds is the whole year's
        propose(fresh, 101, Decimal("0.01"))

    from_snapshot = fresh.cached_copy(FUND_YEAR)
    assert from_snapshot is not None
    # at a version, the repository reads every event (no cache, no snapshot store)
    replayed = fresh.repository.get(FUND_YEAR, version=from_snapshot.version)
    assert isinstance(replayed, FundYear) and replayed is not from_snapshot
    assert vars(from_snapshot) == vars(replayed)
    assert replayed.lines["settling_in"].committed == Decimal(30)
    (line,) = from_snapshot.lines.values()
    assert type(line.kind) is LineKind and type(line.committed) is Decimal
    assert all(type(a) is Appropriation for a in from_snapshot.appropriations.values())


def test_a_copy_far_behind_catches_up_from_a_newer_snapshot(
    ledger: Ledger, db_url: str, cold: Callable[[], tuple[Ledger, list[int]]], monkeypatch: Any
) -> None:
    a_year(ledger, 3)  # versions 3..5
    fresh, decoded = cold()
    propose(fresh, 100)  # version 6: its copy at 6
    decoded.clear()
    for n in range(20):  # versions 7..26, written by the other process
        propose(ledger, 200 + n)
    monkeypatch.setattr("ledger.engine.engine.CATCH_UP_UNDER_LOCK", 5)
    propose(fresh, 101)  # 20 behind: read with the lock released, from the snapshot at 20
    assert decoded == list(range(21, 27))


def test_a_ledger_in_memory_snapshots_as_on_postgresql() -> None:
    ledger = open_memory_ledger()
    a_year(ledger, 9)  # version 11
    assert ledger.snapshots is not None
    assert [s.originator_version for s in ledger.snapshots.get(FUND_YEAR)] == [10]
