"""Bank statements and their reconciliation against the ledger's bank movements.

Matching is pure: given the statement lines and the movements the ledger expects, it
answers the report. Each statement line lands in exactly one bucket; a ledger
movement can be claimed by one line only, so a duplicated statement line is
`unknown_in_ledger`. The report is recorded whole in one `Reconciliation` event.
"""

from __future__ import annotations

import base64
import zlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

import orjson
from eventsourcing.domain import event

from ledger.domain.base import LedgerAggregate, stream_id
from ledger.domain.money import format_money

DATE_TOLERANCE_DAYS = 3
BUCKETS = ("matched", "amount_mismatch", "date_mismatch", "unknown_in_ledger", "missing_in_bank")
DIRECTIONS = ("debit", "credit")


class StatementLine(NamedTuple):
    line: int
    value_date: date
    bank_reference: str
    amount: Decimal
    direction: str  # debit (money out: payments) or credit (returns, recoveries)
    counterparty: str


@dataclass(frozen=True)
class Statement:
    """A parsed bank statement, named by the SHA-256 of the file it came from."""

    sha256: str
    lines: tuple[StatementLine, ...]

    @property
    def period(self) -> tuple[date, date]:
        days = [line.value_date for line in self.lines]
        return min(days), max(days)


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
    return {
        "line": line.line,
        "bank_reference": line.bank_reference,
        "amount": format_money(line.amount),
        "value_date": line.value_date.isoformat(),
        "direction": line.direction,
        "ledger": movement.as_dict() if movement else None,
    }


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


def reconcile(statement: Statement, movements: list[Movement]) -> dict[str, Any]:
    """The report of docs/api.md, "Bank statements and reconciliation" for `statement`
    against the ledger's `movements`."""
    unclaimed: dict[tuple[str, str], list[Movement]] = defaultdict(list)
    for movement in movements:
        unclaimed[movement.direction, movement.bank_reference].append(movement)
    claimed: set[int] = set()
    report: dict[str, Any] = {bucket: [] for bucket in BUCKETS}
    for line in statement.lines:
        candidates = unclaimed.get((line.direction, line.bank_reference))
        if not candidates:
            report["unknown_in_ledger"].append(_entry(line, None))
            continue
        # prefer the movement this line matches best, then the earliest
        best = (
            candidates[0]
            if len(candidates) == 1
            else min(candidates, key=lambda m: BUCKETS.index(_bucket(line, m)))
        )
        candidates.remove(best)
        claimed.add(id(best))
        report[_bucket(line, best)].append(_entry(line, best))
    first, last = statement.period
    report["missing_in_bank"] = [
        _missing(m)
        for m in movements
        if m.kind == "payment" and first <= m.value_date <= last and id(m) not in claimed
    ]
    return {
        "reconciliation_id": reconciliation_id(statement),
        "sha256": statement.sha256,
        "period": {"from": first.isoformat(), "to": last.isoformat()},
        "line_count": len(statement.lines),
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
        class_version = 2  # 2: counterparties sealed apart (v1 kept them in the report)
        reconciliation_id: str
        sha256: str
        report_packed: str
        # line number -> the counterparty sealed with its talent's key, packed
        sealed_counterparties: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["sealed_counterparties"] = pack({})

    @event(Imported)
    def __init__(
        self, reconciliation_id: str, sha256: str, report_packed: str, sealed_counterparties: str
    ) -> None:
        self.reconciliation_id = reconciliation_id
        self.sha256 = sha256
        self.report_packed = report_packed
        self.sealed_counterparties = sealed_counterparties

    @property
    def report(self) -> dict[str, Any]:
        return unpack(self.report_packed)
