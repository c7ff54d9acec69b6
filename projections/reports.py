"""The facts of a fund year's reports (`ledger.domain.reports`), read from the balances
and treasury views in one snapshot (`ledger.adapters.postgres.snapshot`), so that both
views stand at the same position."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any, LiteralString

from eventsourcing.postgres import PostgresDatastore
from psycopg import sql

from ledger.adapters.postgres import snapshot
from ledger.domain.budget import LineKind
from ledger.domain.errors import NotFound, NotReached
from ledger.domain.reports import Flows, Line, Waiver, YearEndLine, execution, year_end
from projections.tables import Curs
from projections.views.balances import Balances
from projections.views.treasury import Treasury

VIEWS = (Balances.NAME, Treasury.NAME)


def agreed_position(curs: Curs, names: Sequence[str] = VIEWS) -> int:
    """The one position the views stand at; while one is rebuilt alone they differ,
    and a report joining them would mix two moments (a 503 until they agree)."""
    curs.execute("SELECT position FROM projection_tracking WHERE name = ANY(%s)", (list(names),))
    positions = {row["position"] for row in curs.fetchall()}
    if len(positions) != 1:
        raise NotReached(max(positions, default=0))
    return int(positions.pop())


def _fund_year(curs: Curs, year: int) -> dict[str, Any]:
    curs.execute("SELECT * FROM rm_fund_years WHERE year = %s", (year,))
    row = curs.fetchone()
    if row is None:
        raise NotFound(f"no fund year {year}")
    return row


def _by_month(rows: list[Any]) -> dict[str, dict[date, Decimal]]:
    out: dict[str, dict[date, Decimal]] = defaultdict(dict)
    for row in rows:
        out[row["programme"]][row["month"]] = row["amount"]
    return out


def _monthly(
    curs: Curs, year: int, column: LiteralString, on: date
) -> dict[str, dict[date, Decimal]]:
    """The year's payments summed per programme and month of `column`, up to `on`."""
    curs.execute(
        sql.SQL(
            "SELECT programme, date_trunc('month', {0})::date AS month, sum(amount) AS amount "
            "FROM rm_payments WHERE year = %s AND {0} <= %s GROUP BY 1, 2"
        ).format(sql.Identifier(column)),
        (year, on),
    )
    return _by_month(curs.fetchall())


def execution_at(curs: Curs, year: int, on: date) -> dict[str, Any]:
    """The budget execution of fund year `year` by business date `on`, read with a
    cursor of a snapshot."""
    _fund_year(curs, year)
    curs.execute(
        "SELECT programme, kind, appropriated, committed FROM rm_lines WHERE year = %s "
        "ORDER BY programme",
        (year,),
    )
    lines = [
        Line(r["programme"], LineKind(r["kind"]), r["appropriated"], r["committed"])
        for r in curs.fetchall()
    ]
    flows = Flows(_monthly(curs, year, "value_date", on), _monthly(curs, year, "returned_on", on))
    curs.execute(
        "SELECT programme, start_on, months, monthly_rent FROM rm_waivers WHERE year = %s",
        (year,),
    )
    waivers = [Waiver(**row) for row in curs.fetchall()]
    return execution(year, on, lines, flows, waivers)


def year_end_at(curs: Curs, year: int) -> dict[str, Any]:
    """The year-end statement of fund year `year` as it stands, read with a cursor of
    a snapshot."""
    fund_year = _fund_year(curs, year)
    curs.execute(
        "SELECT l.programme, l.kind, l.appropriated, l.committed, "
        "l.paid - l.returned AS net_paid, l.in_kind_value, l.clawback_recovered, "
        "coalesce(g.carried_forward, 0) AS carried_forward, "
        "coalesce(g.pending, 0) AS pending "
        "FROM rm_lines l LEFT JOIN ("
        "  SELECT programme,"
        "  sum(amount - paid + returned) FILTER (WHERE status = 'approved') "
        "    AS carried_forward,"
        "  sum(amount) FILTER (WHERE status = 'proposed') AS pending"
        "  FROM rm_grants WHERE year = %(year)s GROUP BY programme"
        ") g ON g.programme = l.programme "
        "WHERE l.year = %(year)s ORDER BY l.programme",
        {"year": year},
    )
    lines = [YearEndLine(**{**row, "kind": LineKind(row["kind"])}) for row in curs.fetchall()]
    return {
        "year": year,
        "status": "open" if fund_year["closed_position"] is None else "closed",
        "closed_at": fund_year["closed_at"],
        "checkpoint_id": None,  # the checkpoint signed at closing: none are signed yet
        **year_end(lines),
    }


def execution_report(datastore: PostgresDatastore, year: int, on: date) -> dict[str, Any]:
    """`execution_at` in a snapshot of its own, with the position it was read at."""
    with snapshot(datastore) as curs:
        return {"position": agreed_position(curs), **execution_at(curs, year, on)}


def year_end_report(datastore: PostgresDatastore, year: int) -> dict[str, Any]:
    """`year_end_at` in a snapshot of its own, with the position it was read at."""
    with snapshot(datastore) as curs:
        return {"position": agreed_position(curs), **year_end_at(curs, year)}
