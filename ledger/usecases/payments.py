"""Payments: recorded against approved grants, returned by the bank."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from ledger.domain.budget import FundYear
from ledger.domain.errors import (
    DuplicateBankReference,
    IdempotencyConflict,
    InvalidState,
    NotFound,
    Overpayment,
    SeparationOfDuties,
    TalentDeparted,
)
from ledger.domain.grants import Grant
from ledger.domain.payments import BankReference, Payment
from ledger.domain.talents import Talent
from ledger.domain.values import Identifier, Text
from ledger.engine.unit_of_work import UnitOfWork
from ledger.usecases.registry import fingerprint, use_case

# --- commands ------------------------------------------------------------


@dataclass(frozen=True)
class RecordPayment:
    payment_id: Identifier
    grant_id: Identifier
    amount: Decimal
    value_date: date
    bank_reference: Identifier


@dataclass(frozen=True)
class ReturnPayment:
    payment_id: Identifier
    returned_on: date
    reason: Text


# --- decisions -----------------------------------------------------------


def claim_bank_reference(
    uow: UnitOfWork,
    bank_reference: str,
    *,
    payment_id: str | None = None,
    clawback_id: str | None = None,
    recovery_id: str | None = None,
) -> None:
    """Claim a bank reference for a payment or a recovery: refused if any has it. The
    claim's stream id is the reference's, so the store refuses a second one even from
    another process."""
    taken = uow.find(BankReference, bank_reference)
    uow.add(
        BankReference.claim(
            taken,
            bank_reference,
            payment_id=payment_id,
            clawback_id=clawback_id,
            recovery_id=recovery_id,
        )
    )


@use_case(
    RecordPayment,
    role="treasury",
    refuses=(
        IdempotencyConflict,
        InvalidState,
        Overpayment,
        DuplicateBankReference,
        TalentDeparted,
        SeparationOfDuties,
    ),
)
def record_payment(uow: UnitOfWork, cmd: RecordPayment) -> Payment:
    fp = fingerprint(cmd)
    if (original := uow.created_by(Payment, cmd.payment_id, fp)) is not None:
        return original
    grant = uow.refer(Grant, cmd.grant_id, "grant_id", "grant")
    uow.get(Talent, grant.talent_id, "talent").check_may_receive(cmd.value_date)
    claim_bank_reference(uow, cmd.bank_reference, payment_id=cmd.payment_id)
    payment = grant.pay(cmd.payment_id, cmd.amount, cmd.value_date, cmd.bank_reference, fp)
    return uow.add(payment)


@use_case(ReturnPayment, role="treasury", refuses=(NotFound, InvalidState))
def return_payment(uow: UnitOfWork, cmd: ReturnPayment) -> Payment:
    payment = uow.get(Payment, cmd.payment_id, "payment")
    grant = uow.get(Grant, payment.grant_id, "grant")
    fund_year = uow.get(FundYear, grant.fund_year, "fund year")
    grant.return_payment(payment, cmd.returned_on, cmd.reason, fund_year)
    return payment
