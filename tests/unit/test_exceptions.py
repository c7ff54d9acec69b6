"""The red flags of docs/api.md, "Exceptions", judged from plain facts: each rule seen firing and
not firing, and the pro-rata clawback arithmetic checked against an independent
computation (month stepping and exact fractions)."""

from __future__ import annotations

import calendar
import math
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ledger.domain.audit_exceptions import (
    ClawbackFacts,
    Facts,
    GrantFacts,
    PaymentFacts,
    StatementFacts,
    TalentFacts,
    UnmatchedLine,
    find_exceptions,
    pro_rata_clawback,
    whole_months,
)

TODAY = date(2025, 6, 30)
D = Decimal


def talent(
    talent_id: str = "T-1",
    arrived_on: date = date(2024, 1, 5),
    until: date = date(2029, 1, 4),
    departed_on: date | None = date(2025, 7, 4),
) -> TalentFacts:
    return TalentFacts(talent_id, arrived_on, until, departed_on)


def grant(
    grant_id: str = "G-1",
    talent_id: str = "T-1",
    amount: str = "60000",
    net_paid: str = "60000",
    clawed_back: str = "0",
    status: str = "approved",
    approved_on: date | None = date(2024, 2, 1),
    fund_year: int = 2024,
    programme: str = "settling_in",
) -> GrantFacts:
    return GrantFacts(
        grant_id,
        talent_id,
        fund_year,
        programme,
        D(amount),
        status,
        approved_on,
        D(net_paid),
        D(clawed_back),
    )


def paid(
    payment_id: str,
    value_date: date,
    amount: str = "5000",
    talent_id: str = "T-1",
    programme: str = "settling_in",
    fund_year: int = 2024,
    returned: bool = False,
) -> PaymentFacts:
    return PaymentFacts(
        payment_id, talent_id, fund_year, programme, D(amount), value_date, returned
    )


def clawback(
    assessed_on: date, amount: str = "12000", recovered: str = "0", clawback_id: str = "C-1"
) -> ClawbackFacts:
    return ClawbackFacts(clawback_id, "G-1", "T-1", 2024, D(amount), D(recovered), assessed_on)


def flags(facts: Facts, code: str, today: date = TODAY) -> list[dict[str, Any]]:
    found = find_exceptions(facts, today)
    for flag in found:
        assert isinstance(flag["detail"], str)
        assert flag["detail"]
    return [f for f in found if f["code"] == code]


# --- departed before the commitment end, paid, no clawback ---------------------------


def test_a_departure_before_the_commitment_end_with_net_paid_and_no_clawback_fires() -> None:
    [flag] = flags(Facts([talent()], [grant()]), "departed_without_clawback")

    assert flag["talent_id"] == "T-1"
    assert flag["grant_id"] == "G-1"
    assert flag["fund_year"] == 2024
    assert flag["programme"] == "settling_in"
    # 18 of 60 months served: 60000 - 60000 * 18/60 = 42000
    assert flag["proposed_clawback"] == "42000.00"
    assert flag["inputs"] == {
        "net_paid": "60000.00",
        "amount": "60000.00",
        "arrived_on": "2024-01-05",
        "departed_on": "2025-07-04",
        "service_commitment_until": "2029-01-04",
        "months_served": 18,
        "commitment_months": 60,
    }


def test_the_proposed_clawback_keeps_what_was_earned_of_a_part_paid_grant() -> None:
    facts = Facts([talent()], [grant(amount="60000", net_paid="20000")])
    [flag] = flags(facts, "departed_without_clawback")
    # 18/60 of 60000 = 18000 was earned; 20000 was paid
    assert flag["proposed_clawback"] == "2000.00"
    assert flag["inputs"]["net_paid"] == "20000.00"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"clawed_back": "1"}, "a clawback is assessed"),
        ({"net_paid": "0"}, "nothing was net paid"),
    ],
)
def test_no_departure_flag_when_a_clawback_exists_or_nothing_was_paid(
    change: dict[str, str], why: str
) -> None:
    assert flags(Facts([talent()], [grant(**change)]), "departed_without_clawback") == [], why


