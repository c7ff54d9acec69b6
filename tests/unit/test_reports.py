"""The rules of the fund-year reports (`ledger.domain.reports`), without a database."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.domain.budget import LineKind
from ledger.domain.reports import (
    Flows,
    Line,
    Unbalanced,
    Waiver,
    YearEndLine,
    elapsed_share,
    execution,
    share_text,
    year_end,
)

D = Decimal


@pytest.mark.parametrize(
    ("share", "text"),
    [
        (Fraction(1, 3), "0.3333"),
        (Fraction(2, 3), "0.6667"),
        (Fraction(125, 100_000), "0.0012"),  # a half: to the even 2, not up to 3
        (Fraction(135, 100_000), "0.0014"),  # a half: to the even 4
        (Fraction(-125, 100_000), "-0.0012"),
        (Fraction(-21, 1000), "-0.0210"),
        (Fraction(-1, 1_000_000), "0.0000"),  # no negative zero
        (Fraction(1), "1.0000"),
        (Fraction(5), "5.0000"),
        (Fraction(0), "0.0000"),
    ],
)
def test_a_share_is_written_with_four_decimals_rounded_half_to_even(
    share: Fraction, text: str
) -> None:
    assert share_text(share) == text


@given(st.fractions(min_value=-10, max_value=10, max_denominator=10**9))
def test_share_text_is_the_exact_value_rounded_half_even(share: Fraction) -> None:
    with localcontext(prec=60):
        exact = Decimal(share.numerator) / Decimal(share.denominator)
        rounded = exact.quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN)
    text = share_text(share)
    assert Decimal(text) == rounded
    assert text == (f"{rounded:.4f}" if rounded else "0.0000")


@pytest.mark.parametrize(
    ("year", "on", "share"),
    [
        (2024, date(2023, 12, 31), Fraction(0)),
        (2024, date(2024, 1, 1), Fraction(1, 366)),  # the day itself counts
        (2024, date(2024, 12, 31), Fraction(1)),
        (2025, date(2025, 12, 31), Fraction(1)),
        (2025, date(2025, 7, 2), Fraction(183, 365)),
        (2024, date(2030, 1, 1), Fraction(1)),
    ],
)
def test_the_elapsed_share_counts_days_up_to_and_including_the_day(
    year: int, on: date, share: Fraction
) -> None:
    assert elapsed_share(year, on) == share


def test_a_waiver_counts_each_month_from_its_first_day() -> None:
    waiver = Waiver("housing", date(2024, 2, 15), 3, D("2500.00"))
    line = Line("housing", LineKind.IN_KIND, D("60000.00"), D("7500.00"))
    flows = Flows({}, {})

    def counted(on: date) -> list[Decimal]:
        (report_line,) = execution(2024, on, [line], flows, [waiver])["lines"]
        return [m["in_kind_value"] for m in report_line["months"]]

    # February counts from 1 February, though the waiver starts on the 15th
    assert counted(date(2024, 1, 31)) == [D(0)] * 12
    assert counted(date(2024, 2, 1))[:3] == [D(0), D("2500.00"), D(0)]
    assert sum(counted(date(2024, 12, 31))) == D("7500.00")
    assert counted(date(2024, 12, 31))[4:] == [D(0)] * 8


def test_nothing_appropriated_is_a_rate_of_zero() -> None:
    line = Line("settling_in", LineKind.CASH, D("0.00"), D("0.00"))
    report = execution(2024, date(2024, 6, 30), [line], Flows({}, {}), [])
    assert report["totals"]["execution_rate"] == "0.0000"
    assert report["totals"]["lag"] == share_text(elapsed_share(2024, date(2024, 6, 30)))


def test_flows_outside_the_year_count_in_the_line_not_in_a_month() -> None:
    line = Line("settling_in", LineKind.CASH, D("1000.00"), D("1000.00"))
    paid = {"settling_in": {date(2024, 3, 1): D("400.00"), date(2025, 1, 1): D("100.00")}}
    returned = {"settling_in": {date(2025, 2, 1): D("50.00")}}
    report = execution(2024, date(2025, 3, 1), [line], Flows(paid, returned), [])
    (out,) = report["lines"]
    assert out["net_paid"] == D("450.00")
    assert out["outside_year"] == {"paid": D("100.00"), "returned": D("50.00"), "net_paid": D(50)}
    assert sum(m["net_paid"] for m in out["months"]) == D("400.00")
    assert report["totals"]["outside_year"] == out["outside_year"]


def _line(**amounts: str) -> YearEndLine:
    base = {
        "appropriated": "100.00",
        "committed": "60.00",
        "net_paid": "20.00",
        "in_kind_value": "0.00",
        "carried_forward": "30.00",
        "pending": "10.00",
        "clawback_recovered": "5.00",
    }
    values = {k: D(v) for k, v in (base | amounts).items()}
    return YearEndLine(programme="settling_in", kind=LineKind.CASH, **values)


def test_the_year_end_statement_lapses_what_was_never_committed() -> None:
    statement = year_end([_line(), _line(appropriated="150.00")])
    assert [line["lapsed"] for line in statement["lines"]] == [D("40.00"), D("90.00")]
    assert statement["totals"]["lapsed"] == D("130.00")
    assert statement["totals"]["appropriated"] == D("250.00")


def test_an_unbalanced_statement_is_never_answered() -> None:
    """Views that disagree (a commitment its grants do not account for) make no
    statement: a wrong year end is worse than none."""
    with pytest.raises(Unbalanced, match="settling_in"):
        year_end([_line(pending="11.00")])


@given(
    st.lists(st.integers(min_value=0, max_value=10**8), min_size=5, max_size=5),
    st.integers(min_value=0, max_value=365),
)
def test_the_year_end_identity_holds_whenever_the_commitment_is_accounted_for(
    parts: list[int], days: int
) -> None:
    net_paid, in_kind, carried, pending, lapsed = (D(p) / 100 for p in parts)
    committed = net_paid + in_kind + carried + pending
    line = YearEndLine(
        "p", LineKind.CASH, committed + lapsed, committed, net_paid, in_kind, carried, pending, D(0)
    )
    (out,) = year_end([line])["lines"]
    assert out["lapsed"] == lapsed
    assert out["appropriated"] == sum(
        (out[k] for k in ("net_paid", "in_kind_value", "carried_forward", "pending", "lapsed")),
        D(0),
    )
    assert elapsed_share(2024, date(2024, 1, 1) + timedelta(days=days)) <= 1
