"""Talents' data keys on PostgreSQL (`ledger.usecases.personal.KeyStore`)."""

from __future__ import annotations

from collections.abc import Mapping

from eventsourcing.postgres import PostgresDatastore

from ledger.adapters.postgres import statements


class PostgresKeyStore:
    """`ledger.usecases.personal.KeyStore` on the `talent_keys` table."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        self._datastore = datastore

    def get_or_add(self, wrapped: Mapping[str, bytes]) -> dict[str, bytes | None]:
        ids = list(wrapped)
        with self._datastore.transaction(commit=True) as curs:
            curs.execute(
                "INSERT INTO talent_keys (talent_id, wrapped) "
                "SELECT * FROM unnest(%s::text[], %s::bytea[]) ON CONFLICT (talent_id) DO NOTHING",
                (ids, list(wrapped.values())),
            )
            # a second statement: it sees keys other transactions committed meanwhile
            curs.execute(
                "SELECT talent_id, wrapped FROM talent_keys WHERE talent_id = ANY(%s)", (ids,)
            )
            rows = curs.fetchall()
        return {r["talent_id"]: None if r["wrapped"] is None else bytes(r["wrapped"]) for r in rows}

    def find(self, talent_id: str) -> bytes | None:
        with statements(self._datastore) as curs:
            curs.execute("SELECT wrapped FROM talent_keys WHERE talent_id = %s", (talent_id,))
            row = curs.fetchone()
        return None if row is None or row["wrapped"] is None else bytes(row["wrapped"])

    def destroy(self, talent_id: str) -> bool:
        with self._datastore.transaction(commit=True) as curs:
            curs.execute(
                "UPDATE talent_keys SET wrapped = NULL, destroyed_at = now() "
                "WHERE talent_id = %s AND wrapped IS NOT NULL",
                (talent_id,),
            )
            return bool(curs.rowcount)
