"""What the engine leaves behind a decision, on the in-memory store: a refusal frees
its unit of work at once (no cycle for the garbage collector), and an answer is a copy
that nothing later sees changed."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from ledger.adapters.memory import MemoryAppendSession
from ledger.domain.budget import FundYear
from ledger.domain.context import acting_as
from ledger.domain.errors import InvalidState
from ledger.engine import engine
from ledger.engine.engine import AtomicRefusal
from ledger.engine.unit_of_work import UnitOfWork
from ledger.entrypoints.runtime import open_memory_ledger
from ledger.usecases.fund_years import appropriate
from ledger.usecases.ledger import Ledger
from tests import commands as c


@pytest.fixture(params=["alone", "grouped"])
def ledger(request: pytest.FixtureRequest) -> Iterator[Ledger]:
    app = open_memory_ledger()
    if request.param == "grouped":
        app.start_group_commit()
    try:
        with acting_as("admin", "req-open"):
            app.execute(c.OpenFundYear(2024, "CNY"))
        yield app
    finally:
        app.close()


@pytest.fixture
def no_collector() -> Iterator[None]:
    """Only reference counting frees anything meanwhile."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


RUNS: dict[str, Callable[[Ledger, Callable[[UnitOfWork, Any], Any]], Any]] = {
    "run": lambda ledger, decide: ledger.run(decide, None),
    "atomic": lambda ledger, decide: ledger.run_atomic([(decide, None)]),
}


def _refuse_plainly() -> None:
    raise InvalidState("refused after reading the fund year")


def _refuse_while_handling() -> None:
    """The error it is raised while handling has frames of its own, which hold the unit."""
    try:
        {}["missing"]
    except KeyError:
        raise InvalidState("refused while handling a KeyError") from None


REFUSALS = {"plainly": _refuse_plainly, "while handling another error": _refuse_while_handling}


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
@pytest.mark.parametrize("how", sorted(RUNS))
@pytest.mark.usefixtures("no_collector")
def test_a_refused_unit_of_work_is_freed_without_the_garbage_collector(
    ledger: Ledger, how: str, refusal: str
) -> None:
    units: list[weakref.ref[UnitOfWork]] = []

    def refuse(uow: UnitOfWork, _: object) -> None:
        units.append(weakref.ref(uow))
        uow.get(FundYear, 2024, "fund year")
        REFUSALS[refusal]()

    with acting_as("admin", "req-refused"), pytest.raises(Exception, match="refused"):
        RUNS[how](ledger, refuse)
    assert units, "the decision ran"
    assert all(u() is None for u in units), "a refused unit of work outlived its refusal"


@pytest.mark.usefixtures("no_collector")
def test_a_group_whose_refused_command_changed_shared_aggregates_frees_its_units() -> None:
    """The group is decided again a command at a time; none of its units outlives it."""
    app = open_memory_ledger()
    app.start_group_commit()
    try:
        with acting_as("admin", "req-open"):
            app.execute(c.OpenFundYear(2024, "CNY"))
        units: list[weakref.ref[UnitOfWork]] = []
        go = threading.Event()

        def hold_the_writer(uow: UnitOfWork, _: object) -> None:
            go.wait(5)

        def appropriate_then(refuse: bool) -> Callable[[UnitOfWork, Any], Any]:
            def decide(uow: UnitOfWork, command: Any) -> Any:
                units.append(weakref.ref(uow))
                done = appropriate.decide(uow, command)
                if refuse:  # after changing the fund year the group shares
                    raise InvalidState("refused after changing the fund year")
                return done

            return decide

        with acting_as("admin", "req-group"):
            held = app.run_later(hold_the_writer, None)
            fine = app.run_later(appropriate_then(False), c.Appropriate(2024, "A1", *LINE))
            leaks = app.run_later(appropriate_then(True), c.Appropriate(2024, "A2", *LINE))
            go.set()
            held.result(5)
            fine.result(5)
            with pytest.raises(InvalidState):
                leaks.result(5)
            del held, fine, leaks
        assert len(units) >= 3, "the group, then each command alone"
        assert all(u() is None for u in units), "a unit outlived its group"
    finally:
        app.close()


