"""Bank statements as CSV: parsed strictly, or refused naming the line.

A statement that is wrong anywhere is refused whole: reconciling half a file would
leave treasury believing lines were checked that never were.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from collections.abc import Callable
from datetime import date

from ledger.domain.errors import StatementRejected
from ledger.domain.money import MoneyFormatError, parse_money
from ledger.domain.reconciliation import DIRECTIONS, Statement, StatementLine

HEADER = ("value_date", "bank_reference", "amount", "direction", "counterparty")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_REFERENCE_RE = re.compile(r"[^\x00-\x1f\x7f]{1,100}")


def parse_statement(data: bytes, progress: Callable[[int, int], None] | None = None) -> Statement:
    """Parse a UTF-8 (optionally BOM-prefixed) CSV statement, or refuse it whole.
    `progress(lines_done, lines_total)` is told every thousand lines."""
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StatementRejected(
            body[: e.start].count(b"\n") + 1, "encoding", "the file is not valid UTF-8"
        ) from None
    rows = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(rows, None)
        if header is None or tuple(h.strip() for h in header) != HEADER:
            raise StatementRejected(1, "header", f"the header must be {','.join(HEADER)}")
        total = text.count("\n") + 1
        parsed = []
        for row in rows:
            if any(cell.strip() for cell in row):
                parsed.append(_line(rows.line_num, row))
            if progress and rows.line_num % 1000 == 0:
                progress(rows.line_num, total)
        lines = tuple(parsed)
    except csv.Error as e:
        raise StatementRejected(rows.line_num, "csv", f"malformed CSV: {e}") from None
    if not lines:
        raise StatementRejected(2, "lines", "the statement has no lines")
    return Statement(hashlib.sha256(data).hexdigest(), lines)


def _line(number: int, row: list[str]) -> StatementLine:
    if len(row) != len(HEADER):
        raise StatementRejected(
            number, "columns", f"expected {len(HEADER)} columns, got {len(row)}"
        )
    value_date, reference, amount, direction, counterparty = [cell.strip() for cell in row]
    if not _DATE_RE.fullmatch(value_date):
        raise StatementRejected(number, "value_date", "value_date must be YYYY-MM-DD")
    try:
        day = date.fromisoformat(value_date)
    except ValueError:
        raise StatementRejected(number, "value_date", "value_date is not a date") from None
    if not _REFERENCE_RE.fullmatch(reference):
        raise StatementRejected(number, "bank_reference", "bank_reference is blank or too long")
    try:
        money = parse_money(amount)
    except MoneyFormatError as e:
        raise StatementRejected(number, "amount", str(e)) from None
    if direction not in DIRECTIONS:
        raise StatementRejected(number, "direction", "direction must be debit or credit")
    return StatementLine(number, day, reference, money, direction, counterparty)
