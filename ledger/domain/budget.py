"""The budget: a fund year, its programme lines, and the benefits charged to them.

A fund year is the boundary of every budget rule. Whatever it pays or gives (a cash
grant, a rent waiver, a later kind) is a `Benefit`: the line reserves what a benefit
may cost when it is made and releases what it no longer needs, and that is all the
budget knows of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, Protocol
from uuid import UUID

from eventsourcing.domain import event

from ledger.domain.base import LedgerAggregate, stream_id
from ledger.domain.errors import BudgetExceeded, FundYearClosed, InvalidState, ValidationFailed
from ledger.domain.money import ZERO


class LineKind(StrEnum):
    """What a programme line pays: money, or something in kind (free rent)."""

    CASH = "cash"
    IN_KIND = "in_kind"


def available(appropriated: Decimal, committed: Decimal) -> Decimal:
    """What a line can still commit: the one definition, for decisions and reads."""
    return appropriated - committed


@dataclass
class Line:
    """A programme line of one fund year: what may be committed against it."""

    kind: LineKind
    appropriated: Decimal = ZERO
    committed: Decimal = ZERO

    @property
    def available(self) -> Decimal:
        return available(self.appropriated, self.committed)


@dataclass(frozen=True)
class Appropriation:
    appropriation_id: str
    programme: str
    kind: LineKind
    amount: Decimal
    reference: str
    fingerprint: str


class Benefit(Protocol):
    """Anything a talent receives from a programme line. A new kind implements this and
    names its `KIND` (how the budget's events name it) and `LINE_KIND`."""

    KIND: ClassVar[str]
    LINE_KIND: ClassVar[LineKind]
    fund_year: int
    programme: str

    @property
    def benefit_id(self) -> str: ...

    @property
    def reserved(self) -> Decimal:
        """What it may cost, reserved on its line when it is made."""

    @property
    def in_year_dates(self) -> dict[str, date]:
        """Its business dates that must lie inside its fund year, by field name."""


def _benefit_of_v1(state: dict[str, Any]) -> None:
    """The first edition named the benefit by `grant_id` or `waiver_id` (the other null)."""
    grant_id, waiver_id = state.pop("grant_id"), state.pop("waiver_id")
    state["benefit"], state["benefit_id"] = (
        ("grant", grant_id) if grant_id is not None else ("waiver", waiver_id)
    )


class BudgetMove(LedgerAggregate.Event):
    """An amount of a line committed to a benefit (`FundYear.Reserved`) or given back
    (`FundYear.Released`)."""

    class_version = 2
    programme: str
    amount: Decimal
    benefit: str
    benefit_id: str

    upcast_v1_v2 = staticmethod(_benefit_of_v1)


class FundYear(LedgerAggregate):
    """One calendar year of the special fund: the boundary of every budget rule."""

    LONG_HISTORY = True  # an event for every grant and waiver of the year

    @staticmethod
    def create_id(year: int) -> UUID:
        return stream_id("fund-years", str(year))

    class Opened(LedgerAggregate.Created):
        year: int
        currency: str
        fingerprint: str

    @event(Opened)
    def __init__(self, year: int, currency: str, fingerprint: str) -> None:
        self.year = year
        self.currency = currency
        self.fingerprint = fingerprint
        self.status = "open"
        self.close_reason: str | None = None
        self.lines: dict[str, Line] = {}
        self.appropriations: dict[str, Appropriation] = {}

    def check_open(self) -> None:
        if self.status == "closed":
            raise FundYearClosed(f"fund year {self.year} is closed")

    def check_date(self, field: str, day: date) -> None:
        if day.year != self.year:
            raise ValidationFailed(field, f"{field} must lie inside fund year {self.year}")

    def line(self, programme: str, kind: LineKind) -> Line:
        """The line a benefit of `kind` is charged to."""
        found = self.lines.get(programme)
        if found is None:
            raise ValidationFailed(
                "programme", f"fund year {self.year} has no programme line {programme!r}"
            )
        if found.kind != kind:
            raise ValidationFailed(
                "programme", f"programme line {programme!r} is {found.kind}, not {kind}"
            )
        return found

    class Appropriated(LedgerAggregate.Event):
        appropriation_id: str
        programme: str
        kind: str
        amount: Decimal
        reference: str
        fingerprint: str

    def appropriate(self, appropriation: Appropriation) -> None:
        self.check_open()
        line = self.lines.get(appropriation.programme)
        if line is not None and line.kind != appropriation.kind:
            raise ValidationFailed(
                "kind", f"programme line {appropriation.programme!r} is {line.kind}"
            )
        self._appropriated(
            appropriation.appropriation_id,
            appropriation.programme,
            appropriation.kind,
            appropriation.amount,
            appropriation.reference,
            appropriation.fingerprint,
        )

    @event(Appropriated)
    def _appropriated(
        self,
        appropriation_id: str,
        programme: str,
        kind: str,
        amount: Decimal,
        reference: str,
        fingerprint: str,
    ) -> None:
        line_kind = LineKind(kind)
        line = self.lines.setdefault(programme, Line(kind=line_kind))
        line.appropriated += amount
        self.appropriations[appropriation_id] = Appropriation(
            appropriation_id, programme, line_kind, amount, reference, fingerprint
        )

    class Reserved(BudgetMove):
        pass

    def reserve(self, benefit: Benefit) -> None:
        """Commit budget for a new benefit; refuse what its line cannot hold."""
        for field, day in benefit.in_year_dates.items():
            self.check_date(field, day)
        self.check_open()
        line = self.line(benefit.programme, benefit.LINE_KIND)
        amount = benefit.reserved
        if amount > line.available:
            raise BudgetExceeded(
                f"{benefit.programme} {self.year} has {line.available} available, "
                f"{amount} requested"
            )
        self._reserved(benefit.programme, amount, benefit.KIND, benefit.benefit_id)

    @event(Reserved)
    def _reserved(self, programme: str, amount: Decimal, benefit: str, benefit_id: str) -> None:
        self.lines[programme].committed += amount

    class Released(BudgetMove):
        pass

    def release(self, benefit: Benefit, amount: Decimal) -> None:
        """Give back budget a benefit no longer needs (allowed after closing)."""
        if amount > 0:
            self._released(benefit.programme, amount, benefit.KIND, benefit.benefit_id)

    @event(Released)
    def _released(self, programme: str, amount: Decimal, benefit: str, benefit_id: str) -> None:
        self.lines[programme].committed -= amount

    class Closed(LedgerAggregate.Event):
        reason: str

    def close(self, reason: str) -> None:
        if self.status == "closed":
            if reason != self.close_reason:
                raise InvalidState(f"fund year {self.year} is already closed")
            return
        self._closed(reason)

    @event(Closed)
    def _closed(self, reason: str) -> None:
        self.status = "closed"
        self.close_reason = reason
