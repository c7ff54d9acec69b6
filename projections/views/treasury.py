"""The resources as they stand: grants, payments, rent waivers, clawbacks and their
recoveries, and reconciliations with every statement line they did not match. What
the lists page through (each row knows the position it was created at), what
reconciliation matches against, and what the reports judge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson

from ledger.domain.clawbacks import Clawback
from ledger.domain.grants import Grant
from ledger.domain.money import ZERO
from ledger.domain.payments import Payment
from ledger.domain.reconciliation import BUCKETS, CLAIMING, Reconciliation, unpack
from ledger.domain.runs import DisbursementRun
from ledger.domain.waivers import RentWaiver
from projections.streams import Streams
from projections.tables import AMOUNT, Curs, Table, Writes
from projections.view import Rows, View, handles, keyed

GRANTS = Table(
    "rm_grants",
    {
        "grant_id": "text",
        "position": "bigint NOT NULL",
        "talent_id": "text NOT NULL",
        "year": "int NOT NULL",
        "programme": "text NOT NULL",
        "amount": AMOUNT,
        "policy_reference": "text NOT NULL",
        "reason": "text NOT NULL",
        "proposed_by": "text NOT NULL",
        "status": "text NOT NULL",
        "approved_at": "timestamptz",
        "decision_by": "text",
        "decision_note": "text",
        "paid": AMOUNT,
        "returned": AMOUNT,
        "clawed_back": AMOUNT,
        # the instalment plan (none: one instalment, due on approved_on)
        "instalment_count": "int",
        "first_due_on": "date",
        "interval_months": "int",
        "approved_on": "date",
        "held": AMOUNT,  # what open disbursement runs hold of it
    },
    key=("grant_id",),
    indexes=(
        ("position",),
        ("year", "position"),
        ("talent_id", "position"),
        ("status", "position"),
    ),
)
PAYMENTS = Table(
    "rm_payments",
    {
        "payment_id": "text",
        "position": "bigint NOT NULL",
        "grant_id": "text NOT NULL",
        "talent_id": "text NOT NULL",
        "year": "int NOT NULL",
        "programme": "text NOT NULL",
        "amount": AMOUNT,
        "value_date": "date NOT NULL",
        "bank_reference": "text NOT NULL",
        "returned_on": "date",
        "return_reason": "text",
    },
    key=("payment_id",),
    indexes=(
        ("position",),
        ("bank_reference",),
        ("value_date",),
        ("year", "position"),
        ("talent_id", "position"),
        ("grant_id", "position"),
    ),
)
WAIVERS = Table(
    "rm_waivers",
    {
        "waiver_id": "text",
        "position": "bigint NOT NULL",
        "talent_id": "text NOT NULL",
        "year": "int NOT NULL",
        "programme": "text NOT NULL",
        "apartment": "text NOT NULL",
        "start_on": "date NOT NULL",
        "end_on": "date NOT NULL",
        "monthly_rent": AMOUNT,
        "months": "int NOT NULL",
        "value": AMOUNT,
        "ended_on": "date",
    },
    key=("waiver_id",),
    indexes=(("position",), ("year", "position"), ("talent_id", "position")),
)
CLAWBACKS = Table(
    "rm_clawbacks",
    {
        "clawback_id": "text",
        "position": "bigint NOT NULL",
        "grant_id": "text NOT NULL",
        "talent_id": "text NOT NULL",
        "year": "int NOT NULL",
        "programme": "text NOT NULL",
        "amount": AMOUNT,
        "reason": "text NOT NULL",
        "assessed_at": "timestamptz NOT NULL",
        "recovered": AMOUNT,
    },
    key=("clawback_id",),
    indexes=(("position",), ("year", "position"), ("talent_id", "position")),
)
RECOVERIES = Table(
    "rm_recoveries",
    {
        "clawback_id": "text",
        "recovery_id": "text",
        "position": "bigint NOT NULL",
        "amount": AMOUNT,
        "value_date": "date NOT NULL",
        "bank_reference": "text NOT NULL",
    },
    key=("clawback_id", "recovery_id"),
    indexes=(("bank_reference",),),
)
RECONCILIATIONS = Table(
    "rm_reconciliations",
    {
        "reconciliation_id": "text",
        "position": "bigint NOT NULL",
        "period_from": "date NOT NULL",
        "period_to": "date NOT NULL",
        "line_count": "int NOT NULL",
        **dict.fromkeys(BUCKETS, "int NOT NULL"),
        "recorded_at": "timestamptz NOT NULL",
        # what a statement with balances states (camt.053, MT940); null for a CSV one
        "account": "text",
        "opening": "numeric(20,2)",  # signed: negative for a debit balance
        "opening_on": "date",
        "closing": "numeric(20,2)",
        "closing_on": "date",
    },
    key=("reconciliation_id",),
    indexes=(("position",), ("period_to", "period_from"), ("account", "closing_on")),
)
# every payment a statement line claimed (matched, or with another amount or date):
# it has its line in the bank, and is no candidate for another
RECONCILED_PAYMENTS = Table(
    "rm_reconciled_payments",
    {"payment_id": "text", "reconciliation_id": "text"},
    key=("payment_id", "reconciliation_id"),
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

RUNS = Table(
    "rm_disbursement_runs",
    {
        "run_id": "text",
        "position": "bigint NOT NULL",
        "year": "int",
        "programme": "text",
        "due_on": "date NOT NULL",
        "value_date": "date NOT NULL",
        "items": "int NOT NULL",
        "total": AMOUNT,
        "excluded": "text NOT NULL",
        "settled": "int NOT NULL",
        "rejected": "int NOT NULL",
    },
    key=("run_id",),
    indexes=(("position",), ("year", "position")),
)
# a run's items, and apart the bank's answer to each (what the overdue rule judges):
# both only ever appended, so that settling 10,000 items loads no row of either
RUN_ITEMS = Table(
    "rm_disbursement_run_items",
    {
        "payment_id": "text",
        "run_id": "text NOT NULL",
        "grant_id": "text NOT NULL",
        "talent_id": "text NOT NULL",
        "amount": AMOUNT,
        "value_date": "date NOT NULL",
    },
    key=("payment_id",),
    indexes=(("value_date",),),
)
RUN_ANSWERS = Table(
    "rm_disbursement_run_answers",
    {"payment_id": "text", "status": "text NOT NULL"},  # settled or rejected
    key=("payment_id",),
)


@dataclass
class GrantRow:
    position: int
    talent_id: str
    year: int
    programme: str
    amount: Decimal
    policy_reference: str
    reason: str
    proposed_by: str
    status: str = "proposed"
    approved_at: datetime | None = None
    decision_by: str | None = None
    decision_note: str | None = None
    paid: Decimal = ZERO
    returned: Decimal = ZERO
    clawed_back: Decimal = ZERO
    instalment_count: int | None = None
    first_due_on: date | None = None
    interval_months: int | None = None
    approved_on: date | None = None
    held: Decimal = ZERO


@dataclass
class RunRow:
    position: int
    year: int | None
    programme: str | None
    due_on: date
    value_date: date
    items: int
    total: Decimal
    excluded: str  # JSON: [{"grant_id", "reason"}]
    settled: int = 0
    rejected: int = 0


@dataclass
class PaymentRow:
    position: int
    grant_id: str
    talent_id: str
    year: int
    programme: str
    amount: Decimal
    value_date: date
    bank_reference: str
    returned_on: date | None = None
    return_reason: str | None = None


@dataclass
class WaiverRow:
    position: int
    talent_id: str
    year: int
    programme: str
    apartment: str
    start_on: date
    end_on: date
    monthly_rent: Decimal
    months: int
    value: Decimal
    ended_on: date | None = None


@dataclass
class ClawbackRow:
    position: int
    grant_id: str
    talent_id: str
    year: int
    programme: str
    amount: Decimal
    reason: str
    assessed_at: datetime
    recovered: Decimal = ZERO


class Treasury(View):
    NAME = "treasury"
    # 2: what the lists show, and waivers and reconciliations; 3: runs, plans, and a
    # statement's account and balances and the payments statements claimed
    VERSION = 3
    TABLES = (
        GRANTS,
        PAYMENTS,
        WAIVERS,
        CLAWBACKS,
        RECOVERIES,
        RECONCILIATIONS,
        RECONCILIATION_LINES,
        RECONCILED_PAYMENTS,
        RUNS,
        RUN_ITEMS,
        RUN_ANSWERS,
    )

    def __init__(self, streams: Streams, *, complete: bool) -> None:
        super().__init__(streams, complete=complete)
        self.grants: Rows[str, GrantRow] = Rows(GRANTS, keyed(GrantRow))
        self.payments: Rows[str, PaymentRow] = Rows(PAYMENTS, keyed(PaymentRow))
        self.waivers: Rows[str, WaiverRow] = Rows(WAIVERS, keyed(WaiverRow))
        self.clawbacks: Rows[str, ClawbackRow] = Rows(CLAWBACKS, keyed(ClawbackRow))
        self.runs: Rows[str, RunRow] = Rows(RUNS, keyed(RunRow))
        self.run_items: list[tuple[Any, ...]] = []
        self.run_answers: list[tuple[Any, ...]] = []
        self.recoveries: list[tuple[Any, ...]] = []
        self.reconciliations: list[tuple[Any, ...]] = []
        self.reconciliation_lines: list[tuple[Any, ...]] = []
        self.reconciled_payments: list[tuple[Any, ...]] = []

    def size(self) -> int:
        return sum(
            len(rows.rows)
            for rows in (
                self.grants,
                self.payments,
                self.waivers,
                self.clawbacks,
                self.runs,
            )
        )

    def write(self, out: Writes, curs: Curs) -> None:
        self.grants.write(out, curs)
        self.payments.write(out, curs)
        self.waivers.write(out, curs)
        self.clawbacks.write(out, curs)
        self.runs.write(out, curs)
        out.copy(curs, RECOVERIES, self.recoveries)
        out.copy(curs, RECONCILIATIONS, self.reconciliations)
        out.copy(curs, RECONCILIATION_LINES, self.reconciliation_lines)
        out.copy(curs, RECONCILED_PAYMENTS, self.reconciled_payments)
        out.copy(curs, RUN_ITEMS, self.run_items)
        out.copy(curs, RUN_ANSWERS, self.run_answers)
        self.reconciled_payments, self.run_items, self.run_answers = [], [], []
        self.recoveries, self.reconciliations, self.reconciliation_lines = [], [], []

    def _grant(self) -> GrantRow:
        return self.row(self.grants, self.stream().key, lambda r: GrantRow(**r))

    @handles(Grant.Proposed)
    def _proposed(self, e: Grant.Proposed) -> None:
        plan = e.instalments or {}
        self.grants.create(
            e.grant_id,
            GrantRow(
                self.at.position,
                e.talent_id,
                e.fund_year,
                e.programme,
                e.amount,
                e.policy_reference,
                e.reason,
                e.actor,
                instalment_count=plan.get("count"),
                first_due_on=plan.get("first_due_on"),
                interval_months=plan.get("interval_months"),
            ),
        )

    def _decided(self, status: str, note: str | None, actor: str) -> GrantRow:
        grant = self._grant()
        grant.status, grant.decision_note, grant.decision_by = status, note, actor
        return grant

    @handles(Grant.Approved)
    def _approved(self, e: Grant.Approved) -> None:
        grant = self._decided("approved", e.note, e.actor)
        grant.approved_at, grant.approved_on = self.at.recorded_at, e.approved_on

    @handles(Grant.Held)
    def _held(self, e: Grant.Held) -> None:
        self._grant().held += sum(e.amounts, ZERO)

    @handles(Grant.Released)
    def _released(self, e: Grant.Released) -> None:
        self._grant().held -= e.amount

    @handles(DisbursementRun.Prepared)
    def _run_prepared(self, e: DisbursementRun.Prepared) -> None:
        self.runs.create(
            e.run_id,
            RunRow(
                self.at.position,
                e.fund_year,
                e.programme,
                e.due_on,
                e.value_date,
                len(e.items),
                sum((Decimal(item[4]) for item in e.items), ZERO),
                orjson.dumps(e.excluded).decode(),
            ),
        )
        self.run_items += [
            (payment_id, e.run_id, grant_id, talent_id, amount, e.value_date)
            for payment_id, grant_id, talent_id, _, amount in e.items
        ]

    @handles(DisbursementRun.Settled)
    def _run_settled(self, e: DisbursementRun.Settled) -> None:
        run = self.row(self.runs, self.stream().key, lambda r: RunRow(**r))
        run.settled += len(e.settled)
        run.rejected += len(e.rejected)
        self.run_answers += [(payment_id, "settled") for payment_id in e.settled]
        self.run_answers += [(payment_id, "rejected") for payment_id in e.rejected]

    @handles(Grant.Rejected)
    def _rejected(self, e: Grant.Rejected) -> None:
        self._decided("rejected", e.reason, e.actor)

    @handles(Grant.Revoked)
    def _revoked(self, e: Grant.Revoked) -> None:
        self._decided("revoked", e.reason, e.actor)

    @handles(Grant.Paid)
    def _grant_paid(self, e: Grant.Paid) -> None:
        self._grant().paid += e.amount

    @handles(Grant.PaymentReturned)
    def _grant_payment_returned(self, e: Grant.PaymentReturned) -> None:
        self._grant().returned += e.amount

    @handles(Grant.ClawbackAssessed)
    def _grant_clawback(self, e: Grant.ClawbackAssessed) -> None:
        self._grant().clawed_back += e.amount

    @handles(Payment.Recorded)
    def _paid(self, e: Payment.Recorded) -> None:
        self.payments.create(
            e.payment_id,
            PaymentRow(
                self.at.position,
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
        payment.returned_on, payment.return_reason = e.returned_on, e.reason

    @handles(RentWaiver.Granted)
    def _waived(self, e: RentWaiver.Granted) -> None:
        self.waivers.create(
            e.waiver_id,
            WaiverRow(
                self.at.position,
                e.talent_id,
                e.fund_year,
                e.programme,
                e.apartment,
                e.start_on,
                e.end_on,
                e.monthly_rent,
                e.months,
                e.value,
            ),
        )

    @handles(RentWaiver.Ended)
    def _waiver_ended(self, e: RentWaiver.Ended) -> None:
        waiver = self.row(self.waivers, self.stream().key, lambda r: WaiverRow(**r))
        waiver.ended_on, waiver.months = e.ended_on, e.months
        waiver.value -= e.released

    @handles(Clawback.Assessed)
    def _assessed(self, e: Clawback.Assessed) -> None:
        self.clawbacks.create(
            e.clawback_id,
            ClawbackRow(
                self.at.position,
                e.grant_id,
                e.talent_id,
                e.fund_year,
                e.programme,
                e.amount,
                e.reason,
                self.at.recorded_at,
            ),
        )

    @handles(Clawback.Recovered)
    def _recovered(self, e: Clawback.Recovered) -> None:
        key = self.stream().key
        self.row(self.clawbacks, key, lambda r: ClawbackRow(**r)).recovered += e.amount
        self.recoveries.append(
            (key, e.recovery_id, self.at.position, e.amount, e.value_date, e.bank_reference)
        )

    @handles(Reconciliation.Imported)
    def _imported(self, e: Reconciliation.Imported) -> None:
        report = unpack(e.report_packed)
        period = report["period"]
        self.reconciliations.append(
            (
                e.reconciliation_id,
                self.at.position,
                date.fromisoformat(period["from"]),
                date.fromisoformat(period["to"]),
                report["line_count"],
                *(len(report[bucket]) for bucket in BUCKETS),
                self.at.recorded_at,
                e.account,
                e.opening,
                e.opening_on,
                e.closing,
                e.closing_on,
            )
        )
        self.reconciled_payments += sorted(
            {
                (item["ledger"]["payment_id"], e.reconciliation_id)
                for bucket in CLAIMING
                for item in report[bucket]
                if item["ledger"]["kind"] == "payment"
            }
        )
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
