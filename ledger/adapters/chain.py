"""Proof that the stored history is untampered: recompute the hash chain from the
event table, independently of the database function that wrote it."""

from __future__ import annotations

from dataclasses import dataclass

from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor, sql
from psycopg.rows import DictRow

from ledger.adapters.postgres import EVENTS_TABLE
from ledger.domain.chain import GENESIS, event_digest


@dataclass(frozen=True)
class Verification:
    ok: bool
    events_checked: int
    head: str
    first_bad_position: int | None


def verify_chain(datastore: PostgresDatastore) -> Verification:
    """Walk every event in order; report the first whose stored hash does not follow."""
    prev = GENESIS
    checked = 0
    with (
        datastore.get_connection() as conn,
        conn.transaction(),
        conn.cursor(name="verify_chain") as cursor,
    ):
        cursor.itersize = 5000
        cursor.execute(
            sql.SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state, "
                "recorded_at, hash FROM {} ORDER BY notification_id"
            ).format(sql.Identifier(EVENTS_TABLE))
        )
        for row in cursor:
            expected = event_digest(
                prev,
                row["notification_id"],
                row["originator_id"],
                row["originator_version"],
                row["topic"],
                bytes(row["state"]),
                row["recorded_at"],
            )
            if bytes(row["hash"]) != expected:
                return Verification(False, checked, prev.hex(), row["notification_id"])
            prev = expected
            checked += 1
    return Verification(True, checked, prev.hex(), None)


def chain_hash_at(curs: Cursor[DictRow], position: int) -> str:
    """The chain's hash after the event at `position` (the genesis hash at 0), hex: what
    a copy of the history up to that position must reproduce."""
    if position == 0:
        return GENESIS.hex()
    curs.execute(
        sql.SQL("SELECT hash FROM {} WHERE notification_id = %s").format(
            sql.Identifier(EVENTS_TABLE)
        ),
        (position,),
    )
    row = curs.fetchone()
    assert row is not None, f"no event at position {position}"
    return bytes(row["hash"]).hex()