@pytest.mark.parametrize(
    "departed_on",
    [None, date(2029, 1, 4), date(2029, 1, 5), date(2030, 6, 1)],
    ids=["not departed", "on the commitment end", "the day after", "years after"],
)
def test_no_departure_flag_unless_the_talent_left_before_the_commitment_end(
    departed_on: date | None,
) -> None:
    facts = Facts([talent(departed_on=departed_on)], [grant()])
    assert flags(facts, "departed_without_clawback") == []


def test_the_day_before_the_commitment_end_still_fires() -> None:
    facts = Facts([talent(departed_on=date(2029, 1, 3))], [grant(amount="60000")])
    [flag] = flags(facts, "departed_without_clawback")
    assert flag["inputs"]["months_served"] == 59
    assert flag["proposed_clawback"] == "1000.00"


def test_each_unclawed_grant_of_a_departed_talent_is_flagged_on_its_own() -> None:
    facts = Facts(
        [talent()],
        [grant("G-1"), grant("G-2", clawed_back="100"), grant("G-3", programme="rent_subsidy")],
    )
    found = flags(facts, "departed_without_clawback")
    assert sorted(f["grant_id"] for f in found) == ["G-1", "G-3"]


# --- clawbacks not recovered after 90 days -----------------------------------------


def test_a_clawback_not_fully_recovered_after_90_days_is_overdue() -> None:
    assessed = date(2025, 1, 10)
    facts = Facts(clawbacks=[clawback(assessed, "12000", "11999.99")])

    assert flags(facts, "clawback_overdue", assessed + timedelta(90)) == []
    [flag] = flags(facts, "clawback_overdue", assessed + timedelta(91))
    assert flag["clawback_id"] == "C-1"
    assert flag["grant_id"] == "G-1"
    assert flag["talent_id"] == "T-1"
    assert flag["fund_year"] == 2024
    assert "0.01" in flag["detail"]


def test_a_fully_recovered_clawback_is_never_overdue() -> None:
    facts = Facts(clawbacks=[clawback(date(2024, 1, 10), "12000", "12000")])
    assert flags(facts, "clawback_overdue", date(2026, 1, 1)) == []


# --- suspected duplicate payments -----------------------------------------------------


def test_two_payments_of_one_amount_to_one_talent_line_within_7_days_are_suspected() -> None:
    facts = Facts(payments=[paid("P-1", date(2024, 3, 1)), paid("P-2", date(2024, 3, 8))])
    [flag] = flags(facts, "duplicate_payment_suspected")
    assert flag["payment_ids"] == ["P-1", "P-2"]
    assert flag["talent_id"] == "T-1"
    assert flag["fund_year"] == 2024
    assert flag["programme"] == "settling_in"


def test_payments_on_the_same_day_in_any_order_are_suspected() -> None:
    facts = Facts(payments=[paid("P-2", date(2024, 3, 1)), paid("P-1", date(2024, 3, 1))])
    [flag] = flags(facts, "duplicate_payment_suspected")
    assert sorted(flag["payment_ids"]) == ["P-1", "P-2"]


@pytest.mark.parametrize(
    "second",
    [
        paid("P-2", date(2024, 3, 9)),
        paid("P-2", date(2024, 3, 2), amount="5000.01"),
        paid("P-2", date(2024, 3, 2), talent_id="T-2"),
        paid("P-2", date(2024, 3, 2), programme="rent_subsidy"),
        paid("P-2", date(2024, 3, 2), fund_year=2025),
    ],
    ids=["8 days apart", "another amount", "another talent", "another line", "another year"],
)
def test_no_duplicate_suspected_for_other_amounts_talents_lines_or_8_days(
    second: PaymentFacts,
) -> None:
    facts = Facts(payments=[paid("P-1", date(2024, 3, 1)), second])
    assert flags(facts, "duplicate_payment_suspected") == []


