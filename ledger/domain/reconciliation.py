"""Bank statements and their reconciliation against the ledger's bank movements.

Matching is pure: given the statement lines and the movements the ledger expects, it
answers the report. Each statement line lands in exactly one bucket; a ledger
movement can be claimed by one line only, so a duplicated statement line is
`unknown_in_ledger`. The report is recorded whole in one `Reconciliation` event.

A statement that states its balances (camt.053, MT940) must add up: its opening
balance plus its credits less its debits is its closing balance. Its report then says
whether it carries on from the previous statement of its account (`continuity`).
"""

from __future__ import annotations

import base64
import zlib
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from itertools import chain, islice
from typing import Any, NamedTuple
from uuid import UUID

import orjson
from eventsourcing.domain import event

from ledger.domain.base import LedgerAggregate, stream_id
from ledger.domain.errors import StatementUnbalanced
from ledger.domain.money import ZERO, format_money

DATE_TOLERANCE_DAYS = 3
CANDIDATES_SHOWN = 10  # of an unknown line, the nearest
# the days from a line's value date, nearest first, the earlier of two as near
_NEAREST_FIRST = (0, *(d for n in range(1, DATE_TOLERANCE_DAYS + 1) for d in (-n, n)))
BUCKETS = ("matched", "amount_mismatch", "date_mismatch", "unknown_in_ledger", "missing_in_bank")
CLAIMING = BUCKETS[:3]  # the buckets of a line that claimed a ledger movement
DIRECTIONS = ("debit", "credit")


class StatementLine(NamedTuple):
    line: int  # the line of the file; in XML, which statement line it is (1, 2, ...)
    value_date: date
    bank_reference: str
    amount: Decimal
    direction: str  # debit (money out: payments) or credit (returns, recoveries)
    counterparty: str
    element: str | None = None  # in XML, where it is: `Stmt/Ntry[2]/NtryDtls[1]/TxDtls[1]`


class Balance(NamedTuple):
    """A balance a statement states: signed, negative when the account is overdrawn
    (a debit balance), as of a day."""

    amount: Decimal
    on: date


@dataclass(frozen=True)
class Statement:
    """A parsed bank statement, named by the SHA-256 of the file it came from. The
    formats that state their account and balances (camt.053, MT940) give them; the CSV
    layouts have none."""

    sha256: str
    lines: tuple[StatementLine, ...]
    account: str | None = None
    opening: Balance | None = None
    closing: Balance | None = None

    @property
    def period(self) -> tuple[date, date]:
        days = [line.value_date for line in self.lines]
        return min(days), max(days)


def balanced(statement: Statement, line: int | None, where: str) -> Statement:
    """The statement, if its opening balance plus its credits less its debits is its
    closing balance; else refused, naming where the closing balance is stated."""
    assert statement.opening is not None and statement.closing is not None
    moved = sum((x.amount if x.direction == "credit" else -x.amount for x in statement.lines), ZERO)
    expected = statement.opening.amount + moved
    if expected != statement.closing.amount:
        raise StatementUnbalanced(
            line,
            where,
            f"the opening balance {format_money(statement.opening.amount)} and the lines "
            f"({format_money(moved)}) make {format_money(expected)}, but the closing "
            f"balance is {format_money(statement.closing.amount)}",
        )
    return statement


class PreviousStatement(NamedTuple):
    """The latest statement of the same account ending before a statement does."""

    reconciliation_id: str
    closing: Decimal
    closing_on: date


class Movement(NamedTuple):
    """Money the ledger says crossed the bank: a payment (debit), its return or a
    clawback recovery (credits). A tuple: a statement brings 200,000 of them."""

    kind: str  # payment | return | recovery
    direction: str
    bank_reference: str
    amount: Decimal
    value_date: date
    payment_id: str | None = None
    clawback_id: str | None = None
    recovery_id: str | None = None
    talent_id: str | None = None  # whose money it was
    reconciled: bool = False  # a payment a line of an earlier statement claimed

    def as_dict(self) -> dict[str, Any]:
        """The movement as a report shows it (a return is known by its payment)."""
        shown: dict[str, Any] = {
            "kind": self.kind,
            "bank_reference": self.bank_reference,
            "amount": format_money(self.amount),
            "value_date": self.value_date.isoformat(),
        }
        if self.payment_id is not None:
            shown["payment_id"] = self.payment_id
        if self.clawback_id is not None:
            shown["clawback_id"] = self.clawback_id
        if self.recovery_id is not None:
            shown["recovery_id"] = self.recovery_id
        if self.talent_id is not None:
            shown["talent_id"] = self.talent_id
        return shown


