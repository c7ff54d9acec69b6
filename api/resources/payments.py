"""Payments: recorded against approved grants, returned by the bank."""

from __future__ import annotations

from datetime import date
from typing import Literal

from fastapi import APIRouter

from api.operations import Operation
from api.routing import LedgerDep, LedgerRoute, PathId, PrincipalDep, read
from api.schemas import Money, Out
from api.writes import add_writes
from ledger.domain.payments import Payment
from ledger.usecases.payments import RecordPayment, ReturnPayment

router = APIRouter(prefix="/v1", route_class=LedgerRoute, tags=["payments"])


class PaymentOut(Out):
    payment_id: str
    grant_id: str
    talent_id: str
    fund_year: int
    programme: str
    amount: Money
    value_date: date
    bank_reference: str
    status: Literal["paid", "returned"]
    returned_on: date | None
    return_reason: str | None


OPERATIONS = (
    Operation("payment.record", "/payments", RecordPayment, PaymentOut, True),
    Operation("payment.return", "/payments/{payment_id}/return", ReturnPayment, PaymentOut, False),
)
add_writes(router, OPERATIONS)


@read(router, "/payments/{payment_id}", PaymentOut)
def get_payment(payment_id: PathId, ledger: LedgerDep, _: PrincipalDep) -> PaymentOut:
    return PaymentOut.model_validate(ledger.load(Payment, payment_id, "payment"))
