"""Group commit against a second process's writes: a process's cached copies are
only a first guess, never the ground for a refusal or an unchecked answer, and a
stale guess costs a query under the append lock, not a retry."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

from ledger.adapters.postgres import AppendSession, LedgerRecorder, Reads
from ledger.domain.budget import FundYear
from ledger.domain.context import acting_as
from ledger.domain.errors import BudgetExceeded, InvalidState, TalentDeparted, ValidationFailed
from ledger.domain.runs import DisbursementRun
from ledger.engine import engine as application
from ledger.entrypoints.runtime import Settings, open_ledger
from ledger.usecases.fund_years import appropriate
from ledger.usecases.ledger import Ledger
from ledger.usecases.personal import Vault
from ledger.usecases.runs import PrepareRun, SettledItem, SettleRun
from tests import commands as c
from tests.integration.scenario import Api, expect, funded


@pytest.fixture
def grouped(db_url: str, test_settings: Settings) -> Iterator[Ledger]:
    """A second "process" on the same database, writing through group commit."""
    app = open_ledger(db_url, test_settings)
    app.start_group_commit()
    try:
        yield app
    finally:
        app.close()


def _approved_grant(ledger: Ledger) -> None:
    with acting_as("admin", "r1"):
        ledger.execute(c.OpenFundYear(2024, "CNY"))
        ledger.execute(c.Appropriate(2024, "A1", "settling_in", "cash", Decimal("1000"), "r"))
    with acting_as("clerk", "r2"):
        ledger.execute(
            c.RegisterTalent("T1", "测试", "master", "某单位", date(2024, 1, 2), date(2029, 1, 1))
        )
        ledger.execute(c.ProposeGrant("G1", "T1", 2024, "settling_in", Decimal("600"), "p", "r"))
    with acting_as("approver", "r3"):
        ledger.execute(c.ApproveGrant("G1", "ok"))


def test_a_write_that_needs_an_uncached_aggregate_succeeds(ledger: Ledger, grouped: Ledger) -> None:
    _approved_grant(ledger)
    from ledger.domain.grants import Grant

    grouped.load(Grant, "G1", "grant")  # the grant is cached, its fund year is not

    with acting_as("approver", "r4"):
        outcome = grouped.execute(c.RevokeGrant("G1", "项目终止"))

    assert outcome.value.status == "revoked"
    assert not outcome.replayed


@pytest.fixture
def events_read(monkeypatch: pytest.MonkeyPatch) -> dict[bool, list[StoredEvent]]:
    """Every event read to decide, by whether the append lock was held."""
    read: dict[bool, list[StoredEvent]] = {True: [], False: []}
    real, real_changed = Reads.events_after, Reads.changed

    def events_after(self: Reads, versions: Mapping[UUID, int]) -> list[StoredEvent]:
        found = real(self, versions)
        read[isinstance(self, AppendSession)].extend(found)
        return found

    def changed(self: Reads, versions: Mapping[UUID, int], events_up_to: int) -> Any:
        found = real_changed(self, versions, events_up_to)  # what changed comes with it
        read[isinstance(self, AppendSession)].extend(e for c in found.values() for e in c.events)
        return found

    monkeypatch.setattr(Reads, "events_after", events_after)
    monkeypatch.setattr(Reads, "changed", changed)
    return read


@pytest.fixture
def read_under_lock(events_read: dict[bool, list[StoredEvent]]) -> list[StoredEvent]:
    return events_read[True]


@pytest.fixture
def read_ahead(events_read: dict[bool, list[StoredEvent]]) -> list[StoredEvent]:
    return events_read[False]


@pytest.mark.parametrize(
    "command",
    [
        c.ProposeGrant("G2", "T1", 2024, "settling_in", Decimal("100"), "p", "r"),
        c.OpenFundYear(2024, "CNY"),  # a retry: taken for new, then found to exist
        c.ProposeGrant("G2", "T1", 2099, "settling_in", Decimal("100"), "p", "r"),
    ],
    ids=["a proposal", "a retried opening", "a year never opened"],
)
def test_a_process_reads_a_fund_year_it_never_saw_with_the_append_lock_released(
    ledger: Ledger,
    grouped: Ledger,
    read_under_lock: list[StoredEvent],
    monkeypatch: pytest.MonkeyPatch,
    command: c.ProposeGrant | c.OpenFundYear,
) -> None:
    """A process's first read of a fund year replays all its events, seconds for a
    long one, which every writer of every process would wait out under the lock. A
    refusal for a year that does not exist still stands, its absence read ahead and
    checked under the lock. (A talent or grant, whose history is short, is read under
    the lock with the version check.)"""
    _approved_grant(ledger)  # by the other process: the grouped one has seen nothing
    read_ahead = _count_calls(monkeypatch, grouped.recorder, "reads")
    with acting_as("clerk", "r4"):
        if isinstance(command, c.OpenFundYear):
            assert grouped.execute(command).replayed
        elif command.fund_year == 2024:
            assert not grouped.execute(command).replayed
        else:
            with pytest.raises(ValidationFailed, match="no fund year 2099"):
                grouped.execute(command)

    assert read_ahead["n"] == 1
    fund_year = FundYear.create_id(
        command.year if isinstance(command, c.OpenFundYear) else command.fund_year
    )
    assert [e for e in read_under_lock if e.originator_id == fund_year] == []


def test_what_changed_after_the_read_before_the_lock_is_all_that_is_read_under_it(
    ledger: Ledger,
    grouped: Ledger,
    read_under_lock: list[StoredEvent],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _approved_grant(ledger)
    recorder = grouped.recorder
    assert isinstance(recorder, LedgerRecorder)
    real_reads = recorder.reads

    @contextmanager
    def reads() -> Iterator[Reads]:
        """The real reads; once they included the fund year, the other process writes
        to it before this one takes the lock."""
        asked: list[UUID] = []
        with real_reads() as r:
            real_after = r.events_after

            def events_after(versions: Mapping[UUID, int]) -> list[StoredEvent]:
                asked.extend(versions)
                return real_after(versions)

            r.events_after = events_after  # type: ignore[method-assign]
            yield r
        if FundYear.create_id(2024) in asked:
            with acting_as("clerk", "r5"):
                ledger.execute(
                    c.ProposeGrant("G3", "T1", 2024, "settling_in", Decimal("50"), "p", "r")
                )

    monkeypatch.setattr(recorder, "reads", reads)
    with acting_as("clerk", "r4"):
        grouped.execute(c.ProposeGrant("G2", "T1", 2024, "settling_in", Decimal("100"), "p", "r"))

    # the fund year's one new event (G3's reservation), not its history again
    fund_year = FundYear.create_id(2024)
    assert [
        (e.topic, e.originator_version) for e in read_under_lock if e.originator_id == fund_year
    ] == [("ledger.domain.budget:FundYear.Reserved", 4)]
    line = ledger.load(FundYear, 2024, "fund year").lines["settling_in"]
    assert line.committed == Decimal("750")


def test_a_long_catch_up_is_read_with_the_lock_released_and_a_short_one_under_it(
    ledger: Ledger,
    grouped: Ledger,
    read_under_lock: list[StoredEvent],
    read_ahead: list[StoredEvent],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process whose copy of a fund year is far behind (the other process wrote
    much to it meanwhile) catches up before taking the lock; a few events behind, it
    catches up under the lock, in the same transaction."""
    monkeypatch.setattr(application, "CATCH_UP_UNDER_LOCK", 5)
    _approved_grant(ledger)
    fund_year = FundYear.create_id(2024)

    def propose(by: Ledger, grant_ids: list[str]) -> None:
        with acting_as("clerk", "r4"):
            by.execute_atomic(
                [
                    c.ProposeGrant(g, "T1", 2024, "settling_in", Decimal("1"), "p", "r")
                    for g in grant_ids
                ]
            )

    propose(grouped, ["W0"])  # the grouped process now holds a copy of the fund year
    propose(ledger, [f"L{i}" for i in range(8)])  # 8 events past it: a long tail
    read_under_lock.clear()
    read_ahead.clear()
    propose(grouped, ["W1"])
    assert [e for e in read_under_lock if e.originator_id == fund_year] == []
    # the tail only, from the cached copy, not the year's whole history
    assert [e.originator_version for e in read_ahead] == list(range(5, 13))

    propose(ledger, [f"M{i}" for i in range(3)])  # 3 events past it: a short tail
    read_under_lock.clear()
    propose(grouped, ["W2"])
    tail = [e.originator_version for e in read_under_lock if e.originator_id == fund_year]
    assert tail == [14, 15, 16]

    # once caught up ahead, a copy is caught up under the lock, however far behind
    # writers elsewhere left it meanwhile: nothing keeps a decision waiting
    recorder = grouped.recorder
    assert isinstance(recorder, LedgerRecorder)
    real_reads = recorder.reads

    reads_ahead = 0

    @contextmanager
    def reads() -> Iterator[Reads]:
        """After each read ahead, the other process writes 7 more (up to 3 times)."""
        nonlocal reads_ahead
        with real_reads() as r:
            yield r
        reads_ahead += 1
        if reads_ahead <= 3:
            propose(ledger, [f"P{reads_ahead}-{i}" for i in range(7)])

    propose(ledger, [f"N{i}" for i in range(8)])  # 18..25
    monkeypatch.setattr(recorder, "reads", reads)
    sessions = _count_calls(monkeypatch, recorder, "append_session")
    read_under_lock.clear()
    read_ahead.clear()
    propose(grouped, ["W3"])
    assert (reads_ahead, sessions["n"]) == (1, 2)  # the first session found it far behind
    assert [e.originator_version for e in read_ahead] == list(range(18, 26))
    tail = [e.originator_version for e in read_under_lock if e.originator_id == fund_year]
    assert tail == list(range(26, 33))  # the 7 written after the read ahead
    line = ledger.load(FundYear, 2024, "fund year").lines["settling_in"]
    assert line.committed == Decimal("630")


