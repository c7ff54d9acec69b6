"""Payments: recorded against approved grants, returned by the bank."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Query

from api.lists import (
    DateFrom,
    DateTo,
    FundYearFilter,
    GrantFilter,
    ProgrammeFilter,
    TalentFilter,
    list_route,
)
from api.operations import Operation
from api.routing import LedgerDep, PathId, PrincipalDep, ledger_router, read
from api.schemas import Money, Out
from api.writes import add_writes
from ledger.domain.payments import Payment
from ledger.usecases.payments import RecordPayment, ReturnPayment
from projections import lists
from projections.views.treasury import Treasury

router = ledger_router("payments")


PaymentStatus = Literal["paid", "returned"]


class PaymentOut(Out):
    payment_id: str
    grant_id: str
    talent_id: str
    fund_year: int
    programme: str
    amount: Money
    value_date: date
    bank_reference: str
    status: PaymentStatus
    returned_on: date | None
    return_reason: str | None


OPERATIONS = (
    Operation(
        "payment.record",
        "/payments",
        RecordPayment,
        PaymentOut,
        True,
        reads=("getPayment", "payment_id"),
        summary="Record a payment",
        description="A payment on an approved grant, as the bank made it: at most what is "
        "still payable (`overpayment`), under a bank reference no payment or recovery has "
        "used (`duplicate_bank_reference`), dated no later than the talent's departure "
        "(`talent_departed`).",
    ),
    Operation(
        "payment.return",
        "/payments/{payment_id}/return",
        ReturnPayment,
        PaymentOut,
        False,
        reads=("getPayment", "payment_id"),
        summary="Return a payment",
        description="The bank returned a payment (an account closed, a name that does not "
        "match): it is payable again, or, on a revoked grant, its budget goes back to the "
        "line.",
    ),
)
add_writes(router, OPERATIONS)


@read(router, "/payments/{payment_id}", PaymentOut, summary="Read a payment")
def get_payment(payment_id: PathId, ledger: LedgerDep, _: PrincipalDep) -> PaymentOut:
    """A payment and whether the bank returned it, read from its own events."""
    return PaymentOut.model_validate(ledger.load(Payment, payment_id, "payment"))


async def payment_filters(
    fund_year: FundYearFilter = None,
    programme: ProgrammeFilter = None,
    talent_id: TalentFilter = None,
    grant_id: GrantFilter = None,
    status: Annotated[
        PaymentStatus | None, Query(description="Only payments in this status")
    ] = None,
    value_date_from: DateFrom = None,
    value_date_to: DateTo = None,
) -> dict[str, Any]:
    """The filters of the payments' list and export."""
    return {
        "fund_year": fund_year,
        "programme": programme,
        "talent_id": talent_id,
        "grant_id": grant_id,
        "status": status,
        "value_date_from": value_date_from,
        "value_date_to": value_date_to,
    }


list_route(
    router,
    "/payments",
    PaymentOut,
    payment_filters,
    lists.payments,
    (Treasury.NAME,),
    name="list_payments",
    what="payments",
)
