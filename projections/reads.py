"""Queries of the read models: balances now or as of a position, histories, journal.

An as-of read takes, for each line or talent balance, its latest version at or
before the position: one index probe each, whatever the length of the history.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any, LiteralString

from eventsourcing.postgres import PostgresDatastore
from psycopg import sql
from psycopg.rows import DictRow, args_row

from ledger.adapters.postgres import EVENTS_TABLE, statements
from ledger.adapters.replica import primary_of
from ledger.domain.audit_exceptions import (
    ClawbackFacts,
    Facts,
    GrantFacts,
    PaymentFacts,
    RunItemFacts,
    StatementFacts,
    TalentFacts,
    UnmatchedLine,
    WaiverFacts,
)
from ledger.domain.budget import available
from ledger.domain.errors import NotFound, NotReached
from ledger.domain.instalments import InstalmentPlan
from ledger.domain.money import ZERO
from ledger.domain.reconciliation import (
    DATE_TOLERANCE_DAYS,
    Movement,
    PreviousStatement,
    Statement,
)
from projections.paging import Where, page
from projections.tables import Curs
from projections.views.balances import LINE_AMOUNTS, TALENT_AMOUNTS, Balances
from projections.waits import reach


def position_at(datastore: PostgresDatastore, instant: datetime) -> int:
    """The last position recorded at or before `instant` (recorded_at rises with it),
    asked of the primary: a standby may not have replayed every event recorded by then,
    and the read must wait for them, not leave them out."""
    with statements(primary_of(datastore)) as curs:
        curs.execute(
            sql.SQL(
                "SELECT notification_id FROM {} WHERE recorded_at <= %s "
                "ORDER BY recorded_at DESC, notification_id DESC LIMIT 1"
            ).format(sql.Identifier(EVENTS_TABLE)),
            (instant,),
        )
        row = curs.fetchone()
    return int(row["notification_id"]) if row else 0


def _line_amounts(row: dict[str, Any]) -> dict[str, Decimal]:
    amounts = {name: row[name] for name in LINE_AMOUNTS}
    amounts["available"] = available(amounts["appropriated"], amounts["committed"])
    amounts["net_paid"] = amounts["paid"] - amounts["returned"]
    return amounts


_PINNED = sql.SQL(
    "SELECT pin.reached, pin.at, q.* FROM ("
    "  SELECT position AS reached, coalesce(%(asked)s, position) AS at"
    "  FROM projection_tracking WHERE name = %(view)s) pin "
    "LEFT JOIN LATERAL ({query}) q ON pin.reached >= pin.at ORDER BY {order}"
)


def _pinned(
    datastore: PostgresDatastore,
    query: LiteralString,
    order: LiteralString,
    params: dict[str, Any],
    at: int | None,
    view: str = Balances.NAME,
) -> tuple[int, list[DictRow]]:
    """The rows of `query` as of position `at` (or, without one, the view's own), and
    that position. One statement both checks how far the view is and reads, as of
    `pin.at`: its rows agree whatever batch commits meanwhile (a rebuild aside, which
    empties the tables). Short of `at`, it reads nothing, waits as `min_position`
    does, and reads again. Without a match, the one row has only `reached` and `at`."""
    statement = _PINNED.format(query=sql.SQL(query), order=sql.SQL(order))
    values = {**params, "asked": at, "view": view}

    def fetch(datastore: PostgresDatastore) -> list[DictRow]:
        with statements(datastore) as curs:
            curs.execute(statement, values)
            return curs.fetchall()

    rows = fetch(datastore)
    assert rows, "projection_tracking is not migrated"
    position: int = rows[0]["at"]
    if rows[0]["reached"] < position:
        rows = fetch(reach(datastore, position, (view,), "as_of_position"))
        # short again only if a rebuild started meanwhile
        if rows[0]["reached"] < position:
            raise NotReached(position)
    return position, rows


def fund_year(datastore: PostgresDatastore, year: int, at: int | None = None) -> dict[str, Any]:
    """A fund year with each programme line and the totals, as of position `at`."""
    position, rows = _pinned(
        datastore,
        "SELECT f.currency, f.closed_position, v.* FROM rm_fund_years f "
        "LEFT JOIN LATERAL (SELECT v.* FROM rm_lines k CROSS JOIN LATERAL ("
        "    SELECT * FROM rm_line_versions v WHERE v.year = k.year"
        "    AND v.programme = k.programme AND v.position <= pin.at"
        "    ORDER BY v.position DESC LIMIT 1) v"
        "  WHERE k.year = f.year) v ON true "
        "WHERE f.year = %(year)s AND f.opened_position <= pin.at",
        "q.programme",
        {"year": year},
        at,
    )
    head = rows[0]
    if head["currency"] is None:
        raise NotFound(f"no fund year {year}")
    closed = head["closed_position"] is not None and head["closed_position"] <= position
    return {
        "year": year,
        "currency": head["currency"],
        "status": "closed" if closed else "open",
        **_lines_and_totals([row for row in rows if row["programme"] is not None]),
    }


def _lines_and_totals(rows: list[DictRow]) -> dict[str, Any]:
    """A fund year's lines, from their rows (as they stand, or as of a position), and
    the totals of each amount."""
    lines = [
        {"programme": row["programme"], "kind": row["kind"], **_line_amounts(row)} for row in rows
    ]
    totals = {
        name: sum((line[name] for line in lines), ZERO)
        for name in (*LINE_AMOUNTS, "available", "net_paid")
    }
    return {"lines": lines, "totals": totals}


def fund_year_figures(datastore: PostgresDatastore, years: list[int]) -> dict[int, Any]:
    """The lines and totals of these fund years as they stand, in one query."""
    with statements(datastore) as curs:
        curs.execute(
            "SELECT * FROM rm_lines WHERE year = ANY(%s) ORDER BY year, programme", (years,)
        )
        rows = curs.fetchall()
    by_year: dict[int, list[DictRow]] = {year: [] for year in years}
    for row in rows:
        by_year[row["year"]].append(row)
    return {year: _lines_and_totals(lines) for year, lines in by_year.items()}


def _balance(row: DictRow) -> dict[str, Any]:
    """A talent's balance on one line, from its row (as it stands, or as of a position)."""
    amounts = {name: row[name] for name in TALENT_AMOUNTS}
    amounts["outstanding"] = amounts["approved"] - amounts["paid"] + amounts["returned"]
    amounts["clawback_due"] = amounts["clawback_assessed"] - amounts["clawback_recovered"]
    return {"fund_year": row["year"], "programme": row["programme"], **amounts}


def talent_balances(datastore: PostgresDatastore, talent_ids: list[str]) -> dict[str, Any]:
    """The balances of these talents as they stand, in one query."""
    with statements(datastore) as curs:
        curs.execute(
            "SELECT * FROM rm_talent_balances WHERE talent_id = ANY(%s) "
            "ORDER BY talent_id, year, programme",
            (talent_ids,),
        )
        rows = curs.fetchall()
    balances: dict[str, list[dict[str, Any]]] = {talent_id: [] for talent_id in talent_ids}
    for row in rows:
        balances[row["talent_id"]].append(_balance(row))
    return balances


def talent(datastore: PostgresDatastore, talent_id: str, at: int | None = None) -> dict[str, Any]:
    """A talent's profile, status and balances as of position `at`, with its wrapped
    data key as it is now (None once destroyed) to reveal the name."""
    position, rows = _pinned(
        datastore,
        "SELECT t.sealed_name, t.sealed_bank_account, t.category, t.employer, t.arrived_on, "
        "t.service_commitment_until, t.departed_on, t.departure_reason, "
        "t.departed_position, k.wrapped AS wrapped_key, v.* FROM rm_talents t "
        "LEFT JOIN talent_keys k ON k.talent_id = t.talent_id "
        "LEFT JOIN LATERAL (SELECT v.* FROM rm_talent_balances b CROSS JOIN LATERAL ("
        "    SELECT * FROM rm_talent_balance_versions v WHERE v.talent_id = b.talent_id"
        "    AND v.year = b.year AND v.programme = b.programme AND v.position <= pin.at"
        "    ORDER BY v.position DESC LIMIT 1) v"
        "  WHERE b.talent_id = t.talent_id) v ON true "
        "WHERE t.talent_id = %(id)s AND t.registered_position <= pin.at",
        "q.year, q.programme",
        {"id": talent_id},
        at,
    )
    profile = rows[0]
    if profile["sealed_name"] is None:
        raise NotFound(f"no talent {talent_id}")
    balances = [_balance(row) for row in rows if row["programme"] is not None]
    departed = profile["departed_position"] is not None and profile["departed_position"] <= position
    return {
        "talent_id": talent_id,
        "sealed_name": profile["sealed_name"],
        "sealed_bank_account": profile["sealed_bank_account"],
        "wrapped_key": profile["wrapped_key"],
        "category": profile["category"],
        "employer": profile["employer"],
        "arrived_on": profile["arrived_on"],
        "service_commitment_until": profile["service_commitment_until"],
        "status": "departed" if departed else "active",
        "departed_on": profile["departed_on"] if departed else None,
        "departure_reason": profile["departure_reason"] if departed else None,
        "balances": balances,
    }


# --- audit trail ------------------------------------------------------------------


def history(
    datastore: PostgresDatastore,
    *,
    talent_id: str | None = None,
    fund_year: int | None = None,
    after: int = 0,
    limit: int = 100,
) -> tuple[list[DictRow], str | None]:
    """Audit-trail entries oldest first, of one talent, one fund year or all, after
    position `after`; with the cursor of the next page, if any."""
    if talent_id is not None and not exists_talent(datastore, talent_id):
        raise NotFound(f"no talent {talent_id}")
    if fund_year is not None and not exists_fund_year(datastore, fund_year):
        raise NotFound(f"no fund year {fund_year}")
    where = Where()
    where.equal("talent_id", talent_id)
    where.equal("fund_year", fund_year)
    rows, cursor = page(datastore, "rm_audit_trail", where, after, limit)
    return [_in_utc(row) for row in rows], cursor


def audit_rows(datastore: PostgresDatastore, fund_year: int | None) -> Iterator[dict[str, Any]]:
    """Every audit-trail entry (of one fund year), streamed with a server-side cursor."""
    where = sql.SQL("WHERE fund_year = %s") if fund_year is not None else sql.SQL("")
    params = (fund_year,) if fund_year is not None else ()
    with (
        datastore.get_connection() as conn,
        conn.transaction(),
        conn.cursor(name="audit_export") as cursor,
    ):
        cursor.itersize = 2000
        cursor.execute(
            sql.SQL("SELECT * FROM rm_audit_trail {} ORDER BY position").format(where), params
        )
        yield from map(_in_utc, cursor)


def exists_talent(datastore: PostgresDatastore, talent_id: str) -> bool:
    with datastore.transaction(commit=False) as curs:
        curs.execute("SELECT 1 FROM rm_talents WHERE talent_id = %s", (talent_id,))
        return curs.fetchone() is not None


def exists_fund_year(datastore: PostgresDatastore, year: int) -> bool:
    with datastore.transaction(commit=False) as curs:
        curs.execute("SELECT 1 FROM rm_fund_years WHERE year = %s", (year,))
        return curs.fetchone() is not None


# --- journal ----------------------------------------------------------------------


def trial_balance(datastore: PostgresDatastore, year: int) -> dict[str, Any]:
    """Each account's net balance on its side; total debits equal total credits."""
    with datastore.transaction(commit=False) as curs:
        curs.execute("SELECT 1 FROM rm_fund_years WHERE year = %s", (year,))
        if curs.fetchone() is None:
            raise NotFound(f"no fund year {year}")
        curs.execute(
            "SELECT account, programme, debit, credit FROM rm_accounts WHERE year = %s "
            "ORDER BY programme, account",
            (year,),
        )
        rows = curs.fetchall()
    accounts = []
    for row in rows:
        net = row["debit"] - row["credit"]
        accounts.append(
            {
                "account": f"{row['account']}:{row['programme']}",
                "programme": row["programme"],
                "debit": max(net, ZERO),
                "credit": max(-net, ZERO),
            }
        )
    return {
        "fund_year": year,
        "accounts": accounts,
        "total_debit": sum((a["debit"] for a in accounts), ZERO),
        "total_credit": sum((a["credit"] for a in accounts), ZERO),
    }


# --- treasury and exceptions --------------------------------------------------------


def movements(datastore: PostgresDatastore, statement: Statement) -> list[Movement]:
    """The ledger's bank movements a statement may match: those with its references
    (as bank reference, or as payment id), and every payment inside its period (which
    the bank should show) or a few days either side (which a line of an unknown
    reference may be)."""
    references = {line.bank_reference for line in statement.lines}
    first, last = statement.period
    near = timedelta(DATE_TOLERANCE_DAYS)
    with datastore.transaction(commit=False) as dict_curs:
        # 200,000 rows: straight into tuples, sorted in memory rather than on disk
        curs = dict_curs.connection.cursor(row_factory=args_row(Movement))
        curs.execute("SET LOCAL work_mem = '64MB'")
        curs.execute(
            # the references go as one text (no reference holds a line break): a
            # 100,000-element array costs more to format in Python than to match
            "WITH refs AS (SELECT unnest(string_to_array(%(refs)s, E'\\n')) AS ref) "
            # byte order, whatever the server's locale: the same report everywhere
            "SELECT 'payment' AS kind, 'debit' AS direction,"
            '       bank_reference COLLATE "C" AS bank_reference, amount, value_date,'
            "       payment_id, NULL AS clawback_id, NULL AS recovery_id, talent_id,"
            "       EXISTS (SELECT 1 FROM rm_reconciled_payments c"
            "               WHERE c.payment_id = p.payment_id) AS reconciled"
            "  FROM rm_payments p WHERE bank_reference IN (SELECT ref FROM refs)"
            "    OR payment_id IN (SELECT ref FROM refs)"
            "    OR value_date BETWEEN %(first)s AND %(last)s "
            "UNION ALL "
            "SELECT 'return', 'credit', bank_reference, amount, returned_on, payment_id,"
            "       NULL, NULL, talent_id, false FROM rm_payments"
            " WHERE returned_on IS NOT NULL AND (bank_reference IN (SELECT ref FROM refs)"
            "   OR payment_id IN (SELECT ref FROM refs)) "
            "UNION ALL "
            "SELECT 'recovery', 'credit', r.bank_reference, r.amount, r.value_date, NULL,"
            "       r.clawback_id, r.recovery_id, c.talent_id, false FROM rm_recoveries r"
            "  JOIN rm_clawbacks c ON c.clawback_id = r.clawback_id"
            " WHERE r.bank_reference IN (SELECT ref FROM refs) "
            "ORDER BY value_date, bank_reference",
            {"refs": "\n".join(references), "first": first - near, "last": last + near},
        )
        return curs.fetchall()


def previous_statement(
    datastore: PostgresDatastore, statement: Statement
) -> PreviousStatement | None:
    """The latest statement of the same account that closed before this one closes
    (the latest recorded, of two closing on one day); None for a statement without
    balances."""
    if statement.account is None or statement.closing is None:
        return None
    with datastore.transaction(commit=False) as curs:
        curs.execute(
            "SELECT reconciliation_id, closing, closing_on FROM rm_reconciliations "
            "WHERE account = %s AND closing_on < %s "
            "ORDER BY closing_on DESC, position DESC LIMIT 1",
            (statement.account, statement.closing.on),
        )
        row = curs.fetchone()
    return PreviousStatement(**row) if row else None


def _in_utc(row: DictRow) -> DictRow:
    """An audit entry with its instant in UTC, whatever the session's time zone."""
    row["recorded_at"] = row["recorded_at"].astimezone(UTC)
    return row


def _business_day(instant: datetime, zone: tzinfo) -> date:
    """The business date of an instant: its date in the ledger's time zone."""
    return instant.astimezone(zone).date()


def exception_facts(datastore: PostgresDatastore, fund_year: int | None, zone: tzinfo) -> Facts:
    """What the exception rules judge, of one fund year (or all), approvals and
    assessments dated in the business time zone `zone`."""
    year_filter = sql.SQL("WHERE year = %(year)s") if fund_year is not None else sql.SQL("")
    params = {"year": fund_year}
    with datastore.transaction(commit=False) as curs:

        def rows(query: str) -> list[DictRow]:
            curs.execute(sql.SQL(query).format(where=year_filter), params)
            return curs.fetchall()

        grants = [
            GrantFacts(
                r["grant_id"],
                r["talent_id"],
                r["year"],
                r["programme"],
                r["amount"],
                r["status"],
                r["approved_on"],
                r["paid"] - r["returned"],
                r["clawed_back"],
                InstalmentPlan(r["instalment_count"], r["first_due_on"], r["interval_months"])
                if r["instalment_count"]
                else None,
            )
            for r in rows("SELECT * FROM rm_grants {where}")
        ]
        waivers = [
            WaiverFacts(
                r["waiver_id"],
                r["talent_id"],
                r["year"],
                r["start_on"],
                r["ended_on"] or r["end_on"],
            )
            for r in rows(
                "SELECT * FROM rm_waivers WHERE talent_id IN "
                "(SELECT talent_id FROM rm_grants {where})"
            )
        ]
        pending_run_items = [
            RunItemFacts(
                r["run_id"], r["payment_id"], r["grant_id"], r["talent_id"], r["value_date"]
            )
            for r in rows(
                "SELECT * FROM rm_disbursement_run_items i WHERE NOT EXISTS (SELECT FROM"
                " rm_disbursement_run_answers a WHERE a.payment_id = i.payment_id)"
                " AND grant_id IN (SELECT grant_id FROM rm_grants {where})"
                " ORDER BY run_id, payment_id"
            )
        ]
        talents = [
            TalentFacts(
                r["talent_id"], r["arrived_on"], r["service_commitment_until"], r["departed_on"]
            )
            for r in rows(
                "SELECT * FROM rm_talents WHERE talent_id IN "
                "(SELECT talent_id FROM rm_grants {where})"
            )
        ]
        payments = [
            PaymentFacts(
                r["payment_id"],
                r["talent_id"],
                r["year"],
                r["programme"],
                r["amount"],
                r["value_date"],
                r["returned_on"] is not None,
            )
            for r in rows("SELECT * FROM rm_payments {where}")
        ]
        clawbacks = [
            ClawbackFacts(
                r["clawback_id"],
                r["grant_id"],
                r["talent_id"],
                r["year"],
                r["amount"],
                r["recovered"],
                _business_day(r["assessed_at"], zone),
            )
            for r in rows("SELECT * FROM rm_clawbacks {where}")
        ]
        line_filter = (
            sql.SQL("WHERE extract(year FROM value_date) = %(year)s")
            if fund_year is not None
            else sql.SQL("")
        )
        curs.execute(
            sql.SQL(
                "SELECT reconciliation_id, bucket, bank_reference, amount, value_date "
                "FROM rm_reconciliation_lines {} ORDER BY reconciliation_id, seq"
            ).format(line_filter),
            params,
        )
        unmatched = [UnmatchedLine(**r) for r in curs.fetchall()]
        statements = _statement_facts(curs, fund_year)
    return Facts(
        talents, grants, payments, clawbacks, unmatched, statements, waivers, pending_run_items
    )


_STATEMENTS = (
    "SELECT reconciliation_id, account, opening, closing, closing_on, position "
    "FROM rm_reconciliations WHERE account IS NOT NULL"
)
_STATEMENTS_OF_A_YEAR = (
    "SELECT reconciliation_id, account, opening, closing, closing_on, position "
    "FROM rm_reconciliations "
    "WHERE account IS NOT NULL AND extract(year FROM closing_on) = %(year)s "
    "UNION ALL ("
    "SELECT DISTINCT ON (account) reconciliation_id, account, opening, closing, closing_on,"
    " position FROM rm_reconciliations"
    " WHERE account IS NOT NULL AND closing_on < make_date(%(year)s, 1, 1)"
    " ORDER BY account, closing_on DESC, position DESC)"
)


def _statement_facts(curs: Curs, fund_year: int | None) -> list[StatementFacts]:
    """The statements with balances (of those closing in `fund_year`, and, to judge the
    first of them, the one of each account closing last before it)."""
    if fund_year is None:
        curs.execute(_STATEMENTS)
    else:
        curs.execute(_STATEMENTS_OF_A_YEAR, {"year": fund_year})
    return [StatementFacts(**row) for row in curs.fetchall()]
