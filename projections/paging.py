"""Keyset pages: a list is ordered by the position at which each item was created, and
a page starts after the last position of the page before (the `after` cursor, that
position as a decimal string). A page costs one index range scan however deep it
lies, where an offset would read every row before it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, LiteralString

from eventsourcing.postgres import PostgresDatastore
from psycopg import sql
from psycopg.rows import DictRow, dict_row

from ledger.adapters.postgres import statements
from projections.tables import Curs


@dataclass
class Where:
    """The conditions of a list's query, each with its parameters."""

    conditions: list[sql.Composable] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, condition: LiteralString, *params: Any) -> None:
        self.conditions.append(sql.SQL(condition))
        self.params.extend(params)

    def equal(self, column: LiteralString, value: Any) -> None:
        if value is not None:
            self.add(f"{column} = %s", value)

    def between(self, column: LiteralString, first: date | None, last: date | None) -> None:
        if first is not None:
            self.add(f"{column} >= %s", first)
        if last is not None:
            self.add(f"{column} <= %s", last)

    def status(self, value: str | None, conditions: dict[str, LiteralString]) -> None:
        if value is not None:
            self.add(conditions[value])


#: a page's rows, and the cursor of the next page (None at the end)
Page = tuple[list[DictRow], str | None]


def _query(table: LiteralString, where: Where, order: LiteralString) -> sql.Composed:
    """The rows after a position (in `order`), that meet `where`, in that order."""
    return sql.SQL("SELECT * FROM {table} WHERE {order} > %s {where} ORDER BY {order}").format(
        table=sql.Identifier(table),
        order=sql.Identifier(order),
        where=sql.SQL("").join(sql.SQL(" AND ") + c for c in where.conditions),
    )


def page(
    datastore: PostgresDatastore,
    table: LiteralString,
    where: Where,
    after: int,
    limit: int,
    order: LiteralString = "position",
) -> Page:
    """The rows of `table` after position `after` (in its column `order`, the position
    each row was created at) that meet `where`, at most `limit`, and the cursor of the
    next page (None at the end)."""
    with statements(datastore) as curs:
        query = _query(table, where, order) + sql.SQL(" LIMIT %s")
        curs.execute(query, [after, *where.params, limit + 1])
        rows = curs.fetchall()
    more = len(rows) > limit
    return rows[:limit], str(rows[limit - 1][order]) if more else None


def count(curs: Curs, table: LiteralString, where: Where) -> int:
    """How many rows of `table` meet `where`."""
    conditions = sql.SQL(" AND ").join([sql.SQL("true"), *where.conditions])
    query = sql.SQL("SELECT count(*) AS n FROM {} WHERE {}").format(
        sql.Identifier(table), conditions
    )
    row = curs.execute(query, where.params).fetchone()
    assert row is not None
    return int(row["n"])


def scan(
    curs: Curs, table: LiteralString, where: Where, order: LiteralString = "position"
) -> Iterator[DictRow]:
    """Every row of `table` that meets `where`, in `order`, streamed by a server-side
    cursor in the transaction of `curs` (rows arrive in batches, not all at once)."""
    with curs.connection.cursor(name="scan", row_factory=dict_row) as rows:
        rows.itersize = 2000
        rows.execute(_query(table, where, order), [0, *where.params])
        yield from rows