LINE = ("settling_in", "cash", Decimal(1), "r")


def test_an_answer_is_a_copy_that_no_later_decision_sees_changed(ledger: Ledger) -> None:
    def fund_year(uow: UnitOfWork, _: object) -> FundYear:
        return uow.get(FundYear, 2024, "fund year")

    with acting_as("admin", "req-a"):
        answered = ledger.run(fund_year, None).value
        answered.currency = "changed by whoever was answered"
        assert ledger.run(fund_year, None).value.currency == "CNY"


def test_changed_since_answers_what_events_since_would(ledger: Ledger) -> None:
    """`changed_since` (whether a command added an event, which the engine asks of
    every command) says what `events_since` would, from every mark, as aggregates are
    read, read again, changed and changed again."""
    seen: list[list[tuple[bool, bool]]] = []

    def steps(uow: UnitOfWork, _: object) -> None:
        marks = [uow.mark()]
        uow.get(FundYear, 2024, "fund year")  # read, unchanged
        marks.append(uow.mark())
        appropriate.decide(uow, c.Appropriate(2024, "A-1", *LINE))  # changed
        marks.append(uow.mark())
        uow.get(FundYear, 2024, "fund year")  # read again
        marks.append(uow.mark())
        appropriate.decide(uow, c.Appropriate(2024, "A-2", *LINE))  # changed again
        marks.append(uow.mark())
        uow.get(FundYear, 2024, "fund year")  # read once more, unchanged since
        seen.append([(uow.changed_since(m), bool(uow.events_since(m))) for m in marks])

    with acting_as("admin", "req-changes"):
        ledger.run(steps, None)
    assert seen[-1] == [(True, True)] * 4 + [(False, False)]


def test_a_group_is_answered_before_the_writer_keeps_its_copies() -> None:
    """A settlement's group hands the cache some 50,000 aggregates: its callers are
    answered first. Here keeping them waits until the answer has come."""
    app = open_memory_ledger()
    app.start_group_commit()
    answered = threading.Event()
    remember = app._remember

    def after_the_answer(uow: UnitOfWork) -> None:
        assert answered.wait(5), "the caller was not answered before the copies were kept"
        remember(uow)

    app._remember = after_the_answer  # type: ignore[method-assign]
    try:
        with acting_as("admin", "req-open"):
            opened = app.run_later(*app.step(c.OpenFundYear(2024, "CNY")))
        assert opened.result(5).position > 0
        answered.set()
        with acting_as("admin", "req-appropriate"):
            app.execute(c.Appropriate(2024, "A-1", *LINE))  # after the copies were kept
        assert app.has_copy(FundYear.create_id(2024))
    finally:
        app.close()


def test_a_big_decision_sent_ahead_in_memory_is_recorded_whole_or_not_at_all(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The in-memory store holds its lock from the first events sent ahead, checks as it
    is asked, and inserts at the end: all of a decision's events, or none of them."""
    monkeypatch.setattr(engine._SentAhead, "every", 3)
    checks: list[int] = []
    check = MemoryAppendSession.changed_later

    def counted(session: MemoryAppendSession, versions: Any, up_to: int) -> Any:
        checks.append(len(versions))
        return check(session, versions, up_to)

    monkeypatch.setattr(MemoryAppendSession, "changed_later", counted)
    steps = [(appropriate.decide, c.Appropriate(2024, f"A{n}", *LINE)) for n in range(9)]
    with acting_as("admin", "req-many"):
        ledger.run_atomic(steps)
    year = ledger.repository.get(FundYear.create_id(2024))
    assert len(year.appropriations) == 9 and year.version == 10
    assert checks == [1], "the year's version, checked as its first events went ahead"
    refused = [*steps[:5], (appropriate.decide, c.Appropriate(2099, "X", *LINE))]
    with acting_as("admin", "req-refused"), pytest.raises(AtomicRefusal):
        ledger.run_atomic(
            [(d, replace(cmd, appropriation_id=f"B-{cmd.appropriation_id}")) for d, cmd in refused]
        )
    assert ledger.repository.get(FundYear.create_id(2024)).version == 10
