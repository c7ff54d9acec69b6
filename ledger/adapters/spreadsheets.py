"""Files people open in a spreadsheet: CSV (RFC 4180, UTF-8) and XLSX, written from
typed columns, one header row and one row per item.

Each cell is written as its type says, never guessed from its text: in XLSX money is a
number formatted `#,##0.00`, a date a date, a share a number formatted `0.0000`, text
a text cell, so that no text, whatever it begins with, ever becomes a formula (XlsxWriter
would otherwise turn a text starting with `=` into one). In CSV, which a spreadsheet
reads by guessing, a text that could run as a formula gets a leading `'`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import IO, Any, Literal

import xlsxwriter

from ledger.domain.money import format_money
from ledger.domain.vocabulary import Lang, code_label, field_label

Kind = Literal["text", "code", "money", "date", "instant", "int", "share"]
XLSX_MAX_ROWS = 1_048_575  # a sheet's rows, less the header
BOM = "\ufeff"
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Column:
    """A column: the field it shows (its header is the field's label), how its cells
    are typed, the code set its codes are labelled from, and how a row gives its value
    (by default, the row's value under `field`)."""

    field: str
    kind: Kind = "text"
    codes: str | None = None
    get: Callable[[Any], Any] | None = None
    header: Callable[[Lang], str] | None = None

    def value(self, row: Any) -> Any:
        return self.get(row) if self.get else row[self.field]

    def title(self, lang: Lang) -> str:
        if self.header:
            return self.header(lang)
        title = field_label(self.field, lang)
        return f"{title} (UTC)" if self.kind == "instant" else title

    def label(self, value: Any, lang: Lang) -> Any:
        """A code as people read it; any other value as it is."""
        if self.codes is None or value is None:
            return value
        return code_label(self.codes, str(value), lang)


def _utc(instant: datetime) -> datetime:
    return instant.astimezone(UTC)


# --- CSV ----------------------------------------------------------------------------


def _csv_cell(column: Column, value: Any) -> str:
    if value is None:
        return ""
    if column.kind == "money":
        return format_money(value)
    if column.kind == "instant":
        return _utc(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    if column.kind in ("text", "code") and text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


def write_csv(
    columns: Sequence[Column], rows: Iterable[Any], lang: Lang, out: IO[bytes], *, bom: bool
) -> int:
    """RFC 4180 (CRLF, quoted where needed) in UTF-8, a byte-order mark first if `bom`
    (for Excel on Chinese Windows); returns the rows written."""
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    try:
        if bom:
            text.write(BOM)
        writer = csv.writer(text, lineterminator="\r\n")
        writer.writerow([c.title(lang) for c in columns])
        count = 0
        for row in rows:
            writer.writerow([_csv_cell(c, c.label(c.value(row), lang)) for c in columns])
            count += 1
        return count
    finally:
        text.detach()  # the caller's file stays open


# --- XLSX ---------------------------------------------------------------------------

_NUMBER_FORMATS = {
    "money": "#,##0.00",
    "share": "0.0000",
    "date": "yyyy-mm-dd",
    "instant": "yyyy-mm-dd hh:mm:ss",
    "int": "0",
}


def write_xlsx(
    columns: Sequence[Column],
    rows: Iterable[Any],
    lang: Lang,
    out: IO[bytes],
    manifest: Callable[[int], Sequence[tuple[str, Any]]],
) -> int:
    """A workbook of two sheets: the data (one header row, one row per item, cells
    typed by their column), then `manifest`, the (name, value) pairs `manifest(rows)`
    gives; returns the rows written. Rows beyond a sheet's limit are the caller's to
    refuse beforehand."""
    book = xlsxwriter.Workbook(
        out,
        {
            "constant_memory": True,  # rows go to disk as they are written
            "strings_to_formulas": False,
            "strings_to_numbers": False,
            "strings_to_urls": False,
            "default_date_format": "yyyy-mm-dd",
        },
    )
    header = book.add_format({"bold": True})
    formats = {kind: book.add_format({"num_format": f}) for kind, f in _NUMBER_FORMATS.items()}
    sheet = book.add_worksheet("data")
    for x, column in enumerate(columns):
        sheet.write_string(0, x, column.title(lang), header)
        sheet.set_column(x, x, 14 if column.kind != "text" else 20)
    count = 0
    for y, row in enumerate(rows, 1):
        for x, column in enumerate(columns):
            _xlsx_cell(sheet, y, x, column, column.label(column.value(row), lang), formats)
        count = y
    sheet.freeze_panes(1, 0)
    info = book.add_worksheet("manifest")
    info.set_column(0, 0, 24)
    info.set_column(1, 1, 70)
    for y, (name, value) in enumerate(manifest(count)):
        info.write_string(y, 0, name, header)
        if isinstance(value, int):
            info.write_number(y, 1, value, formats["int"])
        else:
            info.write_string(y, 1, "" if value is None else str(value))
    book.close()
    return count


def _xlsx_cell(
    sheet: Any, y: int, x: int, column: Column, value: Any, formats: dict[str, Any]
) -> None:
    if value is None:
        return
    kind = column.kind
    if kind in ("money", "int", "share"):  # a share is the text "0.1800"
        number = value if isinstance(value, int) else float(Decimal(value))
        sheet.write_number(y, x, number, formats[kind])
    elif kind == "instant":
        sheet.write_datetime(y, x, _utc(value).replace(tzinfo=None), formats["instant"])
    elif kind == "date":
        sheet.write_datetime(y, x, value, formats["date"])
    else:
        sheet.write_string(y, x, str(value))