def test_a_returned_payment_and_its_repayment_are_not_suspected() -> None:
    facts = Facts(
        payments=[paid("P-1", date(2024, 3, 1), returned=True), paid("P-2", date(2024, 3, 3))]
    )
    assert flags(facts, "duplicate_payment_suspected") == []


# --- approved grants left unpaid ------------------------------------------------------


def test_an_approved_grant_unpaid_more_than_180_days_is_flagged() -> None:
    approved = date(2024, 2, 1)
    facts = Facts(grants=[grant(net_paid="0", approved_on=approved)])

    assert flags(facts, "approved_unpaid", approved + timedelta(180)) == []
    [flag] = flags(facts, "approved_unpaid", approved + timedelta(181))
    assert (flag["grant_id"], flag["talent_id"], flag["fund_year"], flag["programme"]) == (
        "G-1",
        "T-1",
        2024,
        "settling_in",
    )


@pytest.mark.parametrize(
    "change",
    [{"net_paid": "0.01"}, {"status": "proposed", "approved_on": None}, {"status": "rejected"}],
    ids=["paid", "never approved", "rejected"],
)
def test_a_paid_or_unapproved_grant_is_not_flagged_unpaid(change: dict[str, Any]) -> None:
    facts = Facts(grants=[grant(**{"net_paid": "0", **change})])
    assert flags(facts, "approved_unpaid", date(2030, 1, 1)) == []


# --- unmatched statement lines --------------------------------------------------------


def test_each_unmatched_statement_line_is_flagged() -> None:
    unmatched = [
        UnmatchedLine("R-1", "unknown_in_ledger", "BR-X", D("9.00"), date(2024, 3, 1)),
        UnmatchedLine("R-1", "amount_mismatch", "BR-3", D("2100.00"), date(2024, 3, 10)),
    ]
    found = flags(Facts(unmatched=unmatched), "reconciliation_unmatched")
    assert [(f["reconciliation_id"], f["bank_reference"], f["bucket"]) for f in found] == [
        ("R-1", "BR-X", "unknown_in_ledger"),
        ("R-1", "BR-3", "amount_mismatch"),
    ]
    assert flags(Facts(), "reconciliation_unmatched") == []


def statement_of(
    rid: str, opening: str, closing: str, closing_on: date, position: int, account: str = "A-1"
) -> StatementFacts:
    return StatementFacts(rid, account, D(opening), D(closing), closing_on, position)


def test_a_statement_not_opening_where_the_previous_closed_is_a_discontinuity() -> None:
    statements = [
        statement_of("R-feb", "900.00", "1000.00", date(2024, 2, 29), 10),
        statement_of("R-apr", "1200.00", "1300.00", date(2024, 4, 30), 30),  # March's: 1100
        statement_of("R-mar", "1000.00", "1100.00", date(2024, 3, 31), 40),  # imported late
    ]

    found = flags(Facts(statements=statements), "statement_discontinuity")

    assert [(f["reconciliation_id"], f["previous_reconciliation_id"]) for f in found] == [
        ("R-apr", "R-mar")
    ]
    assert found[0]["account"] == "A-1"
    assert "opens at 1200.00" in found[0]["detail"]
    assert "closed at 1100.00 on 2024-03-31" in found[0]["detail"]


def test_statements_that_carry_on_the_first_one_and_other_accounts_are_not_flagged() -> None:
    statements = [
        statement_of("R-mar", "1000.00", "1100.00", date(2024, 3, 31), 10),
        statement_of("R-apr", "1100.00", "-50.00", date(2024, 4, 30), 20),
        statement_of("R-may", "-50.00", "70.00", date(2024, 5, 31), 30),
        statement_of("R-other", "5.00", "6.00", date(2024, 4, 30), 40, account="A-2"),
    ]
    assert flags(Facts(statements=statements), "statement_discontinuity") == []


