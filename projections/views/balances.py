"""Balances: each fund year's programme lines and each talent's balance per line, now
and as of any position (one version row per event that changed it, so an as-of read
is one index probe per line)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from psycopg.rows import DictRow

from ledger.domain.budget import FundYear
from ledger.domain.clawbacks import Clawback
from ledger.domain.grants import Grant
from ledger.domain.money import ZERO
from ledger.domain.payments import Payment
from ledger.domain.talents import Talent
from ledger.domain.waivers import RentWaiver
from projections.streams import Stream, Streams
from projections.tables import AMOUNT, Curs, Table, Writes
from projections.view import Rows, View, handles, keyed

LINE_AMOUNTS = (
    "appropriated",
    "committed",
    "paid",
    "returned",
    "in_kind_value",
    "clawback_assessed",
    "clawback_recovered",
)
TALENT_AMOUNTS = (
    "granted",
    "approved",
    "paid",
    "returned",
    "in_kind_value",
    "clawback_assessed",
    "clawback_recovered",
)

FUND_YEARS = Table(
    "rm_fund_years",
    {
        "year": "int",
        "currency": "text NOT NULL",
        "opened_position": "bigint NOT NULL",
        "closed_position": "bigint",
        "closed_at": "timestamptz",
    },
    key=("year",),
    indexes=(("opened_position",),),
)
LINES = Table(
    "rm_lines",
    {"year": "int", "programme": "text", "kind": "text NOT NULL"}
    | dict.fromkeys(LINE_AMOUNTS, AMOUNT),
    key=("year", "programme"),
)
LINE_VERSIONS = Table(
    "rm_line_versions",
    {"year": "int", "programme": "text", "position": "bigint", "kind": "text NOT NULL"}
    | dict.fromkeys(LINE_AMOUNTS, AMOUNT),
    key=("year", "programme", "position"),
)
TALENTS = Table(
    "rm_talents",
    {
        "talent_id": "text",
        "sealed_name": "text NOT NULL",
        "sealed_bank_account": "text",
        "category": "text NOT NULL",
        "employer": "text NOT NULL",
        "arrived_on": "date NOT NULL",
        "service_commitment_until": "date NOT NULL",
        "registered_position": "bigint NOT NULL",
        "departed_on": "date",
        "departure_reason": "text",
        "departed_position": "bigint",
    },
    key=("talent_id",),
    indexes=(
        ("registered_position",),
        ("category", "registered_position"),
        ("employer", "registered_position"),
    ),
)
BALANCES = Table(
    "rm_talent_balances",
    {"talent_id": "text", "year": "int", "programme": "text"}
    | dict.fromkeys(TALENT_AMOUNTS, AMOUNT),
    key=("talent_id", "year", "programme"),
)
BALANCE_VERSIONS = Table(
    "rm_talent_balance_versions",
    {"talent_id": "text", "year": "int", "programme": "text", "position": "bigint"}
    | dict.fromkeys(TALENT_AMOUNTS, AMOUNT),
    key=("talent_id", "year", "programme", "position"),
)

LineKey = tuple[int, str]
BalanceKey = tuple[str, int, str]


@dataclass
class FundYearRow:
    currency: str
    opened_position: int
    closed_position: int | None = None
    closed_at: datetime | None = None


@dataclass
class TalentRow:
    sealed_name: str
    sealed_bank_account: str | None
    category: str
    employer: str
    arrived_on: date
    service_commitment_until: date
    registered_position: int
    departed_on: date | None = None
    departure_reason: str | None = None
    departed_position: int | None = None


@dataclass
class Line:
    """A line's kind and amounts, in `LINE_AMOUNTS` order (a talent's balance is a dict
    in `TALENT_AMOUNTS` order): their values are the columns as they are."""

    kind: str
    amounts: dict[str, Decimal]


def _line(row: DictRow) -> Line:
    return Line(row["kind"], {name: row[name] for name in LINE_AMOUNTS})


class Balances(View):
    NAME = "balances"
    VERSION = 3  # 2: the lists' indexes, and when a fund year closed; 3: bank accounts
    TABLES = (FUND_YEARS, LINES, LINE_VERSIONS, TALENTS, BALANCES, BALANCE_VERSIONS)

    def __init__(self, streams: Streams, *, complete: bool) -> None:
        super().__init__(streams, complete=complete)
        self.fund_years: Rows[int, FundYearRow] = Rows(FUND_YEARS, keyed(FundYearRow))
        self.lines: Rows[LineKey, Line] = Rows(
            LINES, lambda k, line: (*k, line.kind, *line.amounts.values())
        )
        self.talents: Rows[str, TalentRow] = Rows(TALENTS, keyed(TalentRow))
        self.balances: Rows[BalanceKey, dict[str, Decimal]] = Rows(
            BALANCES, lambda k, amounts: (*k, *amounts.values())
        )
        self.line_versions: dict[tuple[LineKey, int], tuple[Any, ...]] = {}
        self.balance_versions: dict[tuple[BalanceKey, int], tuple[Any, ...]] = {}

    def size(self) -> int:
        return len(self.lines.rows) + len(self.talents.rows) + len(self.balances.rows)

    def write(self, out: Writes, curs: Curs) -> None:
        self.fund_years.write(out, curs)
        self.lines.write(out, curs)
        out.copy(curs, LINE_VERSIONS, self.line_versions.values())
        self.talents.write(out, curs)
        self.balances.write(out, curs)
        out.copy(curs, BALANCE_VERSIONS, self.balance_versions.values())
        self.line_versions, self.balance_versions = {}, {}

    # --- changing -----------------------------------------------------------------

    def _add_line(self, key: LineKey, **deltas: Decimal) -> None:
        line = self.row(self.lines, key, _line)
        for name, delta in deltas.items():
            line.amounts[name] += delta
        position = self.at.position
        self.line_versions[key, position] = (*key, position, line.kind, *line.amounts.values())

    def _add_balance(self, key: BalanceKey, **deltas: Decimal) -> None:
        amounts = self.stored(self.balances, key, lambda r: {n: r[n] for n in TALENT_AMOUNTS})
        if amounts is None:
            amounts = self.balances.create(key, dict.fromkeys(TALENT_AMOUNTS, ZERO))
        self.balances.touch(key)
        for name, delta in deltas.items():
            amounts[name] += delta
        position = self.at.position
        self.balance_versions[key, position] = (*key, position, *amounts.values())

    def _add_both(self, s: Stream, **deltas: Decimal) -> None:
        assert s.year is not None and s.programme is not None
        self._add_line((s.year, s.programme), **deltas)
        self._add_talent(s, **deltas)

    def _add_talent(self, s: Stream, **deltas: Decimal) -> None:
        assert s.year is not None and s.programme is not None and s.talent_id is not None
        self._add_balance((s.talent_id, s.year, s.programme), **deltas)

    # --- fund years -----------------------------------------------------------------

    @handles(FundYear.Opened)
    def _opened(self, e: FundYear.Opened) -> None:
        self.fund_years.create(e.year, FundYearRow(e.currency, self.at.position))

    @handles(FundYear.Appropriated)
    def _appropriated(self, e: FundYear.Appropriated) -> None:
        year = self.stream().year
        assert year is not None
        key = (year, e.programme)
        if self.stored(self.lines, key, _line) is None:
            self.lines.create(key, Line(e.kind, dict.fromkeys(LINE_AMOUNTS, ZERO)))
        self._add_line(key, appropriated=e.amount)

    @handles(FundYear.Reserved)
    def _reserved(self, e: FundYear.Reserved) -> None:
        year = self.stream().year
        assert year is not None
        self._add_line((year, e.programme), committed=e.amount)

    @handles(FundYear.Released)
    def _released(self, e: FundYear.Released) -> None:
        year = self.stream().year
        assert year is not None
        self._add_line((year, e.programme), committed=-e.amount)

    @handles(FundYear.Closed)
    def _closed(self, e: FundYear.Closed) -> None:
        year = self.stream().year
        assert year is not None
        fund_year = self.row(self.fund_years, year, lambda r: FundYearRow(**r))
        fund_year.closed_position, fund_year.closed_at = self.at.position, self.at.recorded_at

    # --- talents --------------------------------------------------------------------

    @handles(Talent.Registered)
    def _registered(self, e: Talent.Registered) -> None:
        self.talents.create(
            e.talent_id,
            TalentRow(
                e.sealed_name,
                e.sealed_bank_account,
                e.category,
                e.employer,
                e.arrived_on,
                e.service_commitment_until,
                self.at.position,
            ),
        )

    @handles(Talent.Departed)
    def _departed(self, e: Talent.Departed) -> None:
        talent = self.row(self.talents, self.stream().key, lambda r: TalentRow(**r))
        talent.departed_on = e.departed_on
        talent.departure_reason = e.reason
        talent.departed_position = self.at.position

    # --- grants ---------------------------------------------------------------------

    @handles(Grant.Proposed)
    def _proposed(self, e: Grant.Proposed) -> None:
        self._add_talent(self.stream(), granted=e.amount)

    @handles(Grant.Approved)
    def _approved(self, e: Grant.Approved) -> None:
        s = self.stream()
        assert s.amount is not None
        self._add_talent(s, approved=s.amount)

    @handles(Grant.Rejected)
    def _rejected(self, e: Grant.Rejected) -> None:
        s = self.stream()
        assert s.amount is not None
        self._add_talent(s, granted=-s.amount)

    @handles(Grant.Revoked)
    def _revoked(self, e: Grant.Revoked) -> None:
        self._add_talent(self.stream(), granted=-e.released, approved=-e.released)

    @handles(Grant.PaymentReturned)
    def _grant_payment_returned(self, e: Grant.PaymentReturned) -> None:
        if e.released:
            self._add_talent(self.stream(), granted=-e.released, approved=-e.released)

    # --- payments, waivers, clawbacks -----------------------------------------------

    @handles(Payment.Recorded)
    def _paid(self, e: Payment.Recorded) -> None:
        self._add_both(self.stream(), paid=e.amount)

    @handles(Payment.Returned)
    def _returned(self, e: Payment.Returned) -> None:
        s = self.stream()
        assert s.amount is not None
        self._add_both(s, returned=s.amount)

    @handles(RentWaiver.Granted)
    def _waived(self, e: RentWaiver.Granted) -> None:
        self._add_both(self.stream(), in_kind_value=e.value)

    @handles(RentWaiver.Ended)
    def _waiver_ended(self, e: RentWaiver.Ended) -> None:
        self._add_both(self.stream(), in_kind_value=-e.released)

    @handles(Clawback.Assessed)
    def _assessed(self, e: Clawback.Assessed) -> None:
        self._add_both(self.stream(), clawback_assessed=e.amount)

    @handles(Clawback.Recovered)
    def _recovered(self, e: Clawback.Recovered) -> None:
        self._add_both(self.stream(), clawback_recovered=e.amount)
