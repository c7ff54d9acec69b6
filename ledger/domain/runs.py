"""Disbursement runs: treasury pays every instalment due in one file to the agent bank,
then settles what the bank did with each item.

A run takes each instalment it pays out of reach of other runs (`Grant.hold`), so two
runs never pay the same instalment even when prepared at once in two processes: both
append to the grant's stream, and the store lets only one of them through.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.domain import event

from ledger.domain.base import LedgerAggregate, shared, stream_id
from ledger.domain.errors import InvalidState, ValidationFailed
from ledger.domain.money import ZERO

#: a run's id leaves room for "-<item number>" in a payment id the bank's file carries
#: as its EndToEndId, which ISO 20022 caps at 35 characters
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,27}$"
#: the most items a run holds: its settlement, in one request, stays within the size
#: of a file the API takes (a pain.002 of 50,000 items is about 13 MB)
MAX_RUN_ITEMS = 50_000
#: how many days after its value date an item the bank has not answered is overdue
OVERDUE_AFTER_DAYS = 10


def run_status(items: int, answered: int) -> str:
    """`prepared` until the bank answers an item, `settled` once it answered each."""
    if answered == items:
        return "settled"
    return "partially_settled" if answered else "prepared"


@shared
class RunItem(NamedTuple):
    payment_id: str
    grant_id: str
    talent_id: str
    instalment: int
    amount: Decimal


class Settlement(NamedTuple):
    """What the bank did with items: settled with its reference, or rejected with a
    reason (both by payment id)."""

    settled: dict[str, str]
    rejected: dict[str, str]


class DisbursementRun(LedgerAggregate):
    """A run: its items (one per instalment paid), the grants it left out and why, and
    each item's outcome once the bank has answered."""

    @staticmethod
    def create_id(run_id: str) -> UUID:
        return stream_id("disbursement-runs", run_id)

    class Prepared(LedgerAggregate.Created):
        run_id: str
        due_on: date
        value_date: date
        fund_year: int | None
        programme: str | None
        items: list[list[Any]]  # RunItem fields, in order
        excluded: list[dict[str, str]]
        fingerprint: str

    @event(Prepared)
    def __init__(
        self,
        run_id: str,
        due_on: date,
        value_date: date,
        fund_year: int | None,
        programme: str | None,
        items: list[list[Any]],
        excluded: list[dict[str, str]],
        fingerprint: str,
    ) -> None:
        self.run_id = run_id
        self.due_on = due_on
        self.value_date = value_date
        self.fund_year = fund_year
        self.programme = programme
        self.items = [RunItem(*item) for item in items]
        self.excluded = excluded
        self.fingerprint = fingerprint
        self.settled: dict[str, str] = {}  # payment id: bank reference
        self.rejected: dict[str, str] = {}  # payment id: reason

    @property
    def total(self) -> Decimal:
        return sum((item.amount for item in self.items), ZERO)

    @property
    def status(self) -> str:
        return run_status(len(self.items), len(self.settled) + len(self.rejected))

    def item_status(self, item: RunItem) -> str:
        if item.payment_id in self.settled:
            return "settled"
        return "rejected" if item.payment_id in self.rejected else "pending"

    class Settled(LedgerAggregate.Event):
        settled: dict[str, str]
        rejected: dict[str, str]

    def settle(self, settlement: Settlement) -> tuple[list[tuple[RunItem, str]], list[RunItem]]:
        """Record what the bank did; answers the items settled and rejected anew. An
        item answered again as it was is nothing new; answered otherwise, refused."""
        items = {item.payment_id: item for item in self.items}
        both = sorted(settlement.settled.keys() & settlement.rejected.keys())
        if both:
            raise ValidationFailed("settled", f"{both[0]} is both settled and rejected")
        for payment_id in (*settlement.settled, *settlement.rejected):
            if payment_id not in items:
                raise ValidationFailed("payment_id", f"run {self.run_id} has no item {payment_id}")
        settled = self._new(settlement.settled, self.settled)
        rejected = self._new(settlement.rejected, self.rejected)
        if settled or rejected:
            self._settled(settled, rejected)
        return [(items[p], ref) for p, ref in settled.items()], [items[p] for p in rejected]

    def _new(self, answers: dict[str, str], known: dict[str, str]) -> dict[str, str]:
        new = {}
        for payment_id, value in answers.items():
            earlier = self.settled.get(payment_id) or self.rejected.get(payment_id)
            if earlier is None:
                new[payment_id] = value
            elif known.get(payment_id) != value:
                state = "settled" if payment_id in self.settled else "rejected"
                raise InvalidState(f"item {payment_id} of run {self.run_id} is already {state}")
        return new

    @event(Settled)
    def _settled(self, settled: dict[str, str], rejected: dict[str, str]) -> None:
        self.settled.update(settled)
        self.rejected.update(rejected)
