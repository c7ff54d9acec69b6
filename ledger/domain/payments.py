"""Payments the bank made against grants, and the bank references they claim."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from uuid import UUID

from eventsourcing.domain import event

from ledger.domain.base import LedgerAggregate, stream_id
from ledger.domain.errors import DuplicateBankReference, InvalidState, ValidationFailed


class Payment(LedgerAggregate):
    """Money sent by the bank against an approved grant (made by `Grant.pay`)."""

    @staticmethod
    def create_id(payment_id: str) -> UUID:
        return stream_id("payments", payment_id)

    class Recorded(LedgerAggregate.Created):
        payment_id: str
        grant_id: str
        talent_id: str
        fund_year: int
        programme: str
        amount: Decimal
        value_date: date
        bank_reference: str
        fingerprint: str

    @event(Recorded)
    def __init__(
        self,
        payment_id: str,
        grant_id: str,
        talent_id: str,
        fund_year: int,
        programme: str,
        amount: Decimal,
        value_date: date,
        bank_reference: str,
        fingerprint: str,
    ) -> None:
        self.payment_id = payment_id
        self.grant_id = grant_id
        self.talent_id = talent_id
        self.fund_year = fund_year
        self.programme = programme
        self.amount = amount
        self.value_date = value_date
        self.bank_reference = bank_reference
        self.fingerprint = fingerprint
        self.returned_on: date | None = None
        self.return_reason: str | None = None

    @property
    def status(self) -> str:
        return "paid" if self.returned_on is None else "returned"

    class Returned(LedgerAggregate.Event):
        returned_on: date
        reason: str

    def return_(self, returned_on: date, reason: str) -> bool:
        """Record a bank return; False when this very return is already recorded."""
        if self.returned_on is not None:
            if (returned_on, reason) != (self.returned_on, self.return_reason):
                raise InvalidState(f"payment {self.payment_id} was returned on {self.returned_on}")
            return False
        if returned_on < self.value_date:
            raise ValidationFailed("returned_on", "a payment cannot return before its value date")
        self._returned(returned_on, reason)
        return True

    @event(Returned)
    def _returned(self, returned_on: date, reason: str) -> None:
        self.returned_on = returned_on
        self.return_reason = reason


class BankReference(LedgerAggregate):
    """Claims a bank reference for one payment or recovery, so that no other can use it:
    its stream exists once, so a second claim collides even between processes."""

    @staticmethod
    def create_id(bank_reference: str) -> UUID:
        return stream_id("bank-references", bank_reference)

    @classmethod
    def claim(
        cls,
        taken: BankReference | None,
        bank_reference: str,
        *,
        payment_id: str | None = None,
        clawback_id: str | None = None,
        recovery_id: str | None = None,
    ) -> BankReference:
        """Claim `bank_reference` for a payment or a recovery, unless `taken` (the claim
        already in the ledger under it, if any) has it."""
        if taken is not None:
            raise DuplicateBankReference(f"bank reference {bank_reference} is already recorded")
        return cls(bank_reference, payment_id, clawback_id, recovery_id)

    class Claimed(LedgerAggregate.Created):
        bank_reference: str
        payment_id: str | None
        clawback_id: str | None
        recovery_id: str | None

    @event(Claimed)
    def __init__(
        self,
        bank_reference: str,
        payment_id: str | None,
        clawback_id: str | None,
        recovery_id: str | None,
    ) -> None:
        self.bank_reference = bank_reference
