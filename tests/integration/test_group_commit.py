"""Group commit against a second process's writes: a process's cached copies are
only a first guess, never the ground for a refusal or an unchecked answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest

from ledger import commands as c
from ledger.application import LedgerApplication
from ledger.context import acting_as
from ledger.errors import InvalidState
from ledger.runtime import Settings, open_ledger


@pytest.fixture
def grouped(db_url: str, test_settings: Settings) -> Iterator[LedgerApplication]:
    """A second "process" on the same database, writing through group commit."""
    app = open_ledger(db_url, test_settings)
    app.start_group_commit()
    try:
        yield app
    finally:
        app.close()


def _approved_grant(ledger: LedgerApplication) -> None:
    with acting_as("admin", "r1"):
        ledger.open_fund_year(c.OpenFundYear(2024, "CNY"))
        ledger.appropriate(c.Appropriate(2024, "A1", "settling_in", "cash", Decimal("1000"), "r"))
    with acting_as("clerk", "r2"):
        ledger.register_talent(
            c.RegisterTalent("T1", "测试", "master", "某单位", date(2024, 1, 2), date(2029, 1, 1))
        )
        ledger.propose_grant(
            c.ProposeGrant("G1", "T1", 2024, "settling_in", Decimal("600"), "p", "r")
        )
    with acting_as("approver", "r3"):
        ledger.approve_grant(c.ApproveGrant("G1", "ok"), "approver")


def test_a_write_that_needs_an_uncached_aggregate_succeeds(
    ledger: LedgerApplication, grouped: LedgerApplication
) -> None:
    _approved_grant(ledger)
    from ledger.domain import Grant

    grouped.load(Grant, "G1", "grant")  # the grant is cached, its fund year is not

    with acting_as("approver", "r4"):
        outcome = grouped.revoke_grant(c.RevokeGrant("G1", "项目终止"))

    assert outcome.value.status == "revoked"
    assert not outcome.replayed


def test_a_repeat_answered_without_writing_is_checked_against_the_database(
    ledger: LedgerApplication, grouped: LedgerApplication
) -> None:
    _approved_grant(ledger)
    with acting_as("approver", "r4"):
        repeat = grouped.approve_grant(c.ApproveGrant("G1", "ok"), "approver")
    assert repeat.replayed  # now cached as approved in the grouped process
    with acting_as("approver", "r5"):
        ledger.revoke_grant(c.RevokeGrant("G1", "项目终止"))  # by the other process

    with acting_as("approver", "r6"), pytest.raises(InvalidState):
        grouped.approve_grant(c.ApproveGrant("G1", "ok"), "approver")


def test_the_writer_outlives_a_failure_and_answers_the_next_call(
    ledger: LedgerApplication, grouped: LedgerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    _approved_grant(ledger)
    real = grouped.recorder.max_notification_id
    calls = {"n": 0}

    def flaky() -> int | None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("database gone for a moment")
        return real()

    monkeypatch.setattr(grouped.recorder, "max_notification_id", flaky)
    with acting_as("approver", "r4"), pytest.raises(ConnectionError):
        grouped.approve_grant(c.ApproveGrant("G1", "ok"), "approver")  # a replay: no write

    done = threading.Event()

    def write() -> None:
        with acting_as("approver", "r5"):
            grouped.revoke_grant(c.RevokeGrant("G1", "项目终止"))
        done.set()

    threading.Thread(target=write, daemon=True).start()
    assert done.wait(10), "the writer thread died: later writes hang"
