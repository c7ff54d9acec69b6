"""The read models' tables: each view's, created from its declaration, and one tracking
row per view with the position it has folded up to.

A view whose tracking row is missing, or names an older `VERSION` than its code, has
its tables dropped and created again and its position set to 0: its worker then
backfills it alone, while the other views carry on. A row naming a newer version
than the code stops the process: that code cannot read those tables.
"""

from __future__ import annotations

from collections.abc import Iterable

from eventsourcing.postgres import PostgresDatastore
from psycopg import sql

from ledger.adapters.postgres import SchemaBehind, grant_app_role, migrate, schema_lock
from projections.tables import Curs
from projections.view import View
from projections.views import VIEWS

MIGRATIONS: list[tuple[str, str]] = [
    (
        # One tracking row per view, with the version of its tables. The first
        # edition's single row ('ledger') and its table of streams go: every view is
        # then created afresh and backfilled once.
        "projection-tracking-per-view",
        """
        CREATE TABLE IF NOT EXISTS projection_tracking (
            name text PRIMARY KEY, position bigint NOT NULL, generation int NOT NULL);
        ALTER TABLE projection_tracking ADD COLUMN IF NOT EXISTS version int NOT NULL DEFAULT 0;
        DELETE FROM projection_tracking WHERE name = 'ledger';
        DROP TABLE IF EXISTS rm_streams;
        """,
    ),
]


class NewerReadModel(Exception):
    """The database holds a view of a later version than this code knows."""


def tables(views: Iterable[type[View]] = VIEWS) -> list[str]:
    """The names of the views' tables."""
    return [table.name for view in views for table in view.TABLES]


def ensure_schema(datastore: PostgresDatastore, views: Iterable[type[View]] = VIEWS) -> None:
    """Create or upgrade the read models; safe when several processes start at once."""
    migrate(datastore, MIGRATIONS)
    with schema_lock(datastore), datastore.transaction(commit=True) as curs:
        curs.execute("SELECT name, version, generation FROM projection_tracking")
        stored = {r["name"]: (r["version"], r["generation"]) for r in curs.fetchall()}
        for view in views:
            version, generation = stored.get(view.NAME, (0, -1))
            if version > view.VERSION:
                raise NewerReadModel(
                    f"read model {view.NAME} is version {version}; this code knows "
                    f"{view.VERSION}: run the newer code"
                )
            if version < view.VERSION:
                curs.execute("SELECT has_schema_privilege(current_schema(), 'CREATE') AS may")
                if not curs.fetchone()["may"]:  # type: ignore[index]
                    raise SchemaBehind(
                        f"read model {view.NAME} needs version {view.VERSION}, which this "
                        "role may not create: run `ledger db init --app-role ROLE` as the "
                        "schema's owner first"
                    )
                _create(curs, view, generation + 1)


def grant_read_models(datastore: PostgresDatastore, role: str) -> None:
    """Make `role` the application role (`ledger.adapters.postgres.grant_app_role`),
    free with the read models, which it rebuilds."""
    grant_app_role(datastore, role, [*tables(), "projection_tracking"])


def _create(curs: Curs, view: type[View], generation: int) -> None:
    """(Re)create a view's tables, empty, at position 0."""
    for table in view.TABLES:
        curs.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(table.name)))
        curs.execute(table.ddl.encode())  # DDL from the view's declaration, no values
    curs.execute(
        "INSERT INTO projection_tracking (name, position, generation, version) "
        "VALUES (%s, 0, %s, %s) ON CONFLICT (name) DO UPDATE SET position = 0, "
        "generation = EXCLUDED.generation, version = EXCLUDED.version",
        (view.NAME, generation, view.VERSION),
    )
