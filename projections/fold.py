"""Folds events into read-model rows, in memory, a batch at a time.

One pass over a batch produces every row the batch changes: the audit trail, the
double-entry journal, current balances and one version of each balance per event
that changed it. The worker writes them in bulk with the batch's tracking position,
so a read model costs a few statements per batch instead of several per event.

Chart of accounts (every account is per fund year and programme line):

| account | normal side | balance |
|---|---|---|
| `appropriation` | debit | appropriated |
| `available` | credit | appropriated - committed |
| `commitment` | credit | committed (effective grant amounts + waiver values) |
| `expense` | debit | approved cash grants, net of revocations |
| `payable` | credit | approved - net paid (outstanding) |
| `bank` | credit | net paid - clawback recovered (net cash out) |
| `in_kind_expense` | debit | in-kind value of rent waivers |
| `in_kind_provided` | credit | in-kind value of rent waivers |
| `receivable` | debit | clawback assessed - recovered (due) |
| `clawback_recovery` | credit | clawback assessed |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

from ledger.domain.budget import FundYear
from ledger.domain.clawbacks import Clawback
from ledger.domain.grants import Grant
from ledger.domain.money import ZERO
from ledger.domain.payments import BankReference, Payment
from ledger.domain.reconciliation import BUCKETS, Reconciliation, unpack
from ledger.domain.talents import Talent
from ledger.domain.waivers import RentWaiver
from projections.schema import LINE_AMOUNTS, TALENT_AMOUNTS

#: the audit-trail column that names each kind of benefit the budget reserves for
BENEFIT_ID_FIELDS = {Grant.KIND: "grant_id", RentWaiver.KIND: "waiver_id"}

K = TypeVar("K")
R = TypeVar("R")
LineKey = tuple[int, str]
BalanceKey = tuple[str, int, str]
AccountKey = tuple[int, str, str]


@dataclass(frozen=True)
class Stream:
    """An aggregate as its later events need it: its key and where it is charged."""

    kind: str
    key: str
    talent_id: str | None = None
    year: int | None = None
    programme: str | None = None
    amount: Decimal | None = None


@dataclass
class Line:
    """A programme line's current amounts, keyed in `LINE_AMOUNTS` order (as a talent's
    balance is in `TALENT_AMOUNTS` order): their values are the columns as they are."""

    kind: str
    amounts: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(LINE_AMOUNTS, ZERO))


@dataclass
class FundYearRow:
    currency: str
    opened_position: int
    closed_position: int | None = None


@dataclass
class TalentRow:
    sealed_name: str
    category: str
    employer: str
    arrived_on: date
    service_commitment_until: date
    registered_position: int
    departed_on: date | None = None
    departure_reason: str | None = None
    departed_position: int | None = None


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


class Loader(Protocol):
    """Reads a current row on a cache miss (None when there is none yet)."""

    def stream(self, stream_id: UUID) -> Stream | None: ...
    def line(self, key: LineKey) -> Line | None: ...
    def balance(self, key: BalanceKey) -> dict[str, Decimal] | None: ...
    def account(self, key: AccountKey) -> list[Decimal] | None: ...
    def fund_year(self, year: int) -> FundYearRow | None: ...
    def talent(self, talent_id: str) -> TalentRow | None: ...
    def grant(self, grant_id: str) -> GrantRow | None: ...
    def payment(self, payment_id: str) -> PaymentRow | None: ...
    def clawback(self, clawback_id: str) -> ClawbackRow | None: ...


@dataclass
class Entry:
    """The ids, amount and words of one audit-trail entry (CONTRACT §5 history)."""

    talent_id: str | None = None
    grant_id: str | None = None
    payment_id: str | None = None
    waiver_id: str | None = None
    clawback_id: str | None = None
    recovery_id: str | None = None
    bank_reference: str | None = None
    fund_year: int | None = None
    programme: str | None = None
    amount: Decimal | None = None
    reason: str | None = None
    reference: str | None = None


@dataclass
class Touched(Generic[K]):
    """The keys of a table's rows that one batch created, and of those it changed that
    were stored before it: new rows can be appended, only the others need an upsert."""

    created: set[K] = field(default_factory=set)
    changed: set[K] = field(default_factory=set)

    def create(self, key: K) -> None:
        self.created.add(key)

    def change(self, key: K) -> None:
        if key not in self.created:
            self.changed.add(key)


@dataclass
class Changes:
    """Every row one batch adds or changes."""

    streams: dict[UUID, Stream] = field(default_factory=dict)
    fund_years: Touched[int] = field(default_factory=Touched)
    lines: Touched[LineKey] = field(default_factory=Touched)
    line_versions: dict[tuple[LineKey, int], tuple[Any, ...]] = field(default_factory=dict)
    talents: Touched[str] = field(default_factory=Touched)
    balances: Touched[BalanceKey] = field(default_factory=Touched)
    balance_versions: dict[tuple[BalanceKey, int], tuple[Any, ...]] = field(default_factory=dict)
    accounts: Touched[AccountKey] = field(default_factory=Touched)
    grants: Touched[str] = field(default_factory=Touched)
    payments: Touched[str] = field(default_factory=Touched)
    clawbacks: Touched[str] = field(default_factory=Touched)
    recoveries: list[tuple[Any, ...]] = field(default_factory=list)
    reconciliation_lines: list[tuple[Any, ...]] = field(default_factory=list)
    audit: list[tuple[Any, ...]] = field(default_factory=list)
    journal: list[tuple[Any, ...]] = field(default_factory=list)


class _Empty:
    """The loader of an image built from the first event: nothing exists before it."""

    def stream(self, stream_id: UUID) -> Stream | None:
        return None

    def line(self, key: LineKey) -> Line | None:
        return None

    def balance(self, key: BalanceKey) -> dict[str, Decimal] | None:
        return None

    def account(self, key: AccountKey) -> list[Decimal] | None:
        return None

    def fund_year(self, year: int) -> FundYearRow | None:
        return None

    def talent(self, talent_id: str) -> TalentRow | None:
        return None

    def grant(self, grant_id: str) -> GrantRow | None:
        return None

    def payment(self, payment_id: str) -> PaymentRow | None:
        return None

    def clawback(self, clawback_id: str) -> ClawbackRow | None:
        return None


class ReadModels:
    """The in-memory image of the rows being changed, loaded on demand and kept while
    this worker is the one advancing the position. An image started at position 0
    is complete, so a miss means "new" and costs no query (what makes a rebuild fast).
    """

    def __init__(self, loader: Loader, *, complete: bool = False) -> None:
        self.loader: Loader = _Empty() if complete else loader
        self.streams: dict[UUID, Stream] = {}
        self.lines: dict[LineKey, Line] = {}
        self.balances: dict[BalanceKey, dict[str, Decimal]] = {}
        self.accounts: dict[AccountKey, list[Decimal]] = {}
        self.fund_years: dict[int, FundYearRow] = {}
        self.talents: dict[str, TalentRow] = {}
        self.grants: dict[str, GrantRow] = {}
        self.payments: dict[str, PaymentRow] = {}
        self.clawbacks: dict[str, ClawbackRow] = {}
        self.changes = Changes()
        self._position = 0
        self._recorded_at = datetime.min.replace(tzinfo=UTC)
        self._seq = 0

    # --- loading ---------------------------------------------------------------

    @staticmethod
    def _cached(cache: dict[K, R], key: K, load: Callable[[K], R | None]) -> R:
        """The row under `key`, loaded on a miss; an event of a row never created is a
        bug in the history, not a case to handle."""
        if key not in cache:
            found = load(key)
            assert found is not None, f"no row {key!r} for an event that needs it"
            cache[key] = found
        return cache[key]

    @staticmethod
    def _stored_or_new(
        cache: dict[K, R],
        key: K,
        load: Callable[[K], R | None],
        new: Callable[[], R],
        touched: Touched[K],
    ) -> R:
        """The row under `key`, loaded on a miss, or else a new one, which this batch
        creates."""
        if key not in cache:
            stored = load(key)
            if stored is None:
                touched.create(key)
                stored = new()
            cache[key] = stored
        return cache[key]

    def _stream(self, stream_id: UUID) -> Stream:
        return self._cached(self.streams, stream_id, self.loader.stream)

    def _line(self, key: LineKey) -> Line:
        return self._cached(self.lines, key, self.loader.line)

    def _talent(self, talent_id: str) -> TalentRow:
        return self._cached(self.talents, talent_id, self.loader.talent)

    def _fund_year(self, year: int) -> FundYearRow:
        return self._cached(self.fund_years, year, self.loader.fund_year)

    def _grant(self, grant_id: str) -> GrantRow:
        self.changes.grants.change(grant_id)
        return self._cached(self.grants, grant_id, self.loader.grant)

    def _payment(self, payment_id: str) -> PaymentRow:
        self.changes.payments.change(payment_id)
        return self._cached(self.payments, payment_id, self.loader.payment)

    def _clawback(self, clawback_id: str) -> ClawbackRow:
        self.changes.clawbacks.change(clawback_id)
        return self._cached(self.clawbacks, clawback_id, self.loader.clawback)

    # --- changing ----------------------------------------------------------------

    def _add_stream(self, stream_id: UUID, stream: Stream) -> None:
        self.streams[stream_id] = stream
        self.changes.streams[stream_id] = stream

    def _add_line(self, key: LineKey, **deltas: Decimal) -> None:
        line = self._line(key)
        for name, delta in deltas.items():
            line.amounts[name] += delta
        self.changes.lines.change(key)
        self.changes.line_versions[key, self._position] = (
            *key,
            self._position,
            line.kind,
            *line.amounts.values(),
        )

    def _add_balance(self, key: BalanceKey, **deltas: Decimal) -> None:
        amounts = self._stored_or_new(
            self.balances,
            key,
            self.loader.balance,
            lambda: dict.fromkeys(TALENT_AMOUNTS, ZERO),
            self.changes.balances,
        )
        for name, delta in deltas.items():
            amounts[name] += delta
        self.changes.balances.change(key)
        self.changes.balance_versions[key, self._position] = (
            *key,
            self._position,
            *amounts.values(),
        )

    def _add_both(self, s: Stream, **deltas: Decimal) -> None:
        assert s.year is not None and s.programme is not None and s.talent_id is not None
        self._add_line((s.year, s.programme), **deltas)
        self._add_balance((s.talent_id, s.year, s.programme), **deltas)

    def _add_talent_balance(self, s: Stream, **deltas: Decimal) -> None:
        assert s.year is not None and s.programme is not None and s.talent_id is not None
        self._add_balance((s.talent_id, s.year, s.programme), **deltas)

    def _post(self, year: int, programme: str, debit: str, credit: str, amount: Decimal) -> None:
        """One balanced journal entry: `amount` debited to one account, credited to another."""
        if amount == 0:
            return
        for account, dr, cr in ((debit, amount, ZERO), (credit, ZERO, amount)):
            self._seq += 1  # numbered within the event, so batch boundaries don't matter
            self.changes.journal.append(
                (self._position, self._seq, year, programme, account, dr, cr)
            )
            key = (year, account, programme)
            totals = self._stored_or_new(
                self.accounts, key, self.loader.account, lambda: [ZERO, ZERO], self.changes.accounts
            )
            totals[0] += dr
            totals[1] += cr
            self.changes.accounts.change(key)

    def _post_stream(self, s: Stream, debit: str, credit: str, amount: Decimal) -> None:
        assert s.year is not None and s.programme is not None
        self._post(s.year, s.programme, debit, credit, amount)

    # --- applying ----------------------------------------------------------------

    def apply(self, event: Any, position: int, recorded_at: datetime, hash_hex: str) -> None:
        """Fold one event recorded at `position` into the rows it changes."""
        self._position = position
        self._recorded_at = recorded_at
        self._seq = 0
        handler = _HANDLERS.get(type(event))
        entry = handler(self, event) if handler else Entry()
        self.changes.audit.append(
            (
                position,
                recorded_at,
                type(event).__qualname__,
                entry.talent_id,
                entry.grant_id,
                entry.payment_id,
                entry.waiver_id,
                entry.clawback_id,
                entry.recovery_id,
                entry.bank_reference,
                entry.fund_year,
                entry.programme,
                entry.amount,
                event.actor,
                entry.reason,
                entry.reference,
                event.request_id,
                hash_hex,
            )
        )

    def take_changes(self) -> Changes:
        changes, self.changes = self.changes, Changes()
        return changes

    # --- one method per event type -------------------------------------------------

    def _fund_year_opened(self, e: FundYear.Opened) -> Entry:
        self._add_stream(e.originator_id, Stream("fund_year", str(e.year), year=e.year))
        self.fund_years[e.year] = FundYearRow(e.currency, self._position)
        self.changes.fund_years.create(e.year)
        return Entry(fund_year=e.year)

    def _appropriated(self, e: FundYear.Appropriated) -> Entry:
        year = self._stream(e.originator_id).year
        assert year is not None
        key = (year, e.programme)
        self._stored_or_new(
            self.lines, key, self.loader.line, lambda: Line(e.kind), self.changes.lines
        )
        self._add_line(key, appropriated=e.amount)
        self._post(year, e.programme, "appropriation", "available", e.amount)
        return Entry(fund_year=year, programme=e.programme, amount=e.amount, reference=e.reference)

    def _reserved(self, e: FundYear.Reserved) -> Entry:
        year = self._stream(e.originator_id).year
        assert year is not None
        self._add_line((year, e.programme), committed=e.amount)
        self._post(year, e.programme, "available", "commitment", e.amount)
        return Entry(
            **{BENEFIT_ID_FIELDS[e.benefit]: e.benefit_id},
            fund_year=year,
            programme=e.programme,
            amount=e.amount,
        )

    def _released(self, e: FundYear.Released) -> Entry:
        year = self._stream(e.originator_id).year
        assert year is not None
        self._add_line((year, e.programme), committed=-e.amount)
        self._post(year, e.programme, "commitment", "available", e.amount)
        return Entry(
            **{BENEFIT_ID_FIELDS[e.benefit]: e.benefit_id},
            fund_year=year,
            programme=e.programme,
            amount=e.amount,
        )

    def _fund_year_closed(self, e: FundYear.Closed) -> Entry:
        year = self._stream(e.originator_id).year
        assert year is not None
        self._fund_year(year).closed_position = self._position
        self.changes.fund_years.change(year)
        return Entry(fund_year=year, reason=e.reason)

    def _talent_registered(self, e: Talent.Registered) -> Entry:
        self._add_stream(e.originator_id, Stream("talent", e.talent_id, talent_id=e.talent_id))
        self.talents[e.talent_id] = TalentRow(
            e.sealed_name,
            e.category,
            e.employer,
            e.arrived_on,
            e.service_commitment_until,
            self._position,
        )
        self.changes.talents.create(e.talent_id)
        return Entry(talent_id=e.talent_id)

    def _talent_departed(self, e: Talent.Departed) -> Entry:
        talent_id = self._stream(e.originator_id).key
        talent = self._talent(talent_id)
        talent.departed_on = e.departed_on
        talent.departure_reason = e.reason
        talent.departed_position = self._position
        self.changes.talents.change(talent_id)
        return Entry(talent_id=talent_id, reason=e.reason)

    def _talent_erased(self, e: Talent.PersonalDataErased) -> Entry:
        # nothing to change here: names are revealed through the data key, now gone
        return Entry(talent_id=self._stream(e.originator_id).key)

    def _grant_proposed(self, e: Grant.Proposed) -> Entry:
        s = Stream("grant", e.grant_id, e.talent_id, e.fund_year, e.programme, e.amount)
        self._add_stream(e.originator_id, s)
        self.grants[e.grant_id] = GrantRow(e.talent_id, e.fund_year, e.programme, e.amount)
        self.changes.grants.create(e.grant_id)
        self._add_talent_balance(s, granted=e.amount)
        return self._grant_entry(s, amount=e.amount, reason=e.reason, reference=e.policy_reference)

    def _grant_approved(self, e: Grant.Approved) -> Entry:
        s = self._stream(e.originator_id)
        assert s.amount is not None
        grant = self._grant(s.key)
        grant.status, grant.approved_at = "approved", self._recorded_at
        self._add_talent_balance(s, approved=s.amount)
        self._post_stream(s, "expense", "payable", s.amount)
        return self._grant_entry(s, amount=s.amount, reason=e.note)

    def _grant_rejected(self, e: Grant.Rejected) -> Entry:
        s = self._stream(e.originator_id)
        assert s.amount is not None
        self._grant(s.key).status = "rejected"
        self._add_talent_balance(s, granted=-s.amount)
        return self._grant_entry(s, amount=s.amount, reason=e.reason)

    def _grant_revoked(self, e: Grant.Revoked) -> Entry:
        s = self._stream(e.originator_id)
        self._grant(s.key).status = "revoked"
        self._add_talent_balance(s, granted=-e.released, approved=-e.released)
        self._post_stream(s, "payable", "expense", e.released)
        return self._grant_entry(s, amount=e.released, reason=e.reason)

    def _grant_paid(self, e: Grant.Paid) -> Entry:
        s = self._stream(e.originator_id)
        self._grant(s.key).paid += e.amount
        return self._grant_entry(s, amount=e.amount, payment_id=e.payment_id)

    def _grant_payment_returned(self, e: Grant.PaymentReturned) -> Entry:
        s = self._stream(e.originator_id)
        self._grant(s.key).returned += e.amount
        if e.released:
            self._add_talent_balance(s, granted=-e.released, approved=-e.released)
            self._post_stream(s, "payable", "expense", e.released)
        return self._grant_entry(s, amount=e.amount, payment_id=e.payment_id)

    def _grant_clawback_assessed(self, e: Grant.ClawbackAssessed) -> Entry:
        s = self._stream(e.originator_id)
        self._grant(s.key).clawed_back += e.amount
        return self._grant_entry(s, amount=e.amount, clawback_id=e.clawback_id)

    @staticmethod
    def _grant_entry(s: Stream, **fields: Any) -> Entry:
        return ReadModels._entry_of(s, "grant_id", **fields)

    @staticmethod
    def _entry_of(s: Stream, id_field: str, **fields: Any) -> Entry:
        """The audit entry of an event of `s`: its key under `id_field`, and where it
        is charged."""
        ids: dict[str, Any] = {id_field: s.key}
        return Entry(
            talent_id=s.talent_id, fund_year=s.year, programme=s.programme, **ids, **fields
        )

    def _payment_recorded(self, e: Payment.Recorded) -> Entry:
        s = Stream("payment", e.payment_id, e.talent_id, e.fund_year, e.programme, e.amount)
        self._add_stream(e.originator_id, s)
        self.payments[e.payment_id] = PaymentRow(
            e.grant_id,
            e.talent_id,
            e.fund_year,
            e.programme,
            e.amount,
            e.value_date,
            e.bank_reference,
        )
        self.changes.payments.create(e.payment_id)
        self._add_both(s, paid=e.amount)
        self._post_stream(s, "payable", "bank", e.amount)
        return self._entry_of(
            s, "payment_id", grant_id=e.grant_id, bank_reference=e.bank_reference, amount=e.amount
        )

    def _payment_returned(self, e: Payment.Returned) -> Entry:
        s = self._stream(e.originator_id)
        assert s.amount is not None
        self._payment(s.key).returned_on = e.returned_on
        self._add_both(s, returned=s.amount)
        self._post_stream(s, "bank", "payable", s.amount)
        return self._entry_of(s, "payment_id", amount=s.amount, reason=e.reason)

    def _waiver_granted(self, e: RentWaiver.Granted) -> Entry:
        s = Stream("waiver", e.waiver_id, e.talent_id, e.fund_year, e.programme, e.value)
        self._add_stream(e.originator_id, s)
        self._add_both(s, in_kind_value=e.value)
        self._post_stream(s, "in_kind_expense", "in_kind_provided", e.value)
        return self._entry_of(s, "waiver_id", amount=e.value, reference=e.apartment)

    def _waiver_ended(self, e: RentWaiver.Ended) -> Entry:
        s = self._stream(e.originator_id)
        self._add_both(s, in_kind_value=-e.released)
        self._post_stream(s, "in_kind_provided", "in_kind_expense", e.released)
        return self._entry_of(s, "waiver_id", amount=e.released)

    def _clawback_assessed(self, e: Clawback.Assessed) -> Entry:
        s = Stream("clawback", e.clawback_id, e.talent_id, e.fund_year, e.programme, e.amount)
        self._add_stream(e.originator_id, s)
        self.clawbacks[e.clawback_id] = ClawbackRow(
            e.grant_id, e.talent_id, e.fund_year, e.programme, e.amount, self._recorded_at
        )
        self.changes.clawbacks.create(e.clawback_id)
        self._add_both(s, clawback_assessed=e.amount)
        self._post_stream(s, "receivable", "clawback_recovery", e.amount)
        return self._entry_of(
            s, "clawback_id", grant_id=e.grant_id, amount=e.amount, reason=e.reason
        )

    def _clawback_recovered(self, e: Clawback.Recovered) -> Entry:
        s = self._stream(e.originator_id)
        self._clawback(s.key).recovered += e.amount
        self.changes.recoveries.append(
            (s.key, e.recovery_id, e.amount, e.value_date, e.bank_reference)
        )
        self._add_both(s, clawback_recovered=e.amount)
        self._post_stream(s, "bank", "receivable", e.amount)
        return self._entry_of(
            s,
            "clawback_id",
            recovery_id=e.recovery_id,
            bank_reference=e.bank_reference,
            amount=e.amount,
        )

    @staticmethod
    def _bank_reference_claimed(e: BankReference.Claimed) -> Entry:
        return Entry(
            payment_id=e.payment_id,
            clawback_id=e.clawback_id,
            recovery_id=e.recovery_id,
            bank_reference=e.bank_reference,
        )

    def _reconciliation_imported(self, e: Reconciliation.Imported) -> Entry:
        report = unpack(e.report_packed)
        unmatched = [(b, item) for b in BUCKETS[1:] for item in report[b]]  # not "matched"
        for seq, (bucket, item) in enumerate(unmatched):
            self.changes.reconciliation_lines.append(
                (
                    e.reconciliation_id,
                    seq,
                    bucket,
                    item["bank_reference"],
                    Decimal(item["amount"]),
                    date.fromisoformat(item["value_date"]),
                )
            )
        counts = ", ".join(f"{b} {len(report[b])}" for b in BUCKETS)
        return Entry(reason=f"{report['line_count']} lines: {counts}", reference=e.sha256)


_HANDLERS: dict[type, Callable[[ReadModels, Any], Entry]] = {
    FundYear.Opened: ReadModels._fund_year_opened,
    FundYear.Appropriated: ReadModels._appropriated,
    FundYear.Reserved: ReadModels._reserved,
    FundYear.Released: ReadModels._released,
    FundYear.Closed: ReadModels._fund_year_closed,
    Talent.Registered: ReadModels._talent_registered,
    Talent.Departed: ReadModels._talent_departed,
    Talent.PersonalDataErased: ReadModels._talent_erased,
    Grant.Proposed: ReadModels._grant_proposed,
    Grant.Approved: ReadModels._grant_approved,
    Grant.Rejected: ReadModels._grant_rejected,
    Grant.Revoked: ReadModels._grant_revoked,
    Grant.Paid: ReadModels._grant_paid,
    Grant.PaymentReturned: ReadModels._grant_payment_returned,
    Grant.ClawbackAssessed: ReadModels._grant_clawback_assessed,
    Payment.Recorded: ReadModels._payment_recorded,
    Payment.Returned: ReadModels._payment_returned,
    RentWaiver.Granted: ReadModels._waiver_granted,
    RentWaiver.Ended: ReadModels._waiver_ended,
    Clawback.Assessed: ReadModels._clawback_assessed,
    Clawback.Recovered: ReadModels._clawback_recovered,
    BankReference.Claimed: lambda _, e: ReadModels._bank_reference_claimed(e),
    Reconciliation.Imported: ReadModels._reconciliation_imported,
}