def test_a_repeat_answered_without_writing_is_checked_against_the_database(
    ledger: Ledger, grouped: Ledger
) -> None:
    _approved_grant(ledger)
    with acting_as("approver", "r4"):
        repeat = grouped.execute(c.ApproveGrant("G1", "ok"))
    assert repeat.replayed  # now cached as approved in the grouped process
    with acting_as("approver", "r5"):
        ledger.execute(c.RevokeGrant("G1", "项目终止"))  # by the other process

    with acting_as("approver", "r6"), pytest.raises(InvalidState):
        grouped.execute(c.ApproveGrant("G1", "ok"))


def test_the_writer_outlives_a_failure_and_answers_the_next_call(
    ledger: Ledger, grouped: Ledger, monkeypatch: pytest.MonkeyPatch
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
        grouped.execute(c.ApproveGrant("G1", "ok"))  # a replay: no write

    done = threading.Event()

    def write() -> None:
        with acting_as("approver", "r5"):
            grouped.execute(c.RevokeGrant("G1", "项目终止"))
        done.set()

    threading.Thread(target=write, daemon=True).start()
    assert done.wait(10), "the writer thread died: later writes hang"


def _count_calls(monkeypatch: pytest.MonkeyPatch, obj: object, name: str) -> dict[str, int]:
    calls = {"n": 0}
    real = getattr(obj, name)

    def counted(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, counted)
    return calls


def test_a_stale_copy_is_brought_up_to_date_under_the_lock_in_one_transaction(
    ledger: Ledger, grouped: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    _approved_grant(ledger)  # 600 of the line's 1000 committed
    with acting_as("clerk", "r4"):
        grouped.execute(
            c.ProposeGrant("G2", "T1", 2024, "settling_in", Decimal("100"), "p", "r")
        )  # the grouped process now holds a copy of the fund year: 700 committed
        ledger.execute(
            c.ProposeGrant("G3", "T1", 2024, "settling_in", Decimal("200"), "p", "r")
        )  # by the other process: 900 committed, the grouped copy is stale
    sessions = _count_calls(monkeypatch, grouped.recorder, "append_session")
    checked = _count_calls(monkeypatch, grouped.recorder, "append_checked")
    reads = _count_calls(monkeypatch, grouped.recorder, "select_events")

    with acting_as("clerk", "r5"), pytest.raises(BudgetExceeded):
        grouped.execute(
            c.ProposeGrant("G4", "T1", 2024, "settling_in", Decimal("150"), "p", "r")
        )  # fits the stale copy's 300, not the 100 really left
    with acting_as("clerk", "r6"):
        fits = grouped.execute(
            c.ProposeGrant("G5", "T1", 2024, "settling_in", Decimal("100"), "p", "r")
        )

    assert not fits.replayed
    # G4, decided on the stale copy, was found so as it was recorded (nothing was);
    # then each decision took one transaction: the change was read under the lock and
    # the command decided again there, not refused and retried; no aggregate was loaded
    # one query at a time
    assert (checked["n"], sessions["n"]) == (1, 2)
    assert reads["n"] == 0
    line = ledger.load(FundYear, 2024, "fund year").lines["settling_in"]
    assert line.committed == Decimal("1000")


def test_an_atomic_run_of_new_ids_reads_no_aggregate_one_at_a_time(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    _approved_grant(ledger)
    reads = _count_calls(monkeypatch, ledger.recorder, "select_events")
    sessions = _count_calls(monkeypatch, ledger.recorder, "append_session")
    checked = _count_calls(monkeypatch, ledger.recorder, "append_checked")
    proposals = [
        c.ProposeGrant(f"N{i}", "T1", 2024, "settling_in", Decimal("1"), "p", "r")
        for i in range(50)
    ]

    with acting_as("clerk", "r4"):
        outcomes = ledger.execute_atomic(proposals)

    assert [o.value.grant_id for o in outcomes] == [p.grant_id for p in proposals]
    assert len({o.position for o in outcomes}) == 1
    # the 50 new ids are checked missing in the one statement that records them
    assert reads["n"] == 0
    assert (sessions["n"], checked["n"]) == (0, 1)


def test_an_answer_is_presented_after_its_decision_never_in_the_writer(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A talent's answer reveals its name, a query of the key store: it happens after the
    decision, in a worker thread, never in the group-commit writer (which every other
    write waits for) nor with the append lock held."""
    sessions = threading.local()
    real_session = LedgerRecorder.append_session

    @contextmanager
    def append_session(self: LedgerRecorder) -> Iterator[AppendSession]:
        sessions.open = True
        try:
            with real_session(self) as session:
                yield session
        finally:
            sessions.open = False

    revealed: list[tuple[str, bool]] = []
    real_wrapped_key = Vault.wrapped_key

    def wrapped_key(self: Vault, talent_id: str) -> bytes | None:
        revealed.append((threading.current_thread().name, getattr(sessions, "open", False)))
        return real_wrapped_key(self, talent_id)

    monkeypatch.setattr(LedgerRecorder, "append_session", append_session)
    monkeypatch.setattr(Vault, "wrapped_key", wrapped_key)
    a = funded(api)
    answer = expect(
        a.clerk.post(
            "/v1/talents/T-1/departure", json={"departed_on": "2024-06-30", "reason": "辞职"}
        ),
        200,
    )
    assert answer["name"] is not None and answer["status"] == "departed"
    assert revealed and all(
        thread != "group-commit" and not locked for thread, locked in revealed
    ), revealed


RUN_ITEMS = application.READ_AHEAD_AT + 20


def _run_prepared(ledger: Ledger) -> tuple[str, ...]:
    """RUN_ITEMS approved grants, one instalment each, in a run prepared by `ledger`:
    the payment ids it holds."""
    with acting_as("admin", "r1"):
        ledger.execute(c.OpenFundYear(2024, "CNY"))
        ledger.execute(c.Appropriate(2024, "A1", "rent_subsidy", "cash", Decimal(10**9), "r"))
    talents = [f"T{n}" for n in range(RUN_ITEMS)]
    with acting_as("clerk", "r2"):
        ledger.execute_atomic(
            [
                c.RegisterTalent(
                    t, "测试", "master", "某单位", date(2024, 1, 2), date(2029, 1, 1), "62220001"
                )
                for t in talents
            ]
        )
        ledger.execute_atomic(
            [
                c.ProposeGrant(f"G{t}", t, 2024, "rent_subsidy", Decimal(100), "p", "r")
                for t in talents
            ]
        )
    with acting_as("approver", "r3"):
        ledger.execute_atomic([c.ApproveGrant(f"G{t}") for t in talents])
    request = PrepareRun("R1", date(2030, 1, 1), date(2030, 1, 1))
    with acting_as("treasury", "r4"):
        run = ledger.prepare_run(request, lambda _: [f"G{t}" for t in talents]).value
    return tuple(item.payment_id for item in run.items)


def _settle(ledger: Ledger, payment_ids: tuple[str, ...], request_id: str) -> Any:
    settled = tuple(SettledItem(p, f"BK-{p}") for p in payment_ids)
    with acting_as("treasury", request_id):
        return ledger.execute(SettleRun("R1", settled))


def _reads_of(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, int]]:
    """Each `events_after`: whether it held the lock, and for how many aggregates."""
    reads: list[tuple[bool, int]] = []
    real = Reads.events_after

    def counted(self: Reads, versions: Mapping[UUID, int]) -> list[StoredEvent]:
        reads.append((isinstance(self, AppendSession), len(versions)))
        return real(self, versions)

    monkeypatch.setattr(Reads, "events_after", counted)
    return reads


def test_settling_a_run_in_the_process_that_prepared_it_reads_nothing_ahead(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, count_events: Any
) -> None:
    """The payments and bank references it creates are checked absent under the lock
    with the versions it read, not read ahead first."""
    payment_ids = _run_prepared(ledger)
    before = count_events()
    reads = _reads_of(monkeypatch)
    _settle(ledger, payment_ids, "r5")
    assert reads == []
    assert count_events() == before + 4 * RUN_ITEMS + 1


def test_settling_in_another_process_reads_its_grants_and_talents_ahead_at_once(
    ledger: Ledger, grouped: Ledger, monkeypatch: pytest.MonkeyPatch, count_events: Any
) -> None:
    payment_ids = _run_prepared(ledger)
    before = count_events()
    reads = _reads_of(monkeypatch)
    _settle(grouped, payment_ids, "r5")
    assert reads == [(False, 2 * RUN_ITEMS)]  # its grants and talents, not what it creates
    assert count_events() == before + 4 * RUN_ITEMS + 1
    del reads[:]

    replayed = _settle(ledger, payment_ids, "r6")  # its copies of the grants are stale
    assert replayed.replayed
    assert count_events() == before + 4 * RUN_ITEMS + 1
    assert all(locked for locked, _ in reads)  # what changed, read under the lock


def test_an_answer_alone_is_the_decision_even_if_a_load_fast_forwards_the_cache(
    ledger: Ledger, grouped: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the decision leaves becomes the cached copy, which a load (another thread)
    may bring up to date in place: the answer was copied before, and does not move."""
    with acting_as("admin", "r1"):
        ledger.execute(c.OpenFundYear(2024, "CNY"))
    remember = application.Engine._remember

    def remember_then_a_load_elsewhere(engine: application.Engine, uow: Any) -> None:
        remember(engine, uow)
        if engine is ledger:
            with acting_as("admin", "r-other"):  # another process writes to the year
                grouped.execute(c.Appropriate(2024, "B1", "settling_in", "cash", Decimal(7), "r"))
            ledger.load(FundYear, 2024, "fund year")  # fast-forwards this process's copy

    def appropriate_a1(uow: Any, _: object) -> FundYear:
        appropriate.decide(uow, c.Appropriate(2024, "A1", "settling_in", "cash", Decimal(1), "r"))
        return uow.get(FundYear, 2024, "fund year")

    monkeypatch.setattr(application.Engine, "_remember", remember_then_a_load_elsewhere)
    with acting_as("admin", "r2"):
        answer = ledger.run(appropriate_a1, None).value
    assert (answer.version, sorted(answer.appropriations)) == (2, ["A1"])


def test_a_settlement_refused_in_another_process_reads_what_it_created_ahead(
    ledger: Ledger, grouped: Ledger, monkeypatch: pytest.MonkeyPatch, count_events: Any
) -> None:
    """Refused at its last item, it took the payments and bank references of all the
    items before to be missing: they are read with the lock released, not under it."""
    payment_ids = _run_prepared(ledger)
    last = ledger.load(DisbursementRun, "R1", "run").items[-1]
    with acting_as("clerk", "r-depart"):
        ledger.execute(c.DepartTalent(last.talent_id, date(2024, 6, 1), "moved"))
    before = count_events()
    reads = _reads_of(monkeypatch)
    with pytest.raises(TalentDeparted):
        _settle(grouped, payment_ids, "r5")
    assert count_events() == before
    created = 2 * (RUN_ITEMS - 1) + 1  # and the refused item's payment, looked up
    assert reads == [(False, 2 * RUN_ITEMS), (False, created)]
