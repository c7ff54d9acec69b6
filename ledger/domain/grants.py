"""Cash grants: proposed (budget reserved), approved by another person, paid."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.domain import event

from ledger.domain.base import LedgerAggregate, stream_id
from ledger.domain.budget import FundYear, LineKind
from ledger.domain.clawbacks import Clawback
from ledger.domain.context import actor_cvar
from ledger.domain.errors import (
    ClawbackExceedsPaid,
    InvalidState,
    Overpayment,
    SelfApproval,
    SeparationOfDuties,
)
from ledger.domain.instalments import Instalment, InstalmentPlan, schedule
from ledger.domain.money import ZERO
from ledger.domain.payments import Payment

#: the time zone approvals were recorded in before they recorded their business date
#: (the default of LEDGER_TIMEZONE, which no deployment had changed then)
_FIRST_TIMEZONE = ZoneInfo("Asia/Shanghai")


def effective_amount(status: str, amount: Decimal, net_paid: Decimal) -> Decimal:
    """What a grant holds of its line's budget: its amount; none once rejected, its net
    paid once revoked."""
    if status == "rejected":
        return ZERO
    if status == "revoked":
        return net_paid
    return amount


def payable(status: str, amount: Decimal, net_paid: Decimal, on_hold: Decimal) -> Decimal:
    """What may still be paid on a grant: only an approved one's unpaid amount, less
    what disbursement runs hold of it (the bank may be paying that already)."""
    return amount - net_paid - on_hold if status == "approved" else ZERO


class Grant(LedgerAggregate):
    """A cash grant (a `Benefit` of a cash line): proposed, approved by another person
    than its proposer, paid up to its amount."""

    KIND: ClassVar[str] = "grant"
    LINE_KIND: ClassVar[LineKind] = LineKind.CASH

    @staticmethod
    def create_id(grant_id: str) -> UUID:
        return stream_id("grants", grant_id)

    class Proposed(LedgerAggregate.Created):
        class_version = 2  # 2: the instalment plan, which v1 had not
        grant_id: str
        talent_id: str
        fund_year: int
        programme: str
        amount: Decimal
        policy_reference: str
        reason: str
        fingerprint: str
        instalments: dict[str, Any] | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["instalments"] = None

    @event(Proposed)
    def __init__(
        self,
        grant_id: str,
        talent_id: str,
        fund_year: int,
        programme: str,
        amount: Decimal,
        policy_reference: str,
        reason: str,
        fingerprint: str,
        instalments: dict[str, Any] | None = None,
        actor: str = "",
    ) -> None:
        self.grant_id = grant_id
        self.talent_id = talent_id
        self.fund_year = fund_year
        self.programme = programme
        self.amount = amount
        self.policy_reference = policy_reference
        self.reason = reason
        self.fingerprint = fingerprint
        self.proposed_by = actor
        self.plan = InstalmentPlan(**instalments) if instalments else None
        self.status = "proposed"
        self.approved_on: date | None = None
        # what open disbursement runs hold of it, by run and instalment: theirs to pay
        self.held: dict[str, dict[int, Decimal]] = {}
        self.decision_by: str | None = None
        self.decision_note: str | None = None
        self.paid = ZERO
        self.returned = ZERO
        self.clawed_back = ZERO

    @property
    def benefit_id(self) -> str:
        return self.grant_id

    @property
    def reserved(self) -> Decimal:
        return self.amount

    @property
    def in_year_dates(self) -> dict[str, date]:
        return {}

    @property
    def net_paid(self) -> Decimal:
        return self.paid - self.returned

    @property
    def effective_amount(self) -> Decimal:
        return effective_amount(self.status, self.amount, self.net_paid)

    @property
    def on_hold(self) -> Decimal:
        return sum((a for holding in self.held.values() for a in holding.values()), ZERO)

    @property
    def payable(self) -> Decimal:
        return payable(self.status, self.amount, self.net_paid, self.on_hold)

    def _repeat(self, status: str, note: str | None) -> bool:
        """True when the grant is already `status` for this very note: answer, record nothing."""
        if self.status != status:
            return False
        if note != self.decision_note:
            raise InvalidState(f"grant {self.grant_id} is already {status}")
        return True

    def _require(self, status: str, action: str) -> None:
        if self.status != status:
            raise InvalidState(f"cannot {action} grant {self.grant_id}: it is {self.status}")

    class Approved(LedgerAggregate.Event):
        class_version = 2  # 2: the business date of the approval, which v1 had not
        note: str | None
        approved_on: date

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["approved_on"] = state["timestamp"].astimezone(_FIRST_TIMEZONE).date()

    def approve(self, note: str | None, today: date) -> None:
        """Approved by whoever is acting (`ledger.domain.context`), never its proposer,
        on the business date `today` (when an instalment without a plan falls due)."""
        if self._repeat("approved", note):
            return
        self._require("proposed", "approve")
        approver = actor_cvar.get()
        if approver == self.proposed_by:
            raise SelfApproval(f"{approver} proposed grant {self.grant_id} and cannot approve it")
        self._approved(note, today)

    @event(Approved)
    def _approved(self, note: str | None, approved_on: date, actor: str = "") -> None:
        self.status = "approved"
        self.approved_on = approved_on
        self.decision_note = note
        self.decision_by = actor

    @property
    def instalments(self) -> list[Instalment]:
        """Its instalments, net payments filling them earliest first."""
        return schedule(self.amount, self.plan, self.approved_on, self.net_paid)

    def payable_instalments(self, due_on: date) -> list[Instalment]:
        """What a disbursement run may take of an approved grant: of each instalment due
        by `due_on`, what net payments (filling instalments earliest first) and the
        runs holding it leave unpaid; in all, no more than what is due by then less
        what is paid and what runs hold of it (a run settled out of order paid an
        earlier instalment with a later one's money: that money is not free again)."""
        if self.status != "approved":
            return []
        held: dict[int, Decimal] = {}
        for holding in self.held.values():
            for number, amount in holding.items():
                held[number] = held.get(number, ZERO) + amount
        due = [i for i in self.instalments if i.due_on is not None and i.due_on <= due_on]
        owed = sum((i.amount for i in due), ZERO) - self.net_paid
        left = min(self.payable, owed - sum((held.get(i.number, ZERO) for i in due), ZERO))
        free = []
        for i in due:
            take = min(i.unpaid - held.get(i.number, ZERO), left)
            if take > ZERO:
                free.append(i._replace(paid=i.amount - take))
                left -= take
        return free

    class Held(LedgerAggregate.Event):
        run_id: str
        instalments: list[int]
        amounts: list[Decimal]

    def hold(self, run_id: str, instalments: list[Instalment]) -> None:
        """Put what is left of instalments in a disbursement run: until it is settled or
        rejected, no other run and no payment outside the run may take that money."""
        self._held(run_id, [i.number for i in instalments], [i.unpaid for i in instalments])

    @event(Held)
    def _held(self, run_id: str, instalments: list[int], amounts: list[Decimal]) -> None:
        holding = self.held.setdefault(run_id, {})
        for number, amount in zip(instalments, amounts, strict=True):
            holding[number] = holding.get(number, ZERO) + amount

    class Released(LedgerAggregate.Event):
        run_id: str
        instalment: int
        amount: Decimal

    def release(self, run_id: str, instalment: int, amount: Decimal) -> None:
        """Take an item's money out of its run once the bank settled (it is then paid)
        or rejected it (it is then due again)."""
        if self.held.get(run_id, {}).get(instalment, ZERO) < amount:
            raise InvalidState(f"run {run_id} does not hold {amount} of grant {self.grant_id}")
        self._released(run_id, instalment, amount)

    @event(Released)
    def _released(self, run_id: str, instalment: int, amount: Decimal) -> None:
        holding = self.held[run_id]
        holding[instalment] -= amount
        if not holding[instalment]:
            del holding[instalment]
        if not holding:
            del self.held[run_id]

    class Rejected(LedgerAggregate.Event):
        reason: str

    def reject(self, reason: str, budget: FundYear) -> None:
        """Reject a proposal: its whole amount goes back to the budget."""
        if self._repeat("rejected", reason):
            return
        self._require("proposed", "reject")
        self._rejected(reason)
        budget.release(self, self.amount)

    @event(Rejected)
    def _rejected(self, reason: str, actor: str = "") -> None:
        self.status = "rejected"
        self.decision_note = reason
        self.decision_by = actor

    class Revoked(LedgerAggregate.Event):
        reason: str
        released: Decimal

    def revoke(self, reason: str, budget: FundYear) -> None:
        """Revoke an approved grant: nothing more is payable, the unpaid remainder goes
        back to the budget."""
        if self._repeat("revoked", reason):
            return
        self._require("approved", "revoke")
        if self.held:
            raise InvalidState(
                f"runs {', '.join(sorted(self.held))} hold {self.on_hold} of grant "
                f"{self.grant_id}: settle or reject their items first"
            )
        released = self.amount - self.net_paid
        self._revoked(reason, released)
        budget.release(self, released)

    @event(Revoked)
    def _revoked(self, reason: str, released: Decimal, actor: str = "") -> None:
        self.status = "revoked"
        self.decision_note = reason
        self.decision_by = actor

    class Paid(LedgerAggregate.Event):
        payment_id: str
        amount: Decimal

    def pay(
        self,
        payment_id: str,
        amount: Decimal,
        value_date: date,
        bank_reference: str,
        fingerprint: str,
    ) -> Payment:
        """Pay up to what is payable; answers the new payment."""
        self._require("approved", "pay")
        payer = actor_cvar.get()
        if payer == self.decision_by:
            raise SeparationOfDuties(
                f"{payer} approved grant {self.grant_id} and cannot also pay it"
            )
        if amount > self.payable:
            raise Overpayment(
                f"grant {self.grant_id} has {self.payable} payable, {amount} requested"
            )
        self._paid(payment_id, amount)
        return Payment(
            payment_id,
            self.grant_id,
            self.talent_id,
            self.fund_year,
            self.programme,
            amount,
            value_date,
            bank_reference,
            fingerprint,
        )

    @event(Paid)
    def _paid(self, payment_id: str, amount: Decimal) -> None:
        self.paid += amount

    class PaymentReturned(LedgerAggregate.Event):
        payment_id: str
        amount: Decimal
        released: Decimal

    def return_payment(
        self, payment: Payment, returned_on: date, reason: str, budget: FundYear
    ) -> None:
        """A bank return of one of its payments: the amount is payable again, or on a
        revoked grant leaves the budget instead. The same return again records nothing."""
        if not payment.return_(returned_on, reason):
            return
        released = payment.amount if self.status == "revoked" else ZERO
        self._payment_returned(payment.payment_id, payment.amount, released)
        budget.release(self, released)

    @event(PaymentReturned)
    def _payment_returned(self, payment_id: str, amount: Decimal, released: Decimal) -> None:
        self.returned += amount

    class ClawbackAssessed(LedgerAggregate.Event):
        clawback_id: str
        amount: Decimal

    def assess_clawback(
        self, clawback_id: str, amount: Decimal, reason: str, fingerprint: str
    ) -> Clawback:
        """Claim back at most what was net paid and not claimed yet; answers the clawback."""
        claimable = self.net_paid - self.clawed_back
        if amount > claimable:
            raise ClawbackExceedsPaid(
                f"grant {self.grant_id} has {claimable} net paid not yet clawed back, "
                f"{amount} assessed"
            )
        self._clawback_assessed(clawback_id, amount)
        return Clawback(
            clawback_id,
            self.grant_id,
            self.talent_id,
            self.fund_year,
            self.programme,
            amount,
            reason,
            fingerprint,
        )

    @event(ClawbackAssessed)
    def _clawback_assessed(self, clawback_id: str, amount: Decimal) -> None:
        self.clawed_back += amount
