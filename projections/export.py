"""The audit trail as CSV (RFC 4180, UTF-8), safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any

CSV_COLUMNS = (
    "position",
    "recorded_at",
    "event_type",
    "fund_year",
    "programme",
    "talent_id",
    "grant_id",
    "payment_id",
    "waiver_id",
    "clawback_id",
    "recovery_id",
    "bank_reference",
    "amount",
    "actor",
    "reason",
    "reference",
    "request_id",
    "hash",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t")


def _cell(value: Any) -> str:
    """A CSV cell; text a spreadsheet could run as a formula gets a leading quote."""
    if value is None:
        return ""
    text = value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def audit_csv(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """RFC 4180 lines (CRLF, quoted where needed), one chunk per row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
