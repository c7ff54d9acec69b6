"""The two reports a finance bureau reads of a fund year, as rules over facts the read
models give: budget execution by business date (预算执行, read against the share of the
year elapsed, 序时进度) and the year-end statement (年终结转和结余).

Shares are exact fractions until they are written, then rounded half to even to 4
decimals (`share_text`): a rate of 1/3 is "0.3333" whatever the binary floats would
have made of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ledger.domain.budget import LineKind
from ledger.domain.dates import add_months
from ledger.domain.money import ZERO

MONTHS = range(1, 13)
SHARE_DECIMALS = 4


def share_text(share: Fraction) -> str:
    """A share with exactly 4 decimals, rounded half to even: "0.5014", "-0.0210"."""
    scaled = round(share * 10**SHARE_DECIMALS)  # Fraction rounds half to even
    sign = "-" if scaled < 0 else ""
    whole, part = divmod(abs(scaled), 10**SHARE_DECIMALS)
    return f"{sign}{whole}.{part:0{SHARE_DECIMALS}d}"


def elapsed_share(year: int, on: date) -> Fraction:
    """Days of `year` up to and including `on`, over the days in the year: 0 before
    the year, 1 after it."""
    first, last = date(year, 1, 1), date(year, 12, 31)
    if on < first:
        return Fraction(0)
    if on > last:
        return Fraction(1)
    return Fraction((on - first).days + 1, (last - first).days + 1)


def execution_rate(spent: Decimal, appropriated: Decimal) -> Fraction:
    """What was spent (net paid and in-kind value) over what was appropriated; 0 when
    nothing was."""
    return Fraction(spent) / Fraction(appropriated) if appropriated else Fraction(0)


@dataclass(frozen=True)
class Line:
    """A fund-year line as recorded now."""

    programme: str
    kind: LineKind
    appropriated: Decimal
    committed: Decimal


@dataclass(frozen=True)
class Waiver:
    """A rent waiver's months: `months` calendar months from `start_on`'s, each worth
    `monthly_rent` (fewer once it ended early)."""

    programme: str
    start_on: date
    months: int
    monthly_rent: Decimal


@dataclass(frozen=True)
class Flows:
    """A fund year's money by calendar month (its first day), each counted on a business
    date on or before the report's day: payments in their value date's month, returns
    in their return date's (programme -> month -> amount). A grant approved in its year
    may be paid in the next: such months lie outside the year."""

    paid: Mapping[str, Mapping[date, Decimal]]
    returned: Mapping[str, Mapping[date, Decimal]]


def _waived_by_month(waivers: Iterable[Waiver], on: date) -> dict[str, dict[date, Decimal]]:
    """Each waiver's rent in each of its months whose first day is on or before `on`
    (a waiver's months lie in its fund year)."""
    out: dict[str, dict[date, Decimal]] = {}
    for w in waivers:
        months = out.setdefault(w.programme, {})
        first = w.start_on.replace(day=1)
        for month in (add_months(first, n) for n in range(w.months)):
            if month <= on:
                months[month] = months.get(month, ZERO) + w.monthly_rent
    return out


def _amounts(
    appropriated: Decimal,
    committed: Decimal,
    net_paid: Decimal,
    in_kind: Decimal,
    elapsed: Fraction,
) -> dict[str, Any]:
    rate = execution_rate(net_paid + in_kind, appropriated)
    return {
        "appropriated": appropriated,
        "committed": committed,
        "net_paid": net_paid,
        "in_kind_value": in_kind,
        "execution_rate": share_text(rate),
        "lag": share_text(elapsed - rate),
    }


def _flow(paid: Decimal, returned: Decimal) -> dict[str, Decimal]:
    return {"paid": paid, "returned": returned, "net_paid": paid - returned}


def _outside(amounts: Mapping[date, Decimal], year: int) -> Decimal:
    return sum((a for month, a in amounts.items() if month.year != year), ZERO)


def execution(
    year: int, on: date, lines: Iterable[Line], flows: Flows, waivers: Iterable[Waiver]
) -> dict[str, Any]:
    """How far the year's money has gone by business date `on`, line by line and month
    by month, against the share of the year elapsed. A line's net paid is its twelve
    months' and what was paid or returned outside the year (`outside_year`)."""
    elapsed = elapsed_share(year, on)
    waived = _waived_by_month(waivers, on)
    firsts = [date(year, m, 1) for m in MONTHS]
    out_lines = []
    for line in lines:
        paid = flows.paid.get(line.programme, {})
        returned = flows.returned.get(line.programme, {})
        in_kind = waived.get(line.programme, {})
        months: list[dict[str, Any]] = [
            {
                "month": f"{first:%Y-%m}",
                **_flow(paid.get(first, ZERO), returned.get(first, ZERO)),
                "in_kind_value": in_kind.get(first, ZERO),
            }
            for first in firsts
        ]
        outside = _flow(_outside(paid, year), _outside(returned, year))
        net_paid = sum((m["net_paid"] for m in months), outside["net_paid"])
        in_kind_value = sum((m["in_kind_value"] for m in months), ZERO)
        amounts = _amounts(line.appropriated, line.committed, net_paid, in_kind_value, elapsed)
        out_lines.append(
            {
                "programme": line.programme,
                "kind": line.kind.value,
                **amounts,
                "months": months,
                "outside_year": outside,
            }
        )

    def total(name: str, of: str | None = None) -> Decimal:
        return sum(((line[of] if of else line)[name] for line in out_lines), ZERO)

    return {
        "year": year,
        "on": on,
        "elapsed_share": share_text(elapsed),
        "lines": out_lines,
        "totals": {
            **_amounts(
                total("appropriated"),
                total("committed"),
                total("net_paid"),
                total("in_kind_value"),
                elapsed,
            ),
            "outside_year": _flow(total("paid", "outside_year"), total("returned", "outside_year")),
        },
    }


@dataclass(frozen=True)
class YearEndLine:
    """What a line's statement is made of, as recorded now: its appropriation and
    commitment, what was spent, and its grants' amounts still open."""

    programme: str
    kind: LineKind
    appropriated: Decimal
    committed: Decimal
    net_paid: Decimal
    in_kind_value: Decimal
    carried_forward: Decimal  # approved grants' amounts not yet net paid
    pending: Decimal  # proposed grants not yet decided
    clawback_recovered: Decimal


class Unbalanced(AssertionError):
    """The statement's identity does not hold: the read models disagree with each
    other, which no history can make true. Never printed as a statement."""


YEAR_END_AMOUNTS = (
    "appropriated",
    "committed",
    "net_paid",
    "in_kind_value",
    "carried_forward",
    "pending",
    "lapsed",
    "clawback_recovered",
)


def year_end(lines: Iterable[YearEndLine]) -> dict[str, Any]:
    """The year-end statement's lines and totals. On every line, and so in total,
    appropriated = net paid + in-kind value + carried forward + pending + lapsed, where
    lapsed is what was never committed (the line's `available`)."""
    out_lines = []
    for line in lines:
        lapsed = line.appropriated - line.committed
        accounted = (
            line.net_paid + line.in_kind_value + line.carried_forward + line.pending + lapsed
        )
        if accounted != line.appropriated:
            raise Unbalanced(
                f"line {line.programme}: {line.appropriated} appropriated, {accounted} accounted"
            )
        out_lines.append(
            {
                "programme": line.programme,
                "kind": line.kind.value,
                **{name: getattr(line, name) for name in YEAR_END_AMOUNTS if name != "lapsed"},
                "lapsed": lapsed,
            }
        )
    totals = {name: sum((line[name] for line in out_lines), ZERO) for name in YEAR_END_AMOUNTS}
    return {"lines": out_lines, "totals": totals}
