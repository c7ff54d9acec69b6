"""Lists of the resources, oldest first, a page at a time (`projections.paging`).
Filters arrive validated, by name (None: not filtered), and combine with AND. Items
carry the same fields as the resource's single read."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import date
from typing import Any, LiteralString

import orjson
from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import DictRow

from ledger.adapters.postgres import statements
from ledger.domain.grants import effective_amount, payable
from ledger.domain.instalments import InstalmentPlan, schedule, shown
from ledger.domain.money import ZERO
from ledger.domain.reconciliation import BUCKETS
from ledger.domain.runs import run_status
from projections.paging import Page, Where, page
from projections.reads import fund_year_figures, talent_balances

Filters = Mapping[str, Any]


def grant_where(
    fund_year: int | None, programme: str | None, talent_id: str | None, status: str | None
) -> Where:
    where = Where()
    where.equal("year", fund_year)
    where.equal("programme", programme)
    where.equal("talent_id", talent_id)
    where.equal("status", status)
    return where


def grant_item(row: DictRow) -> dict[str, Any]:
    net_paid = row["paid"] - row["returned"]
    plan = (
        InstalmentPlan(row["instalment_count"], row["first_due_on"], row["interval_months"])
        if row["instalment_count"]
        else None
    )
    instalments = schedule(row["amount"], plan, row["approved_on"], net_paid)
    return {
        **row,
        "instalments": shown(row["status"], instalments),
        "fund_year": row["year"],
        "net_paid": net_paid,
        "effective_amount": effective_amount(row["status"], row["amount"], net_paid),
        "payable": payable(row["status"], row["amount"], net_paid, row["held"]),
        "on_hold": row["held"],
    }


def grants(datastore: PostgresDatastore, filters: Filters, after: int, limit: int) -> Page:
    rows, cursor = page(datastore, "rm_grants", grant_where(**filters), after, limit)
    return [grant_item(row) for row in rows], cursor


PAYMENT_STATUS: dict[str, LiteralString] = {
    "paid": "returned_on IS NULL",
    "returned": "returned_on IS NOT NULL",
}


def payment_where(
    fund_year: int | None,
    programme: str | None,
    talent_id: str | None,
    grant_id: str | None,
    status: str | None,
    value_date_from: date | None,
    value_date_to: date | None,
) -> Where:
    where = Where()
    where.equal("year", fund_year)
    where.equal("programme", programme)
    where.equal("talent_id", talent_id)
    where.equal("grant_id", grant_id)
    where.status(status, PAYMENT_STATUS)
    where.between("value_date", value_date_from, value_date_to)
    return where


def payment_item(row: DictRow) -> dict[str, Any]:
    status = "paid" if row["returned_on"] is None else "returned"
    return {**row, "fund_year": row["year"], "status": status}


def payments(datastore: PostgresDatastore, filters: Filters, after: int, limit: int) -> Page:
    rows, cursor = page(datastore, "rm_payments", payment_where(**filters), after, limit)
    return [payment_item(row) for row in rows], cursor


WAIVER_STATUS: dict[str, LiteralString] = {
    "active": "ended_on IS NULL",
    "ended": "ended_on IS NOT NULL",
}


def waivers(datastore: PostgresDatastore, filters: Filters, after: int, limit: int) -> Page:
    where = Where()
    where.equal("year", filters["fund_year"])
    where.equal("talent_id", filters["talent_id"])
    where.status(filters["status"], WAIVER_STATUS)
    rows, cursor = page(datastore, "rm_waivers", where, after, limit)
    keys = wrapped_keys(datastore, [row["talent_id"] for row in rows])
    items = [
        {
            **row,
            "fund_year": row["year"],
            "status": "active" if row["ended_on"] is None else "ended",
            "wrapped_key": keys.get(row["talent_id"]),
        }
        for row in rows
    ]
    return items, cursor


def wrapped_keys(datastore: PostgresDatastore, talent_ids: list[str]) -> dict[str, bytes | None]:
    """The talents' data keys as stored (wrapped), to open their personal data with."""
    with statements(datastore) as curs:
        curs.execute(
            "SELECT talent_id, wrapped FROM talent_keys WHERE talent_id = ANY(%s)", (talent_ids,)
        )
        return {row["talent_id"]: row["wrapped"] for row in curs.fetchall()}


CLAWBACK_STATUS: dict[str, LiteralString] = {
    "open": "recovered < amount",
    "recovered": "recovered >= amount",
}


