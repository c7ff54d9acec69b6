"""The double-entry journal: every money event posts balanced entries to accounts kept
per fund year and programme line, and each account's running totals.

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

from decimal import Decimal
from typing import Any

from ledger.domain.budget import FundYear
from ledger.domain.clawbacks import Clawback
from ledger.domain.grants import Grant
from ledger.domain.money import ZERO
from ledger.domain.payments import Payment
from ledger.domain.waivers import RentWaiver
from projections.streams import Stream, Streams
from projections.tables import AMOUNT, Curs, Table, Writes
from projections.view import Rows, View, handles

JOURNAL = Table(
    "rm_journal",
    {
        "position": "bigint",
        "seq": "int",
        "year": "int NOT NULL",
        "programme": "text NOT NULL",
        "account": "text NOT NULL",
        "debit": AMOUNT,
        "credit": AMOUNT,
    },
    key=("position", "seq"),
)
ACCOUNTS = Table(
    "rm_accounts",
    {"year": "int", "account": "text", "programme": "text", "debit": AMOUNT, "credit": AMOUNT},
    key=("year", "account", "programme"),
)

AccountKey = tuple[int, str, str]


class Journal(View):
    NAME = "journal"
    VERSION = 1
    TABLES = (JOURNAL, ACCOUNTS)

    def __init__(self, streams: Streams, *, complete: bool) -> None:
        super().__init__(streams, complete=complete)
        self.accounts: Rows[AccountKey, list[Decimal]] = Rows(
            ACCOUNTS, lambda k, totals: (*k, *totals)
        )
        self.entries: list[tuple[Any, ...]] = []
        self._seq = (0, 0)  # the position being posted, and its last entry's number

    def size(self) -> int:
        return len(self.accounts.rows)

    def write(self, out: Writes, curs: Curs) -> None:
        self.accounts.write(out, curs)
        out.copy(curs, JOURNAL, self.entries)
        self.entries = []

    def _post(self, year: int, programme: str, debit: str, credit: str, amount: Decimal) -> None:
        """One balanced entry: `amount` debited to one account, credited to another."""
        if amount == 0:
            return
        position = self.at.position
        for account, dr, cr in ((debit, amount, ZERO), (credit, ZERO, amount)):
            # numbered within the event, so batch boundaries don't matter
            seq = self._seq[1] + 1 if self._seq[0] == position else 1
            self._seq = (position, seq)
            self.entries.append((position, seq, year, programme, account, dr, cr))
            key = (year, account, programme)
            totals = self.stored(self.accounts, key, lambda r: [r["debit"], r["credit"]])
            if totals is None:
                totals = self.accounts.create(key, [ZERO, ZERO])
            self.accounts.touch(key)
            totals[0] += dr
            totals[1] += cr

    def _post_on(self, s: Stream, debit: str, credit: str, amount: Decimal) -> None:
        assert s.year is not None and s.programme is not None
        self._post(s.year, s.programme, debit, credit, amount)

    def _post_year(self, e: Any, debit: str, credit: str) -> None:
        """A fund year's own event, on the line it names."""
        year = self.stream().year
        assert year is not None
        self._post(year, e.programme, debit, credit, e.amount)

    @handles(FundYear.Appropriated)
    def _appropriated(self, e: FundYear.Appropriated) -> None:
        self._post_year(e, "appropriation", "available")

    @handles(FundYear.Reserved)
    def _reserved(self, e: FundYear.Reserved) -> None:
        self._post_year(e, "available", "commitment")

    @handles(FundYear.Released)
    def _released(self, e: FundYear.Released) -> None:
        self._post_year(e, "commitment", "available")

    @handles(Grant.Approved)
    def _approved(self, e: Grant.Approved) -> None:
        s = self.stream()
        assert s.amount is not None
        self._post_on(s, "expense", "payable", s.amount)

    @handles(Grant.Revoked)
    def _revoked(self, e: Grant.Revoked) -> None:
        self._post_on(self.stream(), "payable", "expense", e.released)

    @handles(Grant.PaymentReturned)
    def _grant_payment_returned(self, e: Grant.PaymentReturned) -> None:
        self._post_on(self.stream(), "payable", "expense", e.released)

    @handles(Payment.Recorded)
    def _paid(self, e: Payment.Recorded) -> None:
        self._post_on(self.stream(), "payable", "bank", e.amount)

    @handles(Payment.Returned)
    def _returned(self, e: Payment.Returned) -> None:
        s = self.stream()
        assert s.amount is not None
        self._post_on(s, "bank", "payable", s.amount)

    @handles(RentWaiver.Granted)
    def _waived(self, e: RentWaiver.Granted) -> None:
        self._post_on(self.stream(), "in_kind_expense", "in_kind_provided", e.value)

    @handles(RentWaiver.Ended)
    def _waiver_ended(self, e: RentWaiver.Ended) -> None:
        self._post_on(self.stream(), "in_kind_provided", "in_kind_expense", e.released)

    @handles(Clawback.Assessed)
    def _assessed(self, e: Clawback.Assessed) -> None:
        self._post_on(self.stream(), "receivable", "clawback_recovery", e.amount)

    @handles(Clawback.Recovered)
    def _recovered(self, e: Clawback.Recovered) -> None:
        self._post_on(self.stream(), "bank", "receivable", e.amount)
