"""An append session (`LedgerRecorder.append_session`) begins and commits its own
transaction inside a pipeline: whatever fails in it (a lock that times out, a
decision that raises) records nothing and leaves no transaction open on a pooled
connection, so the next write goes through. So too the one statement that records a
decision on current copies (`LedgerRecorder.append_checked`): the first two tests
run both ways, the session forced by taking every copy for stale."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import PersistenceError

from ledger.adapters.postgres import APPEND_LOCK_TABLE, AppendSession
from ledger.domain.budget import FundYear
from ledger.domain.context import acting_as
from ledger.domain.errors import InvalidState, NotFound
from ledger.domain.talents import Talent
from ledger.engine import engine
from ledger.engine.engine import AtomicRefusal, Engine
from ledger.engine.unit_of_work import UnitOfWork
from ledger.entrypoints.runtime import Settings, open_ledger
from ledger.usecases.fund_years import appropriate
from ledger.usecases.ledger import Ledger
from tests import commands as c

pytestmark = [pytest.mark.db]


@pytest.fixture(params=["one statement", "a session"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """How a decision on this process's copies is recorded: by the one statement, or,
    every copy taken for stale, in an append session under the lock."""
    if request.param == "a session":
        monkeypatch.setattr(Engine, "_record_checked", lambda *args: None)


def open_year(ledger: Ledger, year: int) -> None:
    with acting_as("admin", f"req-{year}"):
        ledger.execute(c.OpenFundYear(year, "CNY"))


@pytest.mark.usefixtures("way")
def test_a_lock_that_times_out_records_nothing_and_the_next_write_goes_through(
    db_url: str, test_settings: Settings, count_events: Callable[[], int]
) -> None:
    ledger = open_ledger(db_url, replace(test_settings, lock_timeout_seconds=1))
    try:
        open_year(ledger, 2024)
        held, release = threading.Event(), threading.Event()

        def hold_the_lock() -> None:
            with psycopg.connect(db_url) as conn, conn.transaction():
                conn.execute(f"LOCK TABLE {APPEND_LOCK_TABLE} IN EXCLUSIVE MODE")
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


@pytest.mark.usefixtures("way")
def test_a_vacuum_of_the_history_holds_up_no_append(
    db_url: str, test_settings: Settings, count_events: Callable[[], int]
) -> None:
    """VACUUM and ANALYZE, autovacuum's included, hold the event table in `SHARE UPDATE
    EXCLUSIVE` mode meanwhile: appends go on, far within the lock's timeout."""
    ledger = open_ledger(db_url, replace(test_settings, lock_timeout_seconds=1))
    try:
        open_year(ledger, 2024)
        with psycopg.connect(db_url) as vacuum, vacuum.transaction():
            vacuum.execute("LOCK TABLE ledger_events IN SHARE UPDATE EXCLUSIVE MODE")
            started = time.monotonic()
            open_year(ledger, 2025)
            assert time.monotonic() - started < 0.5
        assert count_events() == 2
    finally:
        ledger.close()


@pytest.mark.usefixtures("way")
def test_a_decision_that_raises_in_the_session_records_nothing(
    ledger: Ledger, count_events: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    open_year(ledger, 2024)
    with acting_as("admin", "req-a"):
        ledger.execute(c.Appropriate(2024, "A", "settling_in", "cash", Decimal(100), "r"))

    def raises(*args: object) -> list[object]:
        raise RuntimeError("a bug, after the decision, before its events are recorded")

    with monkeypatch.context() as patched:
        patched.setattr(Engine, "snapshots_due", raises)
        with pytest.raises(RuntimeError, match="a bug"):
            open_year(ledger, 2025)
    assert count_events() == 2
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
        if len(encoded) == 2:  # sent, the server may yet be busy with the one before
            deadline = time.monotonic() + 5
            with psycopg.connect(db_url, autocommit=True) as conn:
                while time.monotonic() < deadline and not any(
                    q.startswith("INSERT INTO") for q in sent_before_the_second
                ):
                    sent_before_the_second[:] = [
                        q
                        for (q,) in conn.execute(
                            "SELECT query FROM pg_stat_activity WHERE datname = "
                            "current_database() AND state IN ('active', 'idle in transaction')"
                        )
                    ]
                    time.sleep(0.01)
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


# --- a big decision's events sent while it is still deciding (`_SentAhead`) -------------


def appropriations(year: int, prefix: str, count: int) -> list[tuple[Any, Any]]:
    return [
        (appropriate.decide, c.Appropriate(year, f"{prefix}{n}", "settling_in", "cash", D1, "r"))
        for n in range(count)
    ]


D1 = Decimal(1)


def lock_held(db_url: str) -> bool:
    """Whether a session holds the append lock."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_class t ON t.oid = l.relation "
            "WHERE t.relname = %s AND l.mode = 'ExclusiveLock' AND l.granted",
            (APPEND_LOCK_TABLE,),
        ).fetchone()
    return row is not None and row[0] == 1


def test_a_big_decision_is_sent_while_it_is_still_deciding(
    ledger: Ledger, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `_SentAhead.every` aggregates handed out, the events so far go to the
    server, behind the append lock: it is held before the decision ends."""
    monkeypatch.setattr(engine._SentAhead, "every", 3)
    open_year(ledger, 2024)
    locked: list[bool] = []

    def observe(uow: UnitOfWork, _: object) -> None:
        locked.append(lock_held(db_url))

    with acting_as("admin", "req-many"):
        outcomes = ledger.run_atomic([*appropriations(2024, "A", 12), (observe, None)])
    assert locked == [True]
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT notification_id, originator_version FROM ledger_events ORDER BY 1"
        ).fetchall()
    assert [v for _, v in rows] == list(range(1, 14))  # opened, then 12 appropriations
    assert {o.position for o in outcomes} == {rows[-1][0]}


def test_a_big_decision_goes_on_while_the_server_takes_its_statements(
    ledger: Ledger, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement is sent by a thread of its own: a server slow to take it (one
    larger than the socket's buffer waits until the server has inserted the one
    before) does not hold the decision up. Here the first append waits until the
    decision has ended: taken on the decision's thread, it would wait in vain."""
    monkeypatch.setattr(engine._SentAhead, "every", 3)
    open_year(ledger, 2024)
    decided = threading.Event()
    ended_before_the_first_append: list[bool] = []
    append = AppendSession.append

    def slow_append(session: AppendSession, stored: Any) -> None:
        if not ended_before_the_first_append:
            ended_before_the_first_append.append(decided.wait(5))
        append(session, stored)

    monkeypatch.setattr(AppendSession, "append", slow_append)

    def last_step(uow: UnitOfWork, _: object) -> None:
        decided.set()

    with acting_as("admin", "req-many"):
        outcomes = ledger.run_atomic([*appropriations(2024, "A", 12), (last_step, None)])
    assert ended_before_the_first_append == [True]
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT notification_id FROM ledger_events ORDER BY 1").fetchall()
    assert len(rows) == 13  # opened, then 12 appropriations, sent ahead and committed
    assert {o.position for o in outcomes} == {rows[-1][0]}


def test_a_big_decision_on_a_copy_overtaken_is_rolled_back_and_taken_again(
    ledger: Ledger, db_url: str, test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last check, sent when the decision ends (here after the last events went
    ahead), finds a version no longer current: nothing sent is recorded, and the
    decision is taken again on what is current."""
    monkeypatch.setattr(engine._SentAhead, "every", 3)
    open_year(ledger, 2024)
    open_year(ledger, 2025)
    with acting_as("admin", "req-a"):
        ledger.execute(c.Appropriate(2024, "A", "settling_in", "cash", D1, "r"))
    other = open_ledger(db_url, test_settings)  # another process
    try:
        with acting_as("admin", "req-b"):
            other.execute(c.Appropriate(2024, "B", "settling_in", "cash", D1, "r"))
    finally:
        other.close()

    def read_2025(uow: UnitOfWork, _: object) -> None:  # the 3rd handed out: all sent
        uow.get(FundYear, 2025, "fund year")

    def count_2024(uow: UnitOfWork, _: object) -> int:  # read after, and not written
        return len(uow.get(FundYear, 2024, "fund year").appropriations)

    steps = [*appropriations(2025, "C", 2), (read_2025, None), (count_2024, None)]
    with acting_as("admin", "req-many"):
        outcomes = ledger.run_atomic(steps)
    assert outcomes[-1].value == 2, "decided on the copy this process had"
    assert len(ledger.load(FundYear, 2025, "fund year").appropriations) == 2


def test_a_big_decision_refused_after_it_was_sent_records_nothing(
    ledger: Ledger, count_events: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine._SentAhead, "every", 3)
    open_year(ledger, 2024)
    steps = [*appropriations(2024, "A", 12), *appropriations(2099, "X", 1)]
    with acting_as("admin", "req-refused"), pytest.raises(AtomicRefusal) as refused:
        ledger.run_atomic(steps)
    assert refused.value.index == 12
    assert count_events() == 1
    open_year(ledger, 2025)  # the lock was released, and no transaction left open
    assert count_events() == 2


def test_a_command_refused_in_a_group_sent_ahead_leaves_no_trace(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command of a group registered a talent, whose event went ahead, then was
    refused: its creation is forgotten, so the session is rolled back and the group
    recorded without it."""
    monkeypatch.setattr(engine._SentAhead, "every", 3)
    open_year(ledger, 2024)
    ledger.start_group_commit()
    gate = threading.Event()

    def held(uow: UnitOfWork, _: object) -> None:
        assert gate.wait(10)

    def many(uow: UnitOfWork, _: object) -> None:
        for decide, command in appropriations(2024, "A", 5):
            decide(uow, command)

    register, talent = ledger.step(
        c.RegisterTalent("T1", "测试", "master", "某单位", date(2024, 1, 2), date(2029, 1, 1))
    )

    def registers_then_refuses(uow: UnitOfWork, _: object) -> None:
        register(uow, talent)  # the 6th aggregate handed out: its event is sent
        raise InvalidState("refused once it had registered the talent")

    with acting_as("admin", "req-group"):
        first = ledger.run_later(held, None)
        big = ledger.run_later(many, None)
        refused = ledger.run_later(registers_then_refuses, None)
    gate.set()
    first.result(10)
    big.result(10)
    with pytest.raises(InvalidState):
        refused.result(10)
    assert len(ledger.load(FundYear, 2024, "fund year").appropriations) == 5
    with pytest.raises(NotFound):
        ledger.load(Talent, "T1", "talent")


def test_a_big_decision_that_meets_a_fund_year_never_seen_lets_the_lock_go_at_once(
    ledger: Ledger, db_url: str, test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A year never seen is read with the lock released before the decision is taken
    again, so the lock its events took ahead is let go at once, not when it ends;
    the decision taken again sends its events ahead in turn."""
    monkeypatch.setattr(engine._SentAhead, "every", 3)
    open_year(ledger, 2024)
    other = open_ledger(db_url, test_settings)  # another process opens 2026
    try:
        open_year(other, 2026)
    finally:
        other.close()
    locked: list[bool] = []

    def sees_2026(uow: UnitOfWork, _: object) -> bool:
        return uow.find(FundYear, 2026) is not None

    def observe(uow: UnitOfWork, _: object) -> None:
        locked.append(lock_held(db_url))

    steps = [
        *appropriations(2024, "A", 4),  # the 3rd handed out sends the first two
        (sees_2026, None),
        *appropriations(2024, "B", 3),  # the 6th: a year never seen, so it gives up
        (observe, None),
    ]
    with acting_as("admin", "req-many"):
        outcomes = ledger.run_atomic(steps)
    # the first decision let it go; the second, on 2026 read ahead, sent its own ahead
    assert locked == [False, True]
    assert outcomes[4].value is True
    assert len(ledger.load(FundYear, 2024, "fund year").appropriations) == 7
