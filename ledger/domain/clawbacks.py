"""Clawbacks: money a departed talent owes back on a grant, and its recoveries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from uuid import UUID

from eventsourcing.domain import event

from ledger.domain.base import LedgerAggregate, stream_id
from ledger.domain.errors import Overpayment
from ledger.domain.money import ZERO


@dataclass(frozen=True)
class Recovery:
    recovery_id: str
    amount: Decimal
    value_date: date
    bank_reference: str
    fingerprint: str


class Clawback(LedgerAggregate):
    """Money a departed talent owes back on a grant (made by `Grant.assess_clawback`),
    and what has been recovered."""

    @staticmethod
    def create_id(clawback_id: str) -> UUID:
        return stream_id("clawbacks", clawback_id)

    class Assessed(LedgerAggregate.Created):
        clawback_id: str
        grant_id: str
        talent_id: str
        fund_year: int
        programme: str
        amount: Decimal
        reason: str
        fingerprint: str

    @event(Assessed)
    def __init__(
        self,
        clawback_id: str,
        grant_id: str,
        talent_id: str,
        fund_year: int,
        programme: str,
        amount: Decimal,
        reason: str,
        fingerprint: str,
    ) -> None:
        self.clawback_id = clawback_id
        self.grant_id = grant_id
        self.talent_id = talent_id
        self.fund_year = fund_year
        self.programme = programme
        self.amount = amount
        self.reason = reason
        self.fingerprint = fingerprint
        self.recoveries: dict[str, Recovery] = {}

    @property
    def recovered(self) -> Decimal:
        return sum((r.amount for r in self.recoveries.values()), ZERO)

    @property
    def due(self) -> Decimal:
        return self.amount - self.recovered

    @property
    def status(self) -> str:
        return "recovered" if self.due == 0 else "open"

    class Recovered(LedgerAggregate.Event):
        recovery_id: str
        amount: Decimal
        value_date: date
        bank_reference: str
        fingerprint: str

    def recover(self, recovery: Recovery) -> None:
        if recovery.amount > self.due:
            raise Overpayment(
                f"clawback {self.clawback_id} has {self.due} due, {recovery.amount} recovered"
            )
        self._recovered(
            recovery.recovery_id,
            recovery.amount,
            recovery.value_date,
            recovery.bank_reference,
            recovery.fingerprint,
        )

    @event(Recovered)
    def _recovered(
        self,
        recovery_id: str,
        amount: Decimal,
        value_date: date,
        bank_reference: str,
        fingerprint: str,
    ) -> None:
        self.recoveries[recovery_id] = Recovery(
            recovery_id, amount, value_date, bank_reference, fingerprint
        )