def test_of_two_statements_closing_on_one_day_the_later_import_is_the_previous() -> None:
    statements = [
        statement_of("R-mar", "1000.00", "1100.00", date(2024, 3, 31), 10),
        statement_of("R-mar-again", "1000.00", "1150.00", date(2024, 3, 31), 20),
        statement_of("R-apr", "1100.00", "1200.00", date(2024, 4, 30), 30),
    ]
    found = flags(Facts(statements=statements), "statement_discontinuity")
    assert [(f["reconciliation_id"], f["previous_reconciliation_id"]) for f in found] == [
        ("R-apr", "R-mar-again")
    ], "two of one day: neither is the other's previous"


def test_the_codes_are_stable_and_a_clean_ledger_has_no_flags() -> None:
    everything = Facts(
        talents=[talent()],
        grants=[grant(), grant("G-2", net_paid="0")],
        payments=[paid("P-1", date(2024, 3, 1)), paid("P-2", date(2024, 3, 2))],
        clawbacks=[clawback(date(2024, 1, 1))],
        unmatched=[UnmatchedLine("R-1", "unknown_in_ledger", "BR-X", D("1"), date(2024, 3, 1))],
        statements=[
            statement_of("R-1", "1.00", "2.00", date(2024, 3, 31), 1),
            statement_of("R-2", "3.00", "4.00", date(2024, 4, 30), 2),
        ],
    )
    codes = {f["code"] for f in find_exceptions(everything, TODAY)}
    assert codes == {
        "departed_without_clawback",
        "clawback_overdue",
        "duplicate_payment_suspected",
        "approved_unpaid",
        "reconciliation_unmatched",
        "statement_discontinuity",
    }
    clean = Facts(
        talents=[replace(talent(), departed_on=None)],
        grants=[grant()],
        payments=[paid("P-1", date(2024, 3, 1))],
        clawbacks=[clawback(date(2024, 1, 1), recovered="12000")],
    )
    assert find_exceptions(clean, TODAY) == []


# --- the arithmetic, against an independent computation -------------------------------


def anniversary(start: date, months: int) -> date:
    """`start`'s day of the month, `months` later; in a month that has no such day (the
    31st in April), its last day, as a service contract reads "one month later"."""
    year, month = divmod(start.month - 1 + months, 12)
    year, month = start.year + year, month + 1
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(start.day, last))


def months_by_stepping(start: date, last_day: date) -> int:
    """Step month by month from `start` while a whole month fits through `last_day`."""
    months = 0
    while anniversary(start, months + 1) <= last_day + timedelta(days=1):
        months += 1
    return months


def owed_exactly(net_paid: Decimal, amount: Decimal, served: int, committed: int) -> Decimal:
    owed = Fraction(net_paid) - Fraction(amount) * served / committed
    if owed <= 0:
        return Decimal("0.00")
    fen = math.floor(owed * 100 + Fraction(1, 2))  # half-up, owed being positive
    return Decimal(fen).scaleb(-2)


@pytest.mark.parametrize(
    ("start", "last_day", "months"),
    [
        (date(2024, 1, 5), date(2029, 1, 4), 60),
        (date(2024, 1, 5), date(2025, 7, 4), 18),
        (date(2024, 1, 5), date(2025, 7, 3), 17),
        (date(2024, 1, 5), date(2024, 2, 3), 0),
        (date(2024, 1, 5), date(2024, 2, 4), 1),
        (date(2024, 1, 1), date(2024, 12, 31), 12),
        (date(2024, 1, 5), date(2024, 1, 5), 0),
        (date(2024, 1, 5), date(2024, 1, 1), 0),
    ],
)
def test_whole_months_examples(start: date, last_day: date, months: int) -> None:
    assert whole_months(start, last_day) == months
    assert months_by_stepping(start, last_day) == months


@given(
    start=st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31)),
    span=st.integers(min_value=-40, max_value=40 * 366),
)
@example(start=date(2024, 1, 31), span=29)  # through 2024-02-29
@example(start=date(2024, 1, 31), span=28)  # through 2024-02-28
@example(start=date(2024, 2, 29), span=365)  # through 2025-02-28
@example(start=date(2023, 3, 31), span=30)  # through 2023-04-30
def test_whole_months_counts_what_stepping_month_by_month_counts(start: date, span: int) -> None:
    last_day = start + timedelta(days=span)
    assert whole_months(start, last_day) == months_by_stepping(start, last_day)