def clawbacks(datastore: PostgresDatastore, filters: Filters, after: int, limit: int) -> Page:
    """Clawbacks, each with its recoveries (one query for the page's)."""
    where = Where()
    where.equal("year", filters["fund_year"])
    where.equal("talent_id", filters["talent_id"])
    where.status(filters["status"], CLAWBACK_STATUS)
    rows, cursor = page(datastore, "rm_clawbacks", where, after, limit)
    recoveries: dict[str, list[DictRow]] = defaultdict(list)
    if rows:
        with statements(datastore) as curs:
            curs.execute(
                "SELECT * FROM rm_recoveries WHERE clawback_id = ANY(%s) ORDER BY position",
                ([row["clawback_id"] for row in rows],),
            )
            for recovery in curs.fetchall():
                recoveries[recovery["clawback_id"]].append(recovery)
    items = []
    for row in rows:
        due = row["amount"] - row["recovered"]
        items.append(
            {
                **row,
                "fund_year": row["year"],
                "due": due,
                "status": "recovered" if due == ZERO else "open",
                "recoveries": recoveries[row["clawback_id"]],
            }
        )
    return items, cursor


TALENT_STATUS: dict[str, LiteralString] = {
    "active": "departed_on IS NULL",
    "departed": "departed_on IS NOT NULL",
}


def talents(datastore: PostgresDatastore, filters: Filters, after: int, limit: int) -> Page:
    """Talents with their balances as they stand, and each one's wrapped data key (to
    reveal the name with)."""
    where = Where()
    where.equal("category", filters["category"])
    where.equal("employer", filters["employer"])
    where.status(filters["status"], TALENT_STATUS)
    where.between("arrived_on", filters["arrived_from"], filters["arrived_to"])
    rows, cursor = page(datastore, "rm_talents", where, after, limit, "registered_position")
    ids = [row["talent_id"] for row in rows]
    balances = talent_balances(datastore, ids)
    keys = wrapped_keys(datastore, ids)
    items = [
        {
            **row,
            "wrapped_key": keys.get(row["talent_id"]),
            "status": "active" if row["departed_on"] is None else "departed",
            "balances": balances[row["talent_id"]],
        }
        for row in rows
    ]
    return items, cursor


FUND_YEAR_STATUS: dict[str, LiteralString] = {
    "open": "closed_position IS NULL",
    "closed": "closed_position IS NOT NULL",
}


def fund_years(datastore: PostgresDatastore, filters: Filters, after: int, limit: int) -> Page:
    """Fund years with their lines and totals as they stand."""
    where = Where()
    where.status(filters["status"], FUND_YEAR_STATUS)
    rows, cursor = page(datastore, "rm_fund_years", where, after, limit, "opened_position")
    figures = fund_year_figures(datastore, [row["year"] for row in rows])
    items = [
        {
            "year": row["year"],
            "currency": row["currency"],
            "status": "open" if row["closed_position"] is None else "closed",
            **figures[row["year"]],
        }
        for row in rows
    ]
    return items, cursor


def reconciliations(datastore: PostgresDatastore, filters: Filters, after: int, limit: int) -> Page:
    """Reconciliations whose statement's period meets [from, to]."""
    where = Where()
    if filters["value_date_from"] is not None:
        where.add("period_to >= %s", filters["value_date_from"])
    if filters["value_date_to"] is not None:
        where.add("period_from <= %s", filters["value_date_to"])
    rows, cursor = page(datastore, "rm_reconciliations", where, after, limit)
    items = [
        {
            "reconciliation_id": row["reconciliation_id"],
            "period": {"from": row["period_from"], "to": row["period_to"]},
            "line_count": row["line_count"],
            "counts": {bucket: row[bucket] for bucket in BUCKETS},
            "recorded_at": row["recorded_at"],
        }
        for row in rows
    ]
    return items, cursor


#: a run's status, as a condition on its counts of items (`DisbursementRun.status`)
RUN_STATUS: dict[str, LiteralString] = {
    "prepared": "settled + rejected = 0",
    "partially_settled": "settled + rejected BETWEEN 1 AND items - 1",
    "settled": "settled + rejected = items",
}


def disbursement_runs(
    datastore: PostgresDatastore, filters: Filters, after: int, limit: int
) -> Page:
    where = Where()
    where.equal("year", filters["fund_year"])
    if filters["status"] is not None:
        where.add(RUN_STATUS[filters["status"]])
    rows, cursor = page(datastore, "rm_disbursement_runs", where, after, limit)
    items = [
        {
            **row,
            "fund_year": row["year"],
            "excluded": orjson.loads(row["excluded"]),
            "status": run_status(row["items"], row["settled"] + row["rejected"]),
        }
        for row in rows
    ]
    return items, cursor
