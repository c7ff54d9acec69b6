"""Aggregates of the talent fund: every change is a past-tense event, never an update.

Public methods check the rules and raise a `LedgerError`; the private `@event`
methods only assign state, because they run again each time an aggregate is
rebuilt from its events. Ids are derived from the client's business keys, so the
same key always names the same stream and a second create collides in the store.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger.context import actor_cvar, request_id_cvar
from ledger.errors import (
    BudgetExceeded,
    ClawbackExceedsPaid,
    FundYearClosed,
    InvalidState,
    Overpayment,
    SelfApproval,
    ValidationFailed,
)
from ledger.money import ZERO
from ledger.reconciliation import unpack


@lru_cache(maxsize=65_536)  # a hash per call, and each command names its streams often
def stream_id(kind: str, key: str) -> UUID:
    """The aggregate id of a business key, e.g. `stream_id("grants", "G-1")`."""
    return uuid5(NAMESPACE_URL, f"/{kind}/{key}")


def calendar_months(start: date, end: date) -> int:
    """Calendar months from `start` to `end`, both included, a part month counting whole."""
    return (end.year - start.year) * 12 + end.month - start.month + 1


class LedgerAggregate(Aggregate):
    """Stamps every event with who recorded it and in which request.

    The stamp comes from context (`ledger.context`), never from a request body; an
    `@event` method that needs it declares `actor: str = ""` and receives the stamp.
    """

    # whether its history grows without bound, so that a first read is worth
    # doing ahead of a decision's checks (`LedgerApplication.commit`)
    LONG_HISTORY = False

    class Event(Aggregate.Event):
        actor: str
        request_id: str

    class Created(Event, Aggregate.Created):
        pass

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        super().trigger_event(event_class, **_stamped(kwargs))

    @classmethod
    def _create(cls, event_class: Any, **kwargs: Any) -> Any:
        return super()._create(event_class, **_stamped(kwargs))

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        """Copies what can change and shares what cannot (values and recorded events
        are immutable): every command works on copies, so this is on the hot path."""
        clone = object.__new__(type(self))
        state = clone.__dict__
        for name, value in self.__dict__.items():
            if type(value) in _IMMUTABLE:
                state[name] = value
            elif name == "_pending_events":
                state[name] = list(value)
            else:
                state[name] = deepcopy(value, memo)
        return clone


_IMMUTABLE = frozenset({str, int, bool, Decimal, UUID, date, datetime, type(None)})


def _stamped(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {**kwargs, "actor": actor_cvar.get(), "request_id": request_id_cvar.get()}


# --- fund years -----------------------------------------------------------------


@dataclass
class Line:
    """A programme line of one fund year: what may be committed against it."""

    kind: str
    appropriated: Decimal = ZERO
    committed: Decimal = ZERO

    @property
    def available(self) -> Decimal:
        return self.appropriated - self.committed


@dataclass(frozen=True)
class Appropriation:
    appropriation_id: str
    programme: str
    kind: str
    amount: Decimal
    reference: str
    fingerprint: str


class FundYear(LedgerAggregate):
    """One calendar year of the special fund: the boundary of every budget rule."""

    LONG_HISTORY = True  # an event for every grant and waiver of the year

    @staticmethod
    def create_id(year: int) -> UUID:
        return stream_id("fund-years", str(year))

    class Opened(LedgerAggregate.Created):
        year: int
        currency: str
        fingerprint: str

    @event(Opened)
    def __init__(self, year: int, currency: str, fingerprint: str) -> None:
        self.year = year
        self.currency = currency
        self.fingerprint = fingerprint
        self.status = "open"
        self.close_reason: str | None = None
        self.lines: dict[str, Line] = {}
        self.appropriations: dict[str, Appropriation] = {}

    def check_open(self) -> None:
        if self.status == "closed":
            raise FundYearClosed(f"fund year {self.year} is closed")

    def check_date(self, field: str, day: date) -> None:
        if day.year != self.year:
            raise ValidationFailed(field, f"{field} must lie inside fund year {self.year}")

    def line(self, programme: str, kind: str) -> Line:
        """The line charged by a grant (`cash`) or a waiver (`in_kind`)."""
        found = self.lines.get(programme)
        if found is None:
            raise ValidationFailed(
                "programme", f"fund year {self.year} has no programme line {programme!r}"
            )
        if found.kind != kind:
            raise ValidationFailed(
                "programme", f"programme line {programme!r} is {found.kind}, not {kind}"
            )
        return found

    class Appropriated(LedgerAggregate.Event):
        appropriation_id: str
        programme: str
        kind: str
        amount: Decimal
        reference: str
        fingerprint: str

    def appropriate(self, appropriation: Appropriation) -> None:
        self.check_open()
        line = self.lines.get(appropriation.programme)
        if line is not None and line.kind != appropriation.kind:
            raise ValidationFailed(
                "kind", f"programme line {appropriation.programme!r} is {line.kind}"
            )
        self._appropriated(
            appropriation.appropriation_id,
            appropriation.programme,
            appropriation.kind,
            appropriation.amount,
            appropriation.reference,
            appropriation.fingerprint,
        )

    @event(Appropriated)
    def _appropriated(
        self,
        appropriation_id: str,
        programme: str,
        kind: str,
        amount: Decimal,
        reference: str,
        fingerprint: str,
    ) -> None:
        line = self.lines.setdefault(programme, Line(kind=kind))
        line.appropriated += amount
        self.appropriations[appropriation_id] = Appropriation(
            appropriation_id, programme, kind, amount, reference, fingerprint
        )

    class Reserved(LedgerAggregate.Event):
        programme: str
        amount: Decimal
        grant_id: str | None
        waiver_id: str | None

    def reserve(
        self,
        programme: str,
        kind: str,
        amount: Decimal,
        *,
        grant_id: str | None = None,
        waiver_id: str | None = None,
    ) -> None:
        """Commit budget for a new grant or waiver; refuse what the line cannot hold."""
        self.check_open()
        line = self.line(programme, kind)
        if amount > line.available:
            raise BudgetExceeded(
                f"{programme} {self.year} has {line.available} available, {amount} requested"
            )
        self._reserved(programme, amount, grant_id, waiver_id)

    @event(Reserved)
    def _reserved(
        self, programme: str, amount: Decimal, grant_id: str | None, waiver_id: str | None
    ) -> None:
        self.lines[programme].committed += amount

    class Released(LedgerAggregate.Event):
        programme: str
        amount: Decimal
        grant_id: str | None
        waiver_id: str | None

    def release(
        self,
        programme: str,
        amount: Decimal,
        *,
        grant_id: str | None = None,
        waiver_id: str | None = None,
    ) -> None:
        """Give back budget a grant or waiver no longer needs (allowed after closing)."""
        if amount > 0:
            self._released(programme, amount, grant_id, waiver_id)

    @event(Released)
    def _released(
        self, programme: str, amount: Decimal, grant_id: str | None, waiver_id: str | None
    ) -> None:
        self.lines[programme].committed -= amount

    class Closed(LedgerAggregate.Event):
        reason: str

    def close(self, reason: str) -> None:
        if self.status == "closed":
            if reason != self.close_reason:
                raise InvalidState(f"fund year {self.year} is already closed")
            return
        self._closed(reason)

    @event(Closed)
    def _closed(self, reason: str) -> None:
        self.status = "closed"
        self.close_reason = reason


# --- talents ----------------------------------------------------------------------


class Talent(LedgerAggregate):
    """An introduced talent, whose departure can make grants repayable.

    Its name is only ever held sealed (`ledger.personal`): events cannot be erased,
    a destroyed key can."""

    @staticmethod
    def create_id(talent_id: str) -> UUID:
        return stream_id("talents", talent_id)

    class Registered(LedgerAggregate.Created):
        talent_id: str
        sealed_name: str
        category: str
        employer: str
        arrived_on: date
        service_commitment_until: date
        fingerprint: str

    @event(Registered)
    def __init__(
        self,
        talent_id: str,
        sealed_name: str,
        category: str,
        employer: str,
        arrived_on: date,
        service_commitment_until: date,
        fingerprint: str,
    ) -> None:
        self.talent_id = talent_id
        self.sealed_name = sealed_name
        self.category = category
        self.employer = employer
        self.arrived_on = arrived_on
        self.service_commitment_until = service_commitment_until
        self.fingerprint = fingerprint
        self.departed_on: date | None = None
        self.departure_reason: str | None = None
        self.personal_data_erased = False

    @property
    def status(self) -> str:
        return "active" if self.departed_on is None else "departed"

    class Departed(LedgerAggregate.Event):
        departed_on: date
        reason: str

    def depart(self, departed_on: date, reason: str) -> None:
        if self.departed_on is not None:
            if (departed_on, reason) != (self.departed_on, self.departure_reason):
                raise InvalidState(f"talent {self.talent_id} departed on {self.departed_on}")
            return
        if departed_on < self.arrived_on:
            raise ValidationFailed("departed_on", "a talent cannot depart before arriving")
        self._departed(departed_on, reason)

    @event(Departed)
    def _departed(self, departed_on: date, reason: str) -> None:
        self.departed_on = departed_on
        self.departure_reason = reason

    class PersonalDataErased(LedgerAggregate.Event):
        pass

    def record_erasure(self) -> None:
        """Record that the talent's data key was destroyed; once is enough."""
        if not self.personal_data_erased:
            self._personal_data_erased()

    @event(PersonalDataErased)
    def _personal_data_erased(self) -> None:
        self.personal_data_erased = True


