"""What each export holds (docs/api.md, "Exports"): its columns, and its rows as the
matching list or report gives them, read in one snapshot at the position the views it
reads stand at, with the chain's hash there. The file is written from that snapshot
(`ledger.adapters.spreadsheets`) before anything is sent."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from eventsourcing.postgres import PostgresDatastore

from ledger.adapters.chain import chain_hash_at
from ledger.adapters.postgres import snapshot
from ledger.adapters.spreadsheets import Column
from ledger.domain.errors import NotFound
from ledger.domain.reports import MONTHS
from ledger.domain.vocabulary import Lang, field_label
from projections import lists, reports
from projections.paging import Where, count, scan
from projections.tables import Curs
from projections.views.audit_trail import AuditTrail
from projections.views.balances import Balances
from projections.views.treasury import Treasury

T = TypeVar("T")
Filters = Mapping[str, Any]


@dataclass(frozen=True)
class Extract:
    """An export's columns and rows, and how many rows there are (known before they are
    read: a spreadsheet's sheet has a limit)."""

    columns: list[Column]
    count: int
    rows: Iterable[Any]


@dataclass(frozen=True)
class Export:
    views: tuple[str, ...]
    read: Callable[[Curs, Filters], Extract]


@dataclass(frozen=True)
class At:
    """Where in the history an export was read: every event up to `position`, whose
    chain hash is `chain_hash`."""

    position: int
    chain_hash: str


def _money(*fields: str) -> list[Column]:
    return [Column(f, "money") for f in fields]


AUDIT_TRAIL_COLUMNS = [
    Column("position", "int"),
    Column("recorded_at", "instant"),
    Column("event_type", "code", "event_type"),
    Column("fund_year", "int"),
    Column("programme", "code", "programme"),
    *map(Column, ("talent_id", "grant_id", "payment_id", "waiver_id", "clawback_id")),
    *map(Column, ("recovery_id", "bank_reference")),
    Column("amount", "money"),
    *map(Column, ("actor", "reason", "reference", "request_id", "hash")),
]
GRANT_COLUMNS = [
    *map(Column, ("grant_id", "talent_id")),
    Column("fund_year", "int"),
    Column("programme", "code", "programme"),
    Column("amount", "money"),
    *map(Column, ("policy_reference", "reason")),
    Column("status", "code", "grant_status"),
    *map(Column, ("proposed_by", "decision_by", "decision_note")),
    *_money("effective_amount", "paid", "returned", "net_paid", "payable", "clawed_back"),
]
PAYMENT_COLUMNS = [
    *map(Column, ("payment_id", "grant_id", "talent_id")),
    Column("fund_year", "int"),
    Column("programme", "code", "programme"),
    Column("amount", "money"),
    Column("value_date", "date"),
    Column("bank_reference"),
    Column("status", "code", "payment_status"),
    Column("returned_on", "date"),
    Column("return_reason"),
]
LINE_COLUMNS = [Column("programme", "code", "programme"), Column("kind", "code", "kind")]
YEAR_END_COLUMNS = [
    *LINE_COLUMNS,
    *_money("appropriated", "committed", "net_paid", "in_kind_value", "carried_forward"),
    *_money("pending", "lapsed", "clawback_recovered"),
]
MONTH_AMOUNTS = ("paid", "returned", "net_paid", "in_kind_value")


def _nested(group: str, field: str, label: Callable[[Lang], str], at: Any = None) -> Column:
    """A money column of a line's nested amounts: a month's (`at` its index) or the
    flows outside the year."""

    def get(line: Any) -> Any:
        return line[group][field] if at is None else line[group][at][field]

    return Column(f"{group}.{field}", "money", get=get, header=label)


def execution_columns(year: int) -> list[Column]:
    """A line's amounts and shares, then each month's amounts, then those outside the
    year, as columns: one row per line."""

    def month_label(month: int, field: str) -> Callable[[Lang], str]:
        return lambda lang: f"{year:04d}-{month:02d} {field_label(field, lang)}"

    def outside_label(field: str) -> Callable[[Lang], str]:
        return lambda lang: f"{field_label('outside_year', lang)} {field_label(field, lang)}"

    return [
        *LINE_COLUMNS,
        *_money("appropriated", "committed", "net_paid", "in_kind_value"),
        Column("execution_rate", "share"),
        Column("lag", "share"),
        *(
            _nested("months", field, month_label(month, field), month - 1)
            for month in MONTHS
            for field in MONTH_AMOUNTS
        ),
        *(_nested("outside_year", f, outside_label(f)) for f in ("paid", "returned", "net_paid")),
    ]


def _audit_trail(curs: Curs, filters: Filters) -> Extract:
    fund_year, talent_id = filters.get("fund_year"), filters.get("talent_id")
    if fund_year is not None:
        curs.execute("SELECT 1 FROM rm_fund_years WHERE year = %s", (fund_year,))
        if curs.fetchone() is None:
            raise NotFound(f"no fund year {fund_year}")
    if talent_id is not None:
        curs.execute("SELECT 1 FROM rm_talents WHERE talent_id = %s", (talent_id,))
        if curs.fetchone() is None:
            raise NotFound(f"no talent {talent_id}")
    where = Where()
    where.equal("fund_year", fund_year)
    where.equal("talent_id", talent_id)
    total = count(curs, "rm_audit_trail", where)
    return Extract(AUDIT_TRAIL_COLUMNS, total, scan(curs, "rm_audit_trail", where))


def _grants(curs: Curs, filters: Filters) -> Extract:
    where = lists.grant_where(**filters)
    total = count(curs, "rm_grants", where)
    return Extract(GRANT_COLUMNS, total, map(lists.grant_item, scan(curs, "rm_grants", where)))


def _payments(curs: Curs, filters: Filters) -> Extract:
    where = lists.payment_where(**filters)
    rows = map(lists.payment_item, scan(curs, "rm_payments", where))
    return Extract(PAYMENT_COLUMNS, count(curs, "rm_payments", where), rows)


def _execution(curs: Curs, filters: Filters) -> Extract:
    year: int = filters["fund_year"]
    on: date = filters["on"]
    report = reports.execution_at(curs, year, on)
    return Extract(execution_columns(year), len(report["lines"]), report["lines"])


def _year_end(curs: Curs, filters: Filters) -> Extract:
    report = reports.year_end_at(curs, filters["fund_year"])
    return Extract(YEAR_END_COLUMNS, len(report["lines"]), report["lines"])


EXPORTS: dict[str, Export] = {
    # a fund year's or a talent's existence is the balances' to say
    "audit-trail": Export((AuditTrail.NAME, Balances.NAME), _audit_trail),
    "grants": Export((Treasury.NAME,), _grants),
    "payments": Export((Treasury.NAME,), _payments),
    "execution": Export(reports.VIEWS, _execution),
    "year-end": Export(reports.VIEWS, _year_end),
}


def export(
    datastore: PostgresDatastore, name: str, filters: Filters, write: Callable[[Extract, At], T]
) -> T:
    """Read export `name` in one snapshot and `write` it there: what it holds is what was
    recorded up to the position the snapshot's views stand at."""
    spec = EXPORTS[name]
    with snapshot(datastore) as curs:
        position = reports.agreed_position(curs, spec.views)
        at = At(position, chain_hash_at(curs, position))
        return write(spec.read(curs, filters), at)
