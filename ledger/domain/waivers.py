"""Rent waivers: free rent in a talent apartment, an in-kind benefit."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import ClassVar
from uuid import UUID

from eventsourcing.domain import event

from ledger.domain.base import LedgerAggregate, stream_id
from ledger.domain.budget import FundYear, LineKind
from ledger.domain.dates import calendar_months
from ledger.domain.errors import InvalidState, ValidationFailed


class RentWaiver(LedgerAggregate):
    """Free rent in a talent apartment (a `Benefit` of an in-kind line): worth whole
    calendar months of rent, a part month counting whole."""

    KIND: ClassVar[str] = "waiver"
    LINE_KIND: ClassVar[LineKind] = LineKind.IN_KIND

    @staticmethod
    def create_id(waiver_id: str) -> UUID:
        return stream_id("rent-waivers", waiver_id)

    @classmethod
    def grant(
        cls,
        waiver_id: str,
        talent_id: str,
        fund_year: int,
        programme: str,
        apartment: str,
        start_on: date,
        end_on: date,
        monthly_rent: Decimal,
        fingerprint: str,
    ) -> RentWaiver:
        """A new waiver, its months and value counted from its dates."""
        if end_on < start_on:
            raise ValidationFailed("end_on", "end_on is before start_on")
        months = calendar_months(start_on, end_on)
        return cls(
            waiver_id,
            talent_id,
            fund_year,
            programme,
            apartment,
            start_on,
            end_on,
            monthly_rent,
            months,
            monthly_rent * months,
            fingerprint,
        )

    class Granted(LedgerAggregate.Created):
        waiver_id: str
        talent_id: str
        fund_year: int
        programme: str
        apartment: str  # sealed with the talent's key (in clear before it was)
        start_on: date
        end_on: date
        monthly_rent: Decimal
        months: int
        value: Decimal
        fingerprint: str

    @event(Granted)
    def __init__(
        self,
        waiver_id: str,
        talent_id: str,
        fund_year: int,
        programme: str,
        apartment: str,
        start_on: date,
        end_on: date,
        monthly_rent: Decimal,
        months: int,
        value: Decimal,
        fingerprint: str,
    ) -> None:
        self.waiver_id = waiver_id
        self.talent_id = talent_id
        self.fund_year = fund_year
        self.programme = programme
        self.apartment = apartment
        self.start_on = start_on
        self.end_on = end_on
        self.monthly_rent = monthly_rent
        self.months = months
        self.value = value
        self.fingerprint = fingerprint
        self.ended_on: date | None = None

    @property
    def benefit_id(self) -> str:
        return self.waiver_id

    @property
    def reserved(self) -> Decimal:
        return self.value

    @property
    def in_year_dates(self) -> dict[str, date]:
        return {"start_on": self.start_on, "end_on": self.end_on}

    @property
    def status(self) -> str:
        return "active" if self.ended_on is None else "ended"

    class Ended(LedgerAggregate.Event):
        ended_on: date
        months: int
        released: Decimal

    def end(self, ended_on: date, budget: FundYear) -> None:
        """End early: keep the months up to and including `ended_on`'s, give the rest
        back to the budget. The same end again records nothing."""
        if self.ended_on is not None:
            if ended_on != self.ended_on:
                raise InvalidState(f"waiver {self.waiver_id} ended on {self.ended_on}")
            return
        if not self.start_on <= ended_on <= self.end_on:
            raise ValidationFailed("ended_on", "ended_on must lie between start_on and end_on")
        months = calendar_months(self.start_on, ended_on)
        released = self.value - self.monthly_rent * months
        self._ended(ended_on, months, released)
        budget.release(self, released)

    @event(Ended)
    def _ended(self, ended_on: date, months: int, released: Decimal) -> None:
        self.ended_on = ended_on
        self.months = months
        self.value -= released
