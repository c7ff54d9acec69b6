"""Instalment plans: an amount split to the fen with the remainder on the last, due
month by month, and net payments filling them earliest first."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.domain.context import acting_as
from ledger.domain.errors import ValidationFailed
from ledger.domain.grants import Grant
from ledger.domain.instalments import InstalmentPlan, instalment_status, schedule
from ledger.domain.money import ZERO

D = Decimal
amounts = st.integers(min_value=1, max_value=99_999_999_999_999).map(lambda f: D(f) / 100)
plans = st.builds(
    InstalmentPlan,
    count=st.integers(1, 120),
    first_due_on=st.dates(date(2000, 1, 1), date(2090, 12, 31)),
    interval_months=st.integers(1, 12),
)


def test_the_last_instalment_takes_the_remainder() -> None:
    plan = InstalmentPlan(3, date(2024, 1, 31), 1)
    assert plan.split(D("1000.00")) == [D("333.33"), D("333.33"), D("333.34")]
    assert plan.due_dates() == [date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31)]
    quarterly = InstalmentPlan(4, date(2024, 11, 30), 3)
    assert quarterly.due_dates()[-1] == date(2025, 8, 30)


@given(amounts, plans)
def test_a_split_adds_up_to_the_fen_and_no_part_is_nothing(
    amount: Decimal, plan: InstalmentPlan
) -> None:
    try:
        parts = plan.split(amount)
    except ValidationFailed:
        assert amount < D("0.01") * plan.count
        return
    assert sum(parts) == amount
    assert len(parts) == plan.count
    assert all(p.as_tuple().exponent >= -2 and p >= D("0.01") for p in parts)
    assert len(set(parts[:-1])) <= 1 and parts[-1] >= parts[0]
    assert parts[-1] - parts[0] < D("0.01") * plan.count


@given(amounts, plans, st.integers(min_value=0, max_value=100))
def test_net_payments_fill_the_earliest_instalments_first(
    amount: Decimal, plan: InstalmentPlan, percent: int
) -> None:
    if amount < D("0.01") * plan.count:
        return
    net_paid = (amount * percent / 100).quantize(D("0.01"))
    instalments = schedule(amount, plan, None, net_paid)
    assert sum(i.paid for i in instalments) == net_paid
    unpaid = [i.unpaid > ZERO for i in instalments]
    assert unpaid == sorted(unpaid)  # paid ones first, then the rest
    assert sum(1 for i in instalments if ZERO < i.paid < i.amount) <= 1
    dates = [i.due_on for i in instalments]
    assert dates == sorted(dates)


@pytest.mark.parametrize(
    ("grant_status", "paid", "status"),
    [
        ("proposed", "0", "scheduled"),
        ("approved", "0", "unpaid"),
        ("approved", "1", "partially_paid"),
        ("approved", "5", "paid"),
        ("revoked", "1", "cancelled"),
        ("revoked", "5", "paid"),
        ("rejected", "0", "cancelled"),
    ],
)
def test_an_instalment_status_follows_its_grant(grant_status: str, paid: str, status: str) -> None:
    (instalment,) = schedule(D("5"), None, date(2024, 1, 1), D(paid))
    assert instalment_status(grant_status, instalment) == status


def test_without_a_plan_the_one_instalment_is_due_on_approval() -> None:
    assert schedule(D("800"), None, None, ZERO)[0].due_on is None
    assert schedule(D("800"), None, date(2024, 5, 6), ZERO)[0].due_on == date(2024, 5, 6)


@st.composite
def _treasury_days(draw: st.DrawFn) -> list[tuple[str, int]]:
    """What treasury does to one grant, in any order: runs prepared by a due date
    (month 1..12), items settled or rejected in any order, payments outside the runs."""
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(["run", "settle", "reject", "pay"]),
                st.integers(0, 11),
            ),
            max_size=40,
        )
    )


@given(_treasury_days())
def test_runs_holds_and_payments_never_pay_a_grant_more_than_its_amount(
    days: list[tuple[str, int]],
) -> None:
    """Whatever treasury does, in whatever order the bank answers, net payments and
    the money runs hold never exceed the grant, nor what is due by a run's date."""
    plan = InstalmentPlan(12, date(2024, 1, 31), 1)
    with acting_as("clerk", "p"):
        grant = Grant(
            "G-1", "T-1", 2024, "rent_subsidy", D("1000.00"), "p", "r", "fp", plan.as_event()
        )
    with acting_as("approver", "a"):
        grant.approve(None, date(2024, 1, 2))
    pending: list[tuple[str, int, Decimal]] = []  # items held: run, instalment, amount
    with acting_as("treasury", "t"):
        for n, (action, k) in enumerate(days):
            if action == "run":
                due_on = plan.due_dates()[k]
                free = grant.payable_instalments(due_on)
                if free:
                    taken = sum(i.unpaid for i in free)
                    due = sum(i.amount for i in grant.instalments if i.due_on <= due_on)
                    # a run never takes more than is due by its date and not yet paid
                    assert taken <= due - grant.net_paid
                    grant.hold(f"R{n}", free)
                    pending += [(f"R{n}", i.number, i.unpaid) for i in free]
            elif action in ("settle", "reject") and pending:
                run_id, number, amount = pending.pop(k % len(pending))
                grant.release(run_id, number, amount)
                if action == "settle":
                    grant.pay(f"P{n}", amount, date(2024, 12, 31), f"B{n}", "fp")
            elif action == "pay" and grant.payable > ZERO:
                amount = min(grant.payable, D("100.00"))
                grant.pay(f"P{n}", amount, date(2024, 12, 31), f"B{n}", "fp")
            assert grant.net_paid + grant.on_hold <= grant.amount
            assert grant.payable >= ZERO
    assert grant.on_hold == sum((a for _, _, a in pending), ZERO)