def reconciliation_id(statement: Statement) -> str:
    """Named by the file's content: the same file always gets the same id."""
    return "R-" + statement.sha256[:24]


def _entry(line: StatementLine, movement: Movement | None) -> dict[str, Any]:
    """A statement line as the report shows it: never its counterparty, a person's name
    the report would keep in clear (`counterparties` keeps it sealed)."""
    entry = {
        "line": line.line,
        "bank_reference": line.bank_reference,
        "amount": format_money(line.amount),
        "value_date": line.value_date.isoformat(),
        "direction": line.direction,
        "ledger": movement.as_dict() if movement else None,
    }
    if line.element is not None:
        entry["element"] = line.element
    return entry


def counterparties(statement: Statement, report: dict[str, Any]) -> dict[int, tuple[str, str]]:
    """Each line's counterparty with the talent whose money the line moved, by line
    number: a line that matched no talent's money is left out (its counterparty is
    kept nowhere)."""
    named = {line.line: line.counterparty for line in statement.lines if line.counterparty}
    found: dict[int, tuple[str, str]] = {}
    for bucket in BUCKETS:
        for entry in report[bucket]:
            talent_id = (entry.get("ledger") or {}).get("talent_id")
            line = entry.get("line")
            if talent_id is not None and line in named:
                found[line] = (talent_id, named[line])
    return found


def _missing(movement: Movement) -> dict[str, Any]:
    shown = movement.as_dict()
    return {
        "bank_reference": movement.bank_reference,
        "amount": shown["amount"],
        "value_date": shown["value_date"],
        "ledger": shown,
    }


def _bucket(line: StatementLine, movement: Movement) -> str:
    if line.amount != movement.amount:
        return "amount_mismatch"
    if abs((line.value_date - movement.value_date).days) > DATE_TOLERANCE_DAYS:
        return "date_mismatch"
    return "matched"


def _known_by_id(movement: Movement) -> bool:
    """Whether a statement line may name the movement by its payment id as well: the
    EndToEndId a disbursement run's pain.001 gave the payment is its payment id, which
    the bank's camt.053 repeats, for the payment and for its return."""
    return movement.payment_id is not None and movement.payment_id != movement.bank_reference


def _candidates(
    unknown: list[tuple[StatementLine, dict[str, Any]]],
    movements: list[Movement],
    claimed: set[int],
) -> None:
    """Give each unknown line the payments it may be: of its amount, dated at most 3 days
    from it, and claimed by no line of this statement nor of one imported before. Only
    a debit can be a payment. The nearest date first (the earlier of two as near), then
    by payment id; at most `CANDIDATES_SHOWN`, and `candidates_total` when there are
    more: a run pays hundreds the same amount on one day, which a statement of
    unknown references would otherwise list for every line."""
    found: dict[Decimal, list[tuple[date, str]]] = defaultdict(list)
    for m in movements:
        if m.kind == "payment" and not m.reconciled and id(m) not in claimed:
            found[m.amount].append((m.value_date, str(m.payment_id)))
    payments = {amount: sorted(of_amount) for amount, of_amount in found.items()}
    dates = {amount: [day for day, _ in of_amount] for amount, of_amount in payments.items()}
    for line, entry in unknown:
        entry["candidates"] = []
        if line.direction != "debit" or line.amount not in payments:
            continue
        of_amount, days = payments[line.amount], dates[line.amount]
        on = (line.value_date + timedelta(offset) for offset in _NEAREST_FIRST)
        spans = (range(bisect_left(days, day), bisect_right(days, day)) for day in on)
        shown = [of_amount[i][1] for i in islice(chain.from_iterable(spans), CANDIDATES_SHOWN)]
        entry["candidates"] = shown
        total = bisect_right(days, line.value_date + timedelta(DATE_TOLERANCE_DAYS)) - (
            bisect_left(days, line.value_date - timedelta(DATE_TOLERANCE_DAYS))
        )
        if total > len(shown):
            entry["candidates_total"] = total


def _continuity(statement: Statement, previous: PreviousStatement | None) -> dict[str, Any] | None:
    """Whether the statement opens where the previous one of its account closed; None
    without balances or without a previous statement."""
    if statement.opening is None or previous is None:
        return None
    return {
        "previous_reconciliation_id": previous.reconciliation_id,
        "previous_closing": format_money(previous.closing),
        "opening": format_money(statement.opening.amount),
        "ok": previous.closing == statement.opening.amount,
    }


def _stated(statement: Statement) -> dict[str, Any]:
    """The account and balances a statement states, as the report shows them."""
    if statement.opening is None or statement.closing is None:
        return {}
    return {
        "account": statement.account,
        "balances": {
            "opening": format_money(statement.opening.amount),
            "opening_on": statement.opening.on.isoformat(),
            "closing": format_money(statement.closing.amount),
            "closing_on": statement.closing.on.isoformat(),
        },
    }