# --- grants -----------------------------------------------------------------------


class Grant(LedgerAggregate):
    """A cash grant: proposed (budget reserved), approved by another person, paid."""

    @staticmethod
    def create_id(grant_id: str) -> UUID:
        return stream_id("grants", grant_id)

    class Proposed(LedgerAggregate.Created):
        grant_id: str
        talent_id: str
        fund_year: int
        programme: str
        amount: Decimal
        policy_reference: str
        reason: str
        fingerprint: str

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
        self.status = "proposed"
        self.decision_by: str | None = None
        self.decision_note: str | None = None
        self.paid = ZERO
        self.returned = ZERO
        self.clawed_back = ZERO

    @property
    def net_paid(self) -> Decimal:
        return self.paid - self.returned

    @property
    def effective_amount(self) -> Decimal:
        """What the grant holds of its line's budget (CONTRACT §5)."""
        if self.status == "rejected":
            return ZERO
        if self.status == "revoked":
            return self.net_paid
        return self.amount

    @property
    def payable(self) -> Decimal:
        return self.amount - self.net_paid if self.status == "approved" else ZERO

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
        note: str | None

    def approve(self, note: str | None, approver: str) -> None:
        if self._repeat("approved", note):
            return
        self._require("proposed", "approve")
        if approver == self.proposed_by:
            raise SelfApproval(f"{approver} proposed grant {self.grant_id} and cannot approve it")
        self._approved(note)

    @event(Approved)
    def _approved(self, note: str | None, actor: str = "") -> None:
        self.status = "approved"
        self.decision_note = note
        self.decision_by = actor

    class Rejected(LedgerAggregate.Event):
        reason: str

    def reject(self, reason: str) -> bool:
        """Reject a proposal; True when budget is to be released."""
        if self._repeat("rejected", reason):
            return False
        self._require("proposed", "reject")
        self._rejected(reason)
        return True

    @event(Rejected)
    def _rejected(self, reason: str, actor: str = "") -> None:
        self.status = "rejected"
        self.decision_note = reason
        self.decision_by = actor

    class Revoked(LedgerAggregate.Event):
        reason: str
        released: Decimal

    def revoke(self, reason: str) -> Decimal:
        """Revoke an approved grant; returns the unpaid remainder to release."""
        if self._repeat("revoked", reason):
            return ZERO
        self._require("approved", "revoke")
        released = self.amount - self.net_paid
        self._revoked(reason, released)
        return released

    @event(Revoked)
    def _revoked(self, reason: str, released: Decimal, actor: str = "") -> None:
        self.status = "revoked"
        self.decision_note = reason
        self.decision_by = actor

    class Paid(LedgerAggregate.Event):
        payment_id: str
        amount: Decimal

    def pay(self, payment_id: str, amount: Decimal) -> None:
        self._require("approved", "pay")
        if amount > self.payable:
            raise Overpayment(
                f"grant {self.grant_id} has {self.payable} payable, {amount} requested"
            )
        self._paid(payment_id, amount)

    @event(Paid)
    def _paid(self, payment_id: str, amount: Decimal) -> None:
        self.paid += amount

    class PaymentReturned(LedgerAggregate.Event):
        payment_id: str
        amount: Decimal
        released: Decimal

    def payment_returned(self, payment_id: str, amount: Decimal) -> Decimal:
        """Re-open a returned amount; on a revoked grant it leaves the budget instead."""
        released = amount if self.status == "revoked" else ZERO
        self._payment_returned(payment_id, amount, released)
        return released

    @event(PaymentReturned)
    def _payment_returned(self, payment_id: str, amount: Decimal, released: Decimal) -> None:
        self.returned += amount

    class ClawbackAssessed(LedgerAggregate.Event):
        clawback_id: str
        amount: Decimal

    def assess_clawback(self, clawback_id: str, amount: Decimal) -> None:
        claimable = self.net_paid - self.clawed_back
        if amount > claimable:
            raise ClawbackExceedsPaid(
                f"grant {self.grant_id} has {claimable} net paid not yet clawed back, "
                f"{amount} assessed"
            )
        self._clawback_assessed(clawback_id, amount)

    @event(ClawbackAssessed)
    def _clawback_assessed(self, clawback_id: str, amount: Decimal) -> None:
        self.clawed_back += amount


