"""The audit trail: one entry per event, with the ids it involves, its amount, who
recorded it, why, in which request, and its chain hash. Every event has an entry: an
event type this view does not know stops the worker."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ledger.domain.budget import FundYear
from ledger.domain.clawbacks import Clawback
from ledger.domain.grants import Grant
from ledger.domain.keys import ApiKey
from ledger.domain.money import ZERO
from ledger.domain.payments import BankReference, Payment
from ledger.domain.reconciliation import BUCKETS, Reconciliation, unpack
from ledger.domain.runs import DisbursementRun
from ledger.domain.talents import Talent
from ledger.domain.waivers import RentWaiver
from projections.streams import Stream, Streams
from projections.tables import Curs, Table, Writes
from projections.view import View, handles

AUDIT_TRAIL = Table(
    "rm_audit_trail",
    {
        "position": "bigint",
        "recorded_at": "timestamptz NOT NULL",
        "event_type": "text NOT NULL",
        "talent_id": "text",
        "grant_id": "text",
        "payment_id": "text",
        "waiver_id": "text",
        "clawback_id": "text",
        "recovery_id": "text",
        "bank_reference": "text",
        "fund_year": "int",
        "programme": "text",
        "amount": "numeric(20,2)",
        "actor": "text NOT NULL",
        "reason": "text",
        "reference": "text",
        "request_id": "text NOT NULL",
        "hash": "text NOT NULL",
    },
    key=("position",),
    indexes=(("talent_id", "position"), ("fund_year", "position")),
)

#: the column naming each kind of benefit a fund year reserves budget for (a kind
#: without a column of its own is named under `reference`)
BENEFIT_ID_FIELDS = {Grant.KIND: "grant_id", RentWaiver.KIND: "waiver_id"}


class AuditTrail(View):
    NAME = "audit_trail"
    VERSION = 2  # 2: a waiver's apartment, personal data, is no longer repeated here
    TABLES = (AUDIT_TRAIL,)
    FOLDS_EVERY_EVENT = True

    def __init__(self, streams: Streams, *, complete: bool) -> None:
        super().__init__(streams, complete=complete)
        self.entries: list[tuple[Any, ...]] = []

    def size(self) -> int:
        return 0

    def write(self, out: Writes, curs: Curs) -> None:
        out.copy(curs, AUDIT_TRAIL, self.entries)
        self.entries = []

    def _entry(
        self,
        event: Any,
        talent_id: str | None = None,
        grant_id: str | None = None,
        payment_id: str | None = None,
        waiver_id: str | None = None,
        clawback_id: str | None = None,
        recovery_id: str | None = None,
        bank_reference: str | None = None,
        fund_year: int | None = None,
        programme: str | None = None,
        amount: Decimal | None = None,
        reason: str | None = None,
        reference: str | None = None,
    ) -> None:
        """An entry in the table's column order (a tuple built at once: one per event)."""
        at = self.at
        self.entries.append(
            (
                at.position,
                at.recorded_at,
                type(event).__qualname__,
                talent_id,
                grant_id,
                payment_id,
                waiver_id,
                clawback_id,
                recovery_id,
                bank_reference,
                fund_year,
                programme,
                amount,
                event.actor,
                reason,
                reference,
                event.request_id,
                at.hash,
            )
        )

    def _of(self, event: Any, s: Stream, id_field: str, **named: Any) -> None:
        """An entry of an aggregate charged to a line: its key under `id_field`."""
        ids: dict[str, Any] = {id_field: s.key}
        self._entry(
            event, talent_id=s.talent_id, fund_year=s.year, programme=s.programme, **ids, **named
        )

    # --- fund years -------------------------------------------------------------------

    @handles(FundYear.Opened)
    def _opened(self, e: FundYear.Opened) -> None:
        self._entry(e, fund_year=e.year)

    @handles(FundYear.Appropriated)
    def _appropriated(self, e: FundYear.Appropriated) -> None:
        year = self.stream().year
        self._entry(
            e, fund_year=year, programme=e.programme, amount=e.amount, reference=e.reference
        )

    @handles(FundYear.Reserved, FundYear.Released)
    def _budget(self, e: FundYear.Reserved | FundYear.Released) -> None:
        self._entry(
            e,
            **{BENEFIT_ID_FIELDS.get(e.benefit, "reference"): e.benefit_id},
            fund_year=self.stream().year,
            programme=e.programme,
            amount=e.amount,
        )

    @handles(FundYear.Closed)
    def _closed(self, e: FundYear.Closed) -> None:
        self._entry(e, fund_year=self.stream().year, reason=e.reason)

    # --- talents ------------------------------------------------------------------------

    @handles(Talent.Registered)
    def _registered(self, e: Talent.Registered) -> None:
        self._entry(e, talent_id=e.talent_id)

    @handles(Talent.Departed)
    def _departed(self, e: Talent.Departed) -> None:
        self._entry(e, talent_id=self.stream().key, reason=e.reason)

    @handles(Talent.PersonalDataErased)
    def _erased(self, e: Talent.PersonalDataErased) -> None:
        self._entry(e, talent_id=self.stream().key)

    # --- grants -------------------------------------------------------------------------

    @handles(Grant.Proposed)
    def _proposed(self, e: Grant.Proposed) -> None:
        s = self.stream()
        self._of(e, s, "grant_id", amount=e.amount, reason=e.reason, reference=e.policy_reference)

    @handles(Grant.Approved)
    def _approved(self, e: Grant.Approved) -> None:
        s = self.stream()
        self._of(e, s, "grant_id", amount=s.amount, reason=e.note)

    @handles(Grant.Rejected)
    def _rejected(self, e: Grant.Rejected) -> None:
        s = self.stream()
        self._of(e, s, "grant_id", amount=s.amount, reason=e.reason)

    @handles(Grant.Revoked)
    def _revoked(self, e: Grant.Revoked) -> None:
        self._of(e, self.stream(), "grant_id", amount=e.released, reason=e.reason)

    @handles(Grant.Paid, Grant.PaymentReturned)
    def _grant_money(self, e: Grant.Paid | Grant.PaymentReturned) -> None:
        self._of(e, self.stream(), "grant_id", amount=e.amount, payment_id=e.payment_id)

    @handles(Grant.Held)
    def _grant_held(self, e: Grant.Held) -> None:
        numbers = ", ".join(str(n) for n in e.instalments)
        amount = sum(e.amounts, ZERO)
        s = self.stream()
        self._of(
            e, s, "grant_id", amount=amount, reference=e.run_id, reason=f"instalments {numbers}"
        )

    @handles(Grant.Released)
    def _grant_released(self, e: Grant.Released) -> None:
        s = self.stream()
        reason = f"instalment {e.instalment}"
        self._of(e, s, "grant_id", amount=e.amount, reference=e.run_id, reason=reason)

    @handles(Grant.ClawbackAssessed)
    def _grant_clawback(self, e: Grant.ClawbackAssessed) -> None:
        self._of(e, self.stream(), "grant_id", amount=e.amount, clawback_id=e.clawback_id)

    # --- payments, waivers, clawbacks, bank references, reconciliations ----------------

    @handles(Payment.Recorded)
    def _paid(self, e: Payment.Recorded) -> None:
        s = self.stream()
        self._of(
            e,
            s,
            "payment_id",
            grant_id=e.grant_id,
            bank_reference=e.bank_reference,
            amount=e.amount,
        )

    @handles(Payment.Returned)
    def _returned(self, e: Payment.Returned) -> None:
        s = self.stream()
        self._of(e, s, "payment_id", amount=s.amount, reason=e.reason)

    @handles(RentWaiver.Granted)
    def _waived(self, e: RentWaiver.Granted) -> None:
        self._of(e, self.stream(), "waiver_id", amount=e.value)

    @handles(RentWaiver.Ended)
    def _waiver_ended(self, e: RentWaiver.Ended) -> None:
        self._of(e, self.stream(), "waiver_id", amount=e.released)

    @handles(Clawback.Assessed)
    def _assessed(self, e: Clawback.Assessed) -> None:
        s = self.stream()
        self._of(e, s, "clawback_id", grant_id=e.grant_id, amount=e.amount, reason=e.reason)

    @handles(Clawback.Recovered)
    def _recovered(self, e: Clawback.Recovered) -> None:
        s = self.stream()
        self._of(
            e,
            s,
            "clawback_id",
            recovery_id=e.recovery_id,
            bank_reference=e.bank_reference,
            amount=e.amount,
        )

    @handles(BankReference.Claimed)
    def _claimed(self, e: BankReference.Claimed) -> None:
        self._entry(
            e,
            payment_id=e.payment_id,
            clawback_id=e.clawback_id,
            recovery_id=e.recovery_id,
            bank_reference=e.bank_reference,
        )

    # --- keys ----------------------------------------------------------------------------

    @handles(ApiKey.Issued)
    def _key_issued(self, e: ApiKey.Issued) -> None:
        until = f", until {e.expires_at.isoformat()}" if e.expires_at else ""
        self._entry(e, reference=e.name, reason=f"roles: {', '.join(e.roles)}{until}")

    @handles(ApiKey.Revoked)
    def _key_revoked(self, e: ApiKey.Revoked) -> None:
        self._entry(e, reference=self.stream().key)

    # --- disbursement runs ------------------------------------------------------------------

    @handles(DisbursementRun.Prepared)
    def _run_prepared(self, e: DisbursementRun.Prepared) -> None:
        total = sum((Decimal(item[4]) for item in e.items), ZERO)
        self._entry(
            e,
            fund_year=e.fund_year,
            programme=e.programme,
            amount=total,
            reference=e.run_id,
            reason=f"{len(e.items)} items due by {e.due_on}, paid on {e.value_date}",
        )

    @handles(DisbursementRun.Settled)
    def _run_settled(self, e: DisbursementRun.Settled) -> None:
        self._entry(
            e,
            reference=self.stream().key,
            reason=f"{len(e.settled)} settled, {len(e.rejected)} rejected",
        )

    @handles(Reconciliation.Imported)
    def _imported(self, e: Reconciliation.Imported) -> None:
        report = unpack(e.report_packed)
        counts = ", ".join(f"{b} {len(report[b])}" for b in BUCKETS)
        self._entry(e, reason=f"{report['line_count']} lines: {counts}", reference=e.sha256)