@given(
    start=st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31)).filter(
        lambda d: d.day <= 28
    ),
    months=st.integers(min_value=0, max_value=600),
)
def test_n_months_from_arrival_through_the_day_before_the_nth_anniversary_is_n(
    start: date, months: int
) -> None:
    last_day = anniversary(start, months) - timedelta(days=1)
    assert whole_months(start, last_day) == months
    assert whole_months(start, last_day - timedelta(days=1)) == max(months - 1, 0)


@pytest.mark.parametrize(
    ("net_paid", "amount", "served", "committed", "owed"),
    [
        ("20000", "30000", 16, 60, "12000.00"),
        ("60000", "60000", 18, 60, "42000.00"),
        ("0.01", "0.01", 1, 2, "0.01"),  # 0.005: half-up, not half-even
        ("0.05", "0.05", 1, 2, "0.03"),  # 0.025
        ("100", "100", 1, 3, "66.67"),  # 66.666...
        ("100", "100", 2, 3, "33.33"),  # 33.333...
        ("1000", "100000", 30, 60, "0.00"),  # earned more than was paid
        ("100", "100", 60, 60, "0.00"),
    ],
)
def test_pro_rata_clawback_examples(
    net_paid: str, amount: str, served: int, committed: int, owed: str
) -> None:
    got = pro_rata_clawback(D(net_paid), D(amount), served, committed)
    assert str(got) == owed


fen = st.integers(min_value=1, max_value=99_999_999_999_999).map(lambda f: Decimal(f).scaleb(-2))


@given(
    net_paid=fen,
    amount=fen,
    committed=st.integers(min_value=1, max_value=1200),
    served=st.integers(min_value=0, max_value=1300),
)
@example(net_paid=D("0.01"), amount=D("0.01"), committed=2, served=1)
@example(net_paid=D("999999999999.99"), amount=D("999999999999.99"), committed=1199, served=1)
def test_pro_rata_clawback_is_exact_and_rounded_half_up_to_the_fen(
    net_paid: Decimal, amount: Decimal, committed: int, served: int
) -> None:
    got = pro_rata_clawback(net_paid, amount, served, committed)
    assert got == owed_exactly(net_paid, amount, served, committed)
    assert got.as_tuple().exponent == -2
    assert not got.is_signed()


@given(
    arrived_on=st.dates(min_value=date(2000, 1, 1), max_value=date(2040, 12, 31)),
    committed_days=st.integers(min_value=400, max_value=10 * 366),
    served_fraction=st.fractions(min_value=0, max_value=1),
    amount=fen,
    paid_fraction=st.fractions(min_value=Fraction(1, 1000), max_value=1),
)
def test_the_flag_proposes_the_pro_rata_clawback_of_its_inputs(
    arrived_on: date,
    committed_days: int,
    served_fraction: Fraction,
    amount: Decimal,
    paid_fraction: Fraction,
) -> None:
    until = arrived_on + timedelta(days=committed_days)
    departed = arrived_on + timedelta(days=math.floor(served_fraction * (committed_days - 1)))
    net_paid = max(Decimal("0.01"), (amount * Decimal(float(paid_fraction))).quantize(D("0.01")))
    facts = Facts(
        [talent(arrived_on=arrived_on, until=until, departed_on=departed)],
        [grant(amount=str(amount), net_paid=str(net_paid))],
    )

    [flag] = flags(facts, "departed_without_clawback")

    served = months_by_stepping(arrived_on, departed)
    committed = months_by_stepping(arrived_on, until)
    assert flag["inputs"]["months_served"] == served
    assert flag["inputs"]["commitment_months"] == committed
    assert flag["proposed_clawback"] == str(owed_exactly(net_paid, amount, served, committed))
