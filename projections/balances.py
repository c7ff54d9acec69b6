"""Balances of fund-year lines and of talents, kept from the events.

Each handler turns one event into SQL deltas. A worker applies a batch of events
and advances its tracking row in one transaction, holding that row locked: after a
crash the batch is either wholly applied or not at all, and two workers on one
database never apply the same event twice.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from psycopg import Cursor, sql
from psycopg.rows import DictRow

from ledger.domain import Clawback, FundYear, Grant, Payment, RentWaiver

PROJECTION = "balances"

LINE_AMOUNTS = (
    "appropriated",
    "committed",
    "paid",
    "returned",
    "in_kind_value",
    "clawback_assessed",
    "clawback_recovered",
)
TALENT_AMOUNTS = (
    "granted",
    "approved",
    "paid",
    "returned",
    "in_kind_value",
    "clawback_assessed",
    "clawback_recovered",
)


def _amount_columns(names: tuple[str, ...]) -> str:
    return ", ".join(f"{name} numeric(20,2) NOT NULL DEFAULT 0" for name in names)


MIGRATIONS: list[tuple[str, str]] = [
    (
        "projection-balances",
        # DDL built from constants only (no values), hence the noqa on its last line
        f"""
        CREATE TABLE projection_tracking (name text PRIMARY KEY, position bigint NOT NULL);
        INSERT INTO projection_tracking VALUES ('balances', 0);
        CREATE TABLE rm_fund_years (
            id uuid PRIMARY KEY, year int NOT NULL UNIQUE,
            currency text NOT NULL, status text NOT NULL);
        CREATE TABLE rm_lines (
            year int NOT NULL, programme text NOT NULL, kind text NOT NULL,
            {_amount_columns(LINE_AMOUNTS)},
            PRIMARY KEY (year, programme));
        CREATE TABLE rm_talent_balances (
            talent_id text NOT NULL, year int NOT NULL, programme text NOT NULL,
            {_amount_columns(TALENT_AMOUNTS)},
            PRIMARY KEY (talent_id, year, programme));
        -- where each grant, payment, waiver and clawback is charged, by aggregate id
        CREATE TABLE rm_charges (
            id uuid PRIMARY KEY, talent_id text NOT NULL, year int NOT NULL,
            programme text NOT NULL, amount numeric(14,2) NOT NULL);
        """,  # noqa: S608
    ),
]

Curs = Cursor[DictRow]


def _increments(deltas: dict[str, Decimal]) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("{0} = {0} + %s").format(sql.Identifier(name)) for name in deltas
    )


def _add_line(curs: Curs, year: int, programme: str, **deltas: Decimal) -> None:
    curs.execute(
        sql.SQL("UPDATE rm_lines SET {} WHERE year = %s AND programme = %s").format(
            _increments(deltas)
        ),
        [*deltas.values(), year, programme],
    )


def _add_talent(curs: Curs, talent_id: str, year: int, programme: str, **deltas: Decimal) -> None:
    columns = list(deltas)
    curs.execute(
        sql.SQL(
            "INSERT INTO rm_talent_balances (talent_id, year, programme, {columns}) "
            "VALUES (%s, %s, %s, {values}) "
            "ON CONFLICT (talent_id, year, programme) DO UPDATE SET {increments}"
        ).format(
            columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
            values=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            increments=sql.SQL(", ").join(
                sql.SQL("{0} = rm_talent_balances.{0} + EXCLUDED.{0}").format(sql.Identifier(c))
                for c in columns
            ),
        ),
        [talent_id, year, programme, *deltas.values()],
    )


def _charge(curs: Curs, e: Any, talent_id: str, year: int, programme: str, amount: Decimal) -> None:
    """Remember where the resource created by `e` is charged, for its later events."""
    curs.execute(
        "INSERT INTO rm_charges (id, talent_id, year, programme, amount) "
        "VALUES (%s, %s, %s, %s, %s)",
        (e.originator_id, talent_id, year, programme, amount),
    )


def _charged(curs: Curs, e: Any) -> DictRow:
    curs.execute(
        "SELECT talent_id, year, programme, amount FROM rm_charges WHERE id = %s",
        (e.originator_id,),
    )
    row = curs.fetchone()
    assert row is not None, f"no charge for {e.originator_id}"
    return row


def _add_talent_of(curs: Curs, e: Any, **deltas: Decimal) -> None:
    row = _charged(curs, e)
    _add_talent(curs, row["talent_id"], row["year"], row["programme"], **deltas)


def _add_both_of(curs: Curs, e: Any, **deltas: Decimal) -> None:
    row = _charged(curs, e)
    _add_line(curs, row["year"], row["programme"], **deltas)
    _add_talent(curs, row["talent_id"], row["year"], row["programme"], **deltas)


def _add_line_of_year(curs: Curs, e: Any, **deltas: Decimal) -> None:
    curs.execute(
        sql.SQL(
            "UPDATE rm_lines SET {} WHERE programme = %s "
            "AND year = (SELECT year FROM rm_fund_years WHERE id = %s)"
        ).format(_increments(deltas)),
        [*deltas.values(), e.programme, e.originator_id],
    )


# --- one handler per event type ---------------------------------------------------


def _fund_year_opened(curs: Curs, e: FundYear.Opened) -> None:
    curs.execute(
        "INSERT INTO rm_fund_years (id, year, currency, status) VALUES (%s, %s, %s, 'open')",
        (e.originator_id, e.year, e.currency),
    )


def _appropriated(curs: Curs, e: FundYear.Appropriated) -> None:
    curs.execute(
        "INSERT INTO rm_lines (year, programme, kind, appropriated) "
        "SELECT year, %s, %s, %s FROM rm_fund_years WHERE id = %s "
        "ON CONFLICT (year, programme) "
        "DO UPDATE SET appropriated = rm_lines.appropriated + EXCLUDED.appropriated",
        (e.programme, e.kind, e.amount, e.originator_id),
    )


def _fund_year_closed(curs: Curs, e: FundYear.Closed) -> None:
    curs.execute("UPDATE rm_fund_years SET status = 'closed' WHERE id = %s", (e.originator_id,))


def _grant_proposed(curs: Curs, e: Grant.Proposed) -> None:
    _charge(curs, e, e.talent_id, e.fund_year, e.programme, e.amount)
    _add_talent(curs, e.talent_id, e.fund_year, e.programme, granted=e.amount)


def _grant_approved(curs: Curs, e: Grant.Approved) -> None:
    row = _charged(curs, e)
    _add_talent(curs, row["talent_id"], row["year"], row["programme"], approved=row["amount"])


def _grant_rejected(curs: Curs, e: Grant.Rejected) -> None:
    row = _charged(curs, e)
    _add_talent(curs, row["talent_id"], row["year"], row["programme"], granted=-row["amount"])


def _payment_recorded(curs: Curs, e: Payment.Recorded) -> None:
    _charge(curs, e, e.talent_id, e.fund_year, e.programme, e.amount)
    _add_line(curs, e.fund_year, e.programme, paid=e.amount)
    _add_talent(curs, e.talent_id, e.fund_year, e.programme, paid=e.amount)


def _payment_returned(curs: Curs, e: Payment.Returned) -> None:
    _add_both_of(curs, e, returned=_charged(curs, e)["amount"])


def _waiver_granted(curs: Curs, e: RentWaiver.Granted) -> None:
    _charge(curs, e, e.talent_id, e.fund_year, e.programme, e.value)
    _add_line(curs, e.fund_year, e.programme, in_kind_value=e.value)
    _add_talent(curs, e.talent_id, e.fund_year, e.programme, in_kind_value=e.value)


def _clawback_assessed(curs: Curs, e: Clawback.Assessed) -> None:
    _charge(curs, e, e.talent_id, e.fund_year, e.programme, e.amount)
    _add_line(curs, e.fund_year, e.programme, clawback_assessed=e.amount)
    _add_talent(curs, e.talent_id, e.fund_year, e.programme, clawback_assessed=e.amount)


def apply_event(curs: Curs, e: Any) -> None:
    """Apply one decoded event to the balance tables (events without money are skipped)."""
    handler = _HANDLERS.get(type(e))
    if handler is not None:
        handler(curs, e)


_HANDLERS: dict[type, Callable[[Curs, Any], None]] = {
    FundYear.Opened: _fund_year_opened,
    FundYear.Appropriated: _appropriated,
    FundYear.Reserved: lambda c, e: _add_line_of_year(c, e, committed=e.amount),
    FundYear.Released: lambda c, e: _add_line_of_year(c, e, committed=-e.amount),
    FundYear.Closed: _fund_year_closed,
    Grant.Proposed: _grant_proposed,
    Grant.Approved: _grant_approved,
    Grant.Rejected: _grant_rejected,
    Grant.Revoked: lambda c, e: _add_talent_of(c, e, granted=-e.released, approved=-e.released),
    Grant.PaymentReturned: lambda c, e: _add_talent_of(
        c, e, granted=-e.released, approved=-e.released
    ),
    Payment.Recorded: _payment_recorded,
    Payment.Returned: _payment_returned,
    RentWaiver.Granted: _waiver_granted,
    RentWaiver.Ended: lambda c, e: _add_both_of(c, e, in_kind_value=-e.released),
    Clawback.Assessed: _clawback_assessed,
    Clawback.Recovered: lambda c, e: _add_both_of(c, e, clawback_recovered=e.amount),
}