# --- payments ---------------------------------------------------------------------


class Payment(LedgerAggregate):
    """Money sent by the bank against an approved grant."""

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
    """Claims a bank reference for one payment or recovery, so that no other can use it."""

    @staticmethod
    def create_id(bank_reference: str) -> UUID:
        return stream_id("bank-references", bank_reference)

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


# --- rent waivers -----------------------------------------------------------------


class RentWaiver(LedgerAggregate):
    """Free rent in a talent apartment: an in-kind benefit of whole calendar months."""

    @staticmethod
    def create_id(waiver_id: str) -> UUID:
        return stream_id("rent-waivers", waiver_id)

    class Granted(LedgerAggregate.Created):
        waiver_id: str
        talent_id: str
        fund_year: int
        programme: str
        apartment: str
        start_on: date
        end_on: date
        monthly_rent: Decimal
        months: int
        value: Decimal
        fingerprint: str

    @event(Granted)
    def __init__(
        self,
        waiver_id: str,
        talent_id: str,
        fund_year: int,
        programme: str,
        apartment: str,
        start_on: date,
        end_on: date,
        monthly_rent: Decimal,
        months: int,
        value: Decimal,
        fingerprint: str,
    ) -> None:
        self.waiver_id = waiver_id
        self.talent_id = talent_id
        self.fund_year = fund_year
        self.programme = programme
        self.apartment = apartment
        self.start_on = start_on
        self.end_on = end_on
        self.monthly_rent = monthly_rent
        self.months = months
        self.value = value
        self.fingerprint = fingerprint
        self.ended_on: date | None = None

    @property
    def status(self) -> str:
        return "active" if self.ended_on is None else "ended"

    class Ended(LedgerAggregate.Event):
        ended_on: date
        months: int
        released: Decimal

    def end(self, ended_on: date) -> Decimal:
        """End early: keep the months up to and including `ended_on`'s; returns the release."""
        if self.ended_on is not None:
            if ended_on != self.ended_on:
                raise InvalidState(f"waiver {self.waiver_id} ended on {self.ended_on}")
            return ZERO
        if not self.start_on <= ended_on <= self.end_on:
            raise ValidationFailed("ended_on", "ended_on must lie between start_on and end_on")
        months = calendar_months(self.start_on, ended_on)
        released = self.value - self.monthly_rent * months
        self._ended(ended_on, months, released)
        return released

    @event(Ended)
    def _ended(self, ended_on: date, months: int, released: Decimal) -> None:
        self.ended_on = ended_on
        self.months = months
        self.value -= released


# --- clawbacks --------------------------------------------------------------------


@dataclass(frozen=True)
class Recovery:
    recovery_id: str
    amount: Decimal
    value_date: date
    bank_reference: str
    fingerprint: str


class Clawback(LedgerAggregate):
    """Money a departed talent owes back on a grant, and what has been recovered."""

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


# --- reconciliations --------------------------------------------------------------


class Reconciliation(LedgerAggregate):
    """One imported bank statement and what it matched. Its id comes from the file's
    SHA-256, so importing the file again finds this stream and records nothing."""

    @staticmethod
    def create_id(reconciliation_id: str) -> UUID:
        return stream_id("reconciliations", reconciliation_id)

    class Imported(LedgerAggregate.Created):
        reconciliation_id: str
        sha256: str
        report_packed: str

    @event(Imported)
    def __init__(self, reconciliation_id: str, sha256: str, report_packed: str) -> None:
        self.reconciliation_id = reconciliation_id
        self.sha256 = sha256
        self.report_packed = report_packed

    @property
    def report(self) -> dict[str, Any]:
        return unpack(self.report_packed)
