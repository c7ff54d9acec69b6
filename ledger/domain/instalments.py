"""Instalment schedules: a grant's amount split into instalments due month by month,
and which of them its net payments have filled.

A schedule is a pure function of the grant's amount and plan, so it is never stored:
the plan is (on the proposal), and what each instalment has been paid follows from
the grant's net paid amount, filling instalments earliest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, Decimal
from typing import Annotated, Any, NamedTuple

from ledger.domain.base import shared
from ledger.domain.dates import add_months
from ledger.domain.errors import ValidationFailed
from ledger.domain.money import FEN, ZERO
from ledger.domain.values import YEARS, IntRange


@shared
@dataclass(frozen=True)
class InstalmentPlan:
    """How a grant is paid: `count` instalments, the first due on `first_due_on`, each
    next one `interval_months` later."""

    count: Annotated[int, IntRange(1, 120)]
    first_due_on: date
    interval_months: Annotated[int, IntRange(1, 12)]

    def as_event(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "first_due_on": self.first_due_on,
            "interval_months": self.interval_months,
        }

    def check(self, amount: Decimal) -> None:
        """Refuse a plan whose instalments would be nothing, or fall after the last
        year the ledger knows."""
        self.split(amount)
        months = (self.count - 1) * self.interval_months
        if self.first_due_on.year * 12 + self.first_due_on.month - 1 + months >= (
            (YEARS.last + 1) * 12
        ):
            raise ValidationFailed(
                "instalments.first_due_on", f"the last instalment would fall after {YEARS.last}"
            )

    def split(self, amount: Decimal) -> list[Decimal]:
        """`amount` in `count` parts to the fen, the last taking the remainder; refused
        when a part would be nothing."""
        each = (amount / self.count).quantize(FEN, rounding=ROUND_DOWN)
        if each == ZERO:
            raise ValidationFailed(
                "instalments.count",
                f"{amount} cannot be paid in {self.count} instalments of at least 0.01",
            )
        return [each] * (self.count - 1) + [amount - each * (self.count - 1)]

    def due_dates(self) -> list[date]:
        return [add_months(self.first_due_on, n * self.interval_months) for n in range(self.count)]


class Instalment(NamedTuple):
    number: int  # from 1
    due_on: date | None  # None: due on an approval that has not happened yet
    amount: Decimal
    paid: Decimal

    @property
    def unpaid(self) -> Decimal:
        return self.amount - self.paid


def schedule(
    amount: Decimal, plan: InstalmentPlan | None, approved_on: date | None, net_paid: Decimal
) -> list[Instalment]:
    """The instalments of a grant of `amount` with `net_paid` filling them earliest
    first. Without a plan, one instalment due on the approval date."""
    if plan is None:
        parts, dates = [amount], [approved_on]
    else:
        parts, dates = plan.split(amount), list(plan.due_dates())
    instalments = []
    left = net_paid
    for number, (part, due_on) in enumerate(zip(parts, dates, strict=True), start=1):
        paid = min(part, max(left, ZERO))
        left -= paid
        instalments.append(Instalment(number, due_on, part, paid))
    return instalments


def instalment_status(grant_status: str, instalment: Instalment) -> str:
    """`scheduled` until the grant is approved; then `unpaid`, `partially_paid` or
    `paid`; what a rejected or revoked grant leaves unpaid is `cancelled`."""
    if instalment.unpaid == ZERO:
        return "paid"
    if grant_status == "proposed":
        return "scheduled"
    if grant_status != "approved":
        return "cancelled"
    return "unpaid" if instalment.paid == ZERO else "partially_paid"


def shown(grant_status: str, instalments: list[Instalment]) -> list[dict[str, Any]]:
    """Instalments as a grant shows them, each with its status."""
    return [{**i._asdict(), "status": instalment_status(grant_status, i)} for i in instalments]
