"""Treasury facts: grants, payments, clawbacks and their recoveries as they stand, and
every statement line a reconciliation did not match. What reconciliation matches
against, and what the exceptions report judges."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from ledger.domain.clawbacks import Clawback
from ledger.domain.grants import Grant
from ledger.domain.money import ZERO
from ledger.domain.payments import Payment
from ledger.domain.reconciliation import BUCKETS, Reconciliation, unpack
from projections.streams import Streams
from projections.tables import AMOUNT, Curs, Table, Writes
from projections.view import Rows, View, handles, keyed

GRANTS = Table(
    "rm_grants",
    {
        "grant_id": "text",
        "talent_id": "text NOT NULL",
        "year": "int NOT NULL",
        "programme": "text NOT NULL",
        "amount": AMOUNT,
        "status": "text NOT NULL",
        "approved_at": "timestamptz",
        "paid": AMOUNT,
        "returned": AMOUNT,
        "clawed_back": AMOUNT,
    },
    key=("grant_id",),
    indexes=(("year",),),
)
PAYMENTS = Table(
    "rm_payments",
    {
        "payment_id": "text",
        "grant_id": "text NOT NULL",
        "talent_id": "text NOT NULL",
        "year": "int NOT NULL",
        "programme": "text NOT NULL",
        "amount": AMOUNT,
        "value_date": "date NOT NULL",
        "bank_reference": "text NOT NULL",
        "returned_on": "date",
    },
    key=("payment_id",),
    indexes=(("bank_reference",), ("value_date",), ("year",)),
)
CLAWBACKS = Table(
    "rm_clawbacks",
    {
        "clawback_id": "text",
        "grant_id": "text NOT NULL",
        "talent_id": "text NOT NULL",
        "year": "int NOT NULL",
        "programme": "text NOT NULL",
        "amount": AMOUNT,
        "assessed_at": "timestamptz NOT NULL",
        "recovered": AMOUNT,
    },
    key=("clawback_id",),
)
RECOVERIES = Table(
    "rm_recoveries",
    {
        "clawback_id": "text",
        "recovery_id": "text",
        "amount": AMOUNT,
        "value_date": "date NOT NULL",
        "bank_reference": "text NOT NULL",
    },
    key=("clawback_id", "recovery_id"),
    indexes=(("bank_reference",),),
)
RECONCILIATION_LINES = Table(
    "rm_reconciliation_lines",
    {
        "reconciliation_id": "text",
        "seq": "int",
        "bucket": "text NOT NULL",
        "bank_reference": "text NOT NULL",
        "amount": AMOUNT,
        "value_date": "date NOT NULL",
    },
    key=("reconciliation_id", "seq"),
)


@dataclass
class GrantRow:
    talent_id: str
    year: int
    programme: str
    amount: Decimal
    status: str = "proposed"
    approved_at: datetime | None = None
    paid: Decimal = ZERO
    returned: Decimal = ZERO
    clawed_back: Decimal = ZERO


@dataclass
class PaymentRow:
    grant_id: str
    talent_id: str
    year: int
    programme: str
    amount: Decimal
    value_date: date
    bank_reference: str
    returned_on: date | None = None


@dataclass
class ClawbackRow:
    grant_id: str
    talent_id: str
    year: int
    programme: str
    amount: Decimal
    assessed_at: datetime
    recovered: Decimal = ZERO


class Treasury(View):
    NAME = "treasury"
    VERSION = 1
    TABLES = (GRANTS, PAYMENTS, CLAWBACKS, RECOVERIES, RECONCILIATION_LINES)

    def __init__(self, streams: Streams, *, complete: bool) -> None:
        super().__init__(streams, complete=complete)
        self.grants: Rows[str, GrantRow] = Rows(GRANTS, keyed(GrantRow))
        self.payments: Rows[str, PaymentRow] = Rows(PAYMENTS, keyed(PaymentRow))
        self.clawbacks: Rows[str, ClawbackRow] = Rows(CLAWBACKS, keyed(ClawbackRow))
        self.recoveries: list[tuple[Any, ...]] = []
        self.reconciliation_lines: list[tuple[Any, ...]] = []

    def size(self) -> int:
        return len(self.grants.rows) + len(self.payments.rows) + len(self.clawbacks.rows)

    def write(self, out: Writes, curs: Curs) -> None:
        self.grants.write(out, curs)
        self.payments.write(out, curs)
        self.clawbacks.write(out, curs)
        out.copy(curs, RECOVERIES, self.recoveries)
        out.copy(curs, RECONCILIATION_LINES, self.reconciliation_lines)
        self.recoveries, self.reconciliation_lines = [], []

    def _grant(self, e: Any) -> GrantRow:
        return self.row(self.grants, self.stream().key, lambda r: GrantRow(**r))

    @handles(Grant.Proposed)
    def _proposed(self, e: Grant.Proposed) -> None:
        self.grants.create(e.grant_id, GrantRow(e.talent_id, e.fund_year, e.programme, e.amount))

    @handles(Grant.Approved)
    def _approved(self, e: Grant.Approved) -> None:
        grant = self._grant(e)
        grant.status, grant.approved_at = "approved", self.at.recorded_at

    @handles(Grant.Rejected)
    def _rejected(self, e: Grant.Rejected) -> None:
        self._grant(e).status = "rejected"

    @handles(Grant.Revoked)
    def _revoked(self, e: Grant.Revoked) -> None:
        self._grant(e).status = "revoked"

    @handles(Grant.Paid)
    def _grant_paid(self, e: Grant.Paid) -> None:
        self._grant(e).paid += e.amount

    @handles(Grant.PaymentReturned)
    def _grant_payment_returned(self, e: Grant.PaymentReturned) -> None:
        self._grant(e).returned += e.amount

    @handles(Grant.ClawbackAssessed)
    def _grant_clawback(self, e: Grant.ClawbackAssessed) -> None:
        self._grant(e).clawed_back += e.amount

    @handles(Payment.Recorded)
    def _paid(self, e: Payment.Recorded) -> None:
        self.payments.create(
            e.payment_id,
            PaymentRow(
                e.grant_id,
                e.talent_id,
                e.fund_year,
                e.programme,
                e.amount,
                e.value_date,
                e.bank_reference,
            ),
        )

    @handles(Payment.Returned)
    def _returned(self, e: Payment.Returned) -> None:
        payment = self.row(self.payments, self.stream().key, lambda r: PaymentRow(**r))
        payment.returned_on = e.returned_on

    @handles(Clawback.Assessed)
    def _assessed(self, e: Clawback.Assessed) -> None:
        self.clawbacks.create(
            e.clawback_id,
            ClawbackRow(
                e.grant_id, e.talent_id, e.fund_year, e.programme, e.amount, self.at.recorded_at
            ),
        )

    @handles(Clawback.Recovered)
    def _recovered(self, e: Clawback.Recovered) -> None:
        key = self.stream().key
        self.row(self.clawbacks, key, lambda r: ClawbackRow(**r)).recovered += e.amount
        self.recoveries.append((key, e.recovery_id, e.amount, e.value_date, e.bank_reference))

    @handles(Reconciliation.Imported)
    def _imported(self, e: Reconciliation.Imported) -> None:
        report = unpack(e.report_packed)
        unmatched = [(b, item) for b in BUCKETS[1:] for item in report[b]]  # not "matched"
        for seq, (bucket, item) in enumerate(unmatched):
            self.reconciliation_lines.append(
                (
                    e.reconciliation_id,
                    seq,
                    bucket,
                    item["bank_reference"],
                    Decimal(item["amount"]),
                    date.fromisoformat(item["value_date"]),
                )
            )
