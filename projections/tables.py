"""Read-model tables, each declared once, and the bulk writer every view shares.

A `Table` gives its DDL, its COPY columns and the query that loads one of its rows.
`Writes` collects a batch's rows of every view, formatted for COPY by the thread
that folds them (psycopg formats in C), so that the thread sending them does little
more than wait on PostgreSQL.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from psycopg import Copy, Cursor, postgres, sql
from psycopg.copy import FileWriter
from psycopg.rows import DictRow

Curs = Cursor[DictRow]
AMOUNT = "numeric(20,2) NOT NULL"  # the SQL type of an amount column
_NUMERIC = postgres.types["numeric"].oid


@dataclass(frozen=True)
class Table:
    """A table: its columns with their SQL types (its key first), its primary key, and
    further indexes."""

    name: str
    columns: dict[str, str]
    key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()

    @property
    def ddl(self) -> str:
        columns = ", ".join(f"{name} {kind}" for name, kind in self.columns.items())
        key = ", ".join(self.key)
        statements = [f"CREATE TABLE {self.name} ({columns}, PRIMARY KEY ({key}))"]
        statements += [
            f"CREATE INDEX {self.name}_{'_'.join(index)} ON {self.name} ({', '.join(index)})"
            for index in self.indexes
        ]
        return ";\n".join(statements)

    @property
    def values(self) -> tuple[str, ...]:
        """The columns besides the key, in order."""
        return tuple(c for c in self.columns if c not in self.key)

    # Each statement is rendered once: psycopg renders a composed one again at every
    # execution, a sixth of a live batch's time (docs/performance.md, "stop 33").

    @cached_property
    def _select(self) -> str:
        return (
            sql.SQL("SELECT {} FROM {} WHERE {}")
            .format(
                sql.SQL(", ").join(map(sql.Identifier, self.values)),
                sql.Identifier(self.name),
                sql.SQL(" AND ").join(
                    sql.SQL("{} = %s").format(sql.Identifier(k)) for k in self.key
                ),
            )
            .as_string()
        )

    def load(self, curs: Curs, key: Sequence[Any]) -> DictRow | None:
        """The stored row under `key`, its other columns by name; None when there is none."""
        curs.execute(self._select, key)
        row: DictRow | None = curs.fetchone()
        return row

    @cached_property
    def upsert_statement(self) -> str:
        names = list(self.columns)
        return (
            sql.SQL(
                "INSERT INTO {table} ({names}) VALUES ({values}) "
                "ON CONFLICT ({keys}) DO UPDATE SET {updates}"
            )
            .format(
                table=sql.Identifier(self.name),
                names=sql.SQL(", ").join(map(sql.Identifier, names)),
                values=sql.SQL(", ").join(sql.Placeholder() * len(names)),
                keys=sql.SQL(", ").join(map(sql.Identifier, self.key)),
                updates=sql.SQL(", ").join(
                    sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in self.values
                ),
            )
            .as_string()
        )

    def copy_statement(self, binary: bool) -> str:
        return self._copy_statements[binary]

    @cached_property
    def _copy_statements(self) -> dict[bool, str]:
        columns = sql.SQL(", ").join(map(sql.Identifier, self.columns))
        return {
            binary: sql.SQL("COPY {} ({}) FROM STDIN {}")
            .format(
                sql.Identifier(self.name),
                columns,
                sql.SQL("(FORMAT BINARY)" if binary else ""),
            )
            .as_string()
            for binary in (False, True)
        }


_COLUMN_TYPES: dict[str, list[int]] = {}


def _column_types(curs: Curs, table: Table) -> list[int]:
    """The type OIDs of a table's columns, for a binary COPY. The read models use
    built-in types only, whose OIDs are the same in every database, so they are asked
    once."""
    if table.name not in _COLUMN_TYPES:
        curs.execute(
            "SELECT attname, atttypid FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (table.name,),
        )
        oids = {r["attname"]: r["atttypid"] for r in curs.fetchall()}
        _COLUMN_TYPES[table.name] = [oids[c] for c in table.columns]
    return _COLUMN_TYPES[table.name]


class Writes:
    """One batch's rows: appended by COPY, or upserted when stored before the batch. It
    reads nothing from a view's image once made, so the image may move on meanwhile."""

    def __init__(self) -> None:
        self._copies: list[tuple[str, bytes]] = []
        self._upserts: list[tuple[str, list[Sequence[Any]]]] = []

    def copy(self, curs: Curs, table: Table, rows: Iterable[Sequence[Any]]) -> None:
        """Append rows (every column, in order) by COPY, several times faster than row
        by row. psycopg builds a binary numeric from `Decimal.as_tuple()`: a row of
        amounts costs three times its text form, so tables with several amounts go as
        text, the others (where binary timestamps and ids win) as binary."""
        taken = list(rows)
        if not taken:
            return
        types = _column_types(curs, table)
        binary = types.count(_NUMERIC) < 2
        buffer = io.BytesIO()
        with (
            curs.connection.cursor() as formatting,  # a Copy needs a cursor without results
            Copy(formatting, binary=binary, writer=FileWriter(buffer)) as copy,
        ):
            if binary:
                copy.set_types(types)
            for row in taken:
                copy.write_row(row)
        self._copies.append((table.copy_statement(binary), buffer.getvalue()))

    def upsert(self, table: Table, rows: list[Sequence[Any]]) -> None:
        """Insert or replace rows (every column, in order) stored before this batch."""
        if rows:
            self._upserts.append((table.upsert_statement, rows))

    def send(self, curs: Curs) -> None:
        for statement, data in self._copies:
            with curs.copy(statement) as copy:
                copy.write(data)
        for upsert, rows in self._upserts:
            curs.executemany(upsert, rows)