def reconcile(
    statement: Statement, movements: list[Movement], previous: PreviousStatement | None = None
) -> dict[str, Any]:
    """The report of docs/api.md, "Bank statements and reconciliation" for `statement`
    against the ledger's `movements`, and `previous`, the statement its own should
    carry on from."""
    unclaimed: dict[tuple[str, str], list[Movement]] = defaultdict(list)
    for movement in movements:  # by bank reference first: those are preferred
        unclaimed[movement.direction, movement.bank_reference].append(movement)
    for movement in movements:
        if _known_by_id(movement):
            unclaimed[movement.direction, str(movement.payment_id)].append(movement)
    claimed: set[int] = set()
    report: dict[str, Any] = {bucket: [] for bucket in BUCKETS}
    unknown: list[tuple[StatementLine, dict[str, Any]]] = []
    for line in statement.lines:
        candidates = unclaimed.get((line.direction, line.bank_reference))
        if not candidates:
            unknown.append((line, _entry(line, None)))
            report["unknown_in_ledger"].append(unknown[-1][1])
            continue
        # prefer the movement this line matches best, then the earliest
        best = (
            candidates[0]
            if len(candidates) == 1
            else min(candidates, key=lambda m: BUCKETS.index(_bucket(line, m)))
        )
        candidates.remove(best)
        if _known_by_id(best):  # claimed under its other name too
            other = {best.bank_reference, str(best.payment_id)} - {line.bank_reference}
            unclaimed[best.direction, other.pop()].remove(best)
        claimed.add(id(best))
        report[_bucket(line, best)].append(_entry(line, best))
    _candidates(unknown, movements, claimed)
    first, last = statement.period
    report["missing_in_bank"] = [
        _missing(m)
        for m in movements
        if m.kind == "payment" and first <= m.value_date <= last and id(m) not in claimed
    ]
    carried_on = _continuity(statement, previous)
    return {
        "reconciliation_id": reconciliation_id(statement),
        "sha256": statement.sha256,
        "period": {"from": first.isoformat(), "to": last.isoformat()},
        "line_count": len(statement.lines),
        **_stated(statement),
        **({"continuity": carried_on} if carried_on is not None else {}),
        **report,
    }


def pack(report: dict[str, Any]) -> str:
    """A report as it is stored in its event: a statement of 100,000 lines makes a
    report of tens of megabytes, which compresses about tenfold (orjson writes it
    eight times faster than the standard library)."""
    return base64.b64encode(zlib.compress(orjson.dumps(report), 1)).decode()


def unpack_json(packed: str) -> bytes:
    """The report's JSON text, ready to send without parsing it again."""
    return zlib.decompress(base64.b64decode(packed))


def unpack(packed: str) -> dict[str, Any]:
    report: dict[str, Any] = orjson.loads(unpack_json(packed))
    return report


class Reconciliation(LedgerAggregate):
    """One imported bank statement and what it matched. Its id comes from the file's
    SHA-256, so importing the file again finds this stream and records nothing."""

    @staticmethod
    def create_id(reconciliation_id: str) -> UUID:
        return stream_id("reconciliations", reconciliation_id)

    class Imported(LedgerAggregate.Created):
        # 2: counterparties sealed apart (v1 kept them in the report); 3: the account
        # and balances the statement states (None for a CSV statement, and before)
        class_version = 3
        reconciliation_id: str
        sha256: str
        report_packed: str
        # line number -> the counterparty sealed with its talent's key, packed
        sealed_counterparties: str
        account: str | None
        opening: Decimal | None
        opening_on: date | None
        closing: Decimal | None
        closing_on: date | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["sealed_counterparties"] = pack({})

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state.update(account=None, opening=None, opening_on=None, closing=None, closing_on=None)

    @event(Imported)
    def __init__(
        self,
        reconciliation_id: str,
        sha256: str,
        report_packed: str,
        sealed_counterparties: str,
        account: str | None,
        opening: Decimal | None,
        opening_on: date | None,
        closing: Decimal | None,
        closing_on: date | None,
    ) -> None:
        self.reconciliation_id = reconciliation_id
        self.sha256 = sha256
        self.report_packed = report_packed
        self.sealed_counterparties = sealed_counterparties
        self.account = account
        self.opening, self.opening_on = opening, opening_on
        self.closing, self.closing_on = closing, closing_on

    @property
    def report(self) -> dict[str, Any]:
        return unpack(self.report_packed)
