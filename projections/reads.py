"""Queries of the balance read models, with the derived amounts of CONTRACT §5."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from eventsourcing.postgres import PostgresDatastore

from ledger.errors import NotFound
from ledger.money import ZERO
from projections.balances import LINE_AMOUNTS, TALENT_AMOUNTS


def _line_amounts(row: dict[str, Any]) -> dict[str, Decimal]:
    amounts = {name: Decimal(row[name]) for name in LINE_AMOUNTS}
    amounts["available"] = amounts["appropriated"] - amounts["committed"]
    amounts["net_paid"] = amounts["paid"] - amounts["returned"]
    return amounts


def fund_year(datastore: PostgresDatastore, year: int) -> dict[str, Any]:
    """A fund year with each programme line and the totals over its lines."""
    with datastore.transaction(commit=False) as curs:
        curs.execute("SELECT year, currency, status FROM rm_fund_years WHERE year = %s", (year,))
        head = curs.fetchone()
        if head is None:
            raise NotFound(f"no fund year {year}")
        curs.execute("SELECT * FROM rm_lines WHERE year = %s ORDER BY programme", (year,))
        lines = [
            {"programme": row["programme"], "kind": row["kind"], **_line_amounts(row)}
            for row in curs.fetchall()
        ]
    totals = {
        name: sum((line[name] for line in lines), ZERO)
        for name in (*LINE_AMOUNTS, "available", "net_paid")
    }
    return {**head, "lines": lines, "totals": totals}


def talent_balances(datastore: PostgresDatastore, talent_id: str) -> list[dict[str, Any]]:
    """A talent's amounts per fund year and programme line."""
    with datastore.transaction(commit=False) as curs:
        curs.execute(
            "SELECT * FROM rm_talent_balances WHERE talent_id = %s ORDER BY year, programme",
            (talent_id,),
        )
        rows = curs.fetchall()
    balances = []
    for row in rows:
        amounts = {name: Decimal(row[name]) for name in TALENT_AMOUNTS}
        amounts["outstanding"] = amounts["approved"] - amounts["paid"] + amounts["returned"]
        amounts["clawback_due"] = amounts["clawback_assessed"] - amounts["clawback_recovered"]
        balances.append({"fund_year": row["year"], "programme": row["programme"], **amounts})
    return balances
