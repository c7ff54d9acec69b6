"""Bank statements as CSV: the ledger's own layout, and the `cn-bank` profile of a
Chinese online-banking export; parsed strictly, or refused naming the line.

A statement that is wrong anywhere is refused whole: reconciling half a file would
leave treasury believing lines were checked that never were. The checks of a
reference, an amount and a balance, and the decoding of UTF-8 or GBK, serve the
other formats too (`statement_camt`, `statement_mt940`).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from datetime import date
from decimal import Decimal

from ledger.domain.errors import StatementRejected
from ledger.domain.money import ZERO, ZERO_PATTERN, MoneyFormatError, parse_money
from ledger.domain.reconciliation import DIRECTIONS, Statement, StatementLine
from ledger.usecases.progress import PROGRESS_EVERY, Progress

HEADER = ("value_date", "bank_reference", "amount", "direction", "counterparty")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_REFERENCE_RE = re.compile(r"[^\x00-\x1f\x7f]{1,100}")


def parse_statement(data: bytes, progress: Progress | None = None) -> Statement:
    """Parse a UTF-8 (optionally BOM-prefixed) CSV statement, or refuse it whole.
    `progress(lines_done, lines_total)` is told every thousand lines, and at the end."""
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
            if progress and rows.line_num % PROGRESS_EVERY == 0:
                progress(rows.line_num, total)
        lines = tuple(parsed)
        if progress:
            progress(rows.line_num, rows.line_num)
    except csv.Error as e:
        raise StatementRejected(rows.line_num, "csv", f"malformed CSV: {e}") from None
    return _statement(data, lines)


def _statement(data: bytes, lines: tuple[StatementLine, ...]) -> Statement:
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
    check_reference(number, "bank_reference", reference)
    money = statement_money(number, "amount", amount)
    if direction not in DIRECTIONS:
        raise StatementRejected(number, "direction", "direction must be debit or credit")
    return StatementLine(number, day, reference, money, direction, counterparty)


def check_reference(line: int | None, field: str, reference: str) -> None:
    """A bank reference: 1 to 100 characters, none of them a control character."""
    if not _REFERENCE_RE.fullmatch(reference):
        raise StatementRejected(line, field, f"{field} is blank or too long")


def statement_money(line: int | None, field: str, text: str) -> Decimal:
    """An amount of a statement's line, in the API's wire form (`parse_money`)."""
    try:
        return parse_money(text)
    except MoneyFormatError as e:
        raise StatementRejected(line, field, str(e)) from None


def statement_balance(line: int | None, field: str, text: str, *, debit: bool) -> Decimal:
    """A balance a statement states, signed: like an amount, but it may be zero, and
    it is negative when it is a debit (the account overdrawn)."""
    if re.fullmatch(ZERO_PATTERN, text, re.ASCII):
        return ZERO
    amount = statement_money(line, field, text)
    return -amount if debit else amount


# --- the cn-bank profile ----------------------------------------------------------

#: the columns a Chinese online-banking export must have, by the name it gives them
CN_BANK_COLUMNS = {
    "交易日期": "value_date",
    "借方发生额": "debit",
    "贷方发生额": "credit",
    "对方户名": "counterparty",
    "交易流水号": "bank_reference",
}
CN_TOTALS = "合计"
_CN_DATE_RE = re.compile(r"([0-9]{4})[-/]?([0-9]{2})[-/]?([0-9]{2})", re.ASCII)
_THOUSANDS_RE = re.compile(r"[0-9]{1,3}(,[0-9]{3})+(\.[0-9]{1,2})?", re.ASCII)


def decoded(data: bytes) -> str:
    """UTF-8 (a BOM or not), else GBK (as GB 18030, which contains it): what Chinese
    banks' exports (CSV, MT940) are written in."""
    try:
        return data.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise StatementRejected(line, "encoding", "the file is neither UTF-8 nor GBK") from None


def parse_cn_bank(data: bytes) -> Statement:
    """A `cn-bank` export: lines before the header row (account, period) and from the
    totals line (合计) on are skipped; debits and credits are separate columns, one of
    them filled per line; amounts may carry thousands separators."""
    rows = csv.reader(io.StringIO(decoded(data), newline=""), strict=True)
    try:
        columns: dict[str, int] | None = None
        lines: list[StatementLine] = []
        for row in rows:
            cells = [cell.strip() for cell in row]
            if columns is None:
                if set(CN_BANK_COLUMNS) <= set(cells):
                    columns = {CN_BANK_COLUMNS[c]: cells.index(c) for c in CN_BANK_COLUMNS}
                continue
            if any(CN_TOTALS in cell for cell in cells):
                break
            if any(cells):
                lines.append(_cn_line(rows.line_num, cells, columns))
    except csv.Error as e:
        raise StatementRejected(rows.line_num, "csv", f"malformed CSV: {e}") from None
    if columns is None:
        raise StatementRejected(
            1, "header", f"no header row with the columns {', '.join(CN_BANK_COLUMNS)}"
        )
    return _statement(data, tuple(lines))


def _cn_line(number: int, cells: list[str], columns: dict[str, int]) -> StatementLine:
    if len(cells) <= max(columns.values()):
        raise StatementRejected(number, "columns", f"the line has only {len(cells)} columns")
    field = {name: cells[i] for name, i in columns.items()}
    found = _CN_DATE_RE.fullmatch(field["value_date"])
    try:
        day = date(*map(int, found.groups())) if found else None
    except ValueError:
        day = None
    if day is None:
        raise StatementRejected(number, "交易日期", "交易日期 is not a date (YYYY-MM-DD)")
    amounts = {
        direction: _cn_amount(number, header, field[direction])
        for direction, header in (("debit", "借方发生额"), ("credit", "贷方发生额"))
    }
    filled = [direction for direction, amount in amounts.items() if amount]
    if len(filled) != 1:
        raise StatementRejected(
            number, "借方发生额", "exactly one of 借方发生额 and 贷方发生额 must hold an amount"
        )
    check_reference(number, "交易流水号", field["bank_reference"])
    direction = filled[0]
    amount = amounts[direction]
    assert amount is not None
    return StatementLine(
        number, day, field["bank_reference"], amount, direction, field["counterparty"]
    )


def _cn_amount(number: int, header: str, text: str) -> Decimal | None:
    """An amount as a bank writes it (`12,345.67`), or None for an empty or zero cell."""
    if text in ("", "0", "0.00", "-"):
        return None
    if "," in text:
        if not _THOUSANDS_RE.fullmatch(text):
            raise StatementRejected(number, header, f"{header} has misplaced separators")
        text = text.replace(",", "")
    return statement_money(number, header, text)
