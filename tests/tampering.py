"""What an owner of the database can do to the stored history behind the ledger's back:
the attacks the audit tests must catch."""

from __future__ import annotations

from typing import Any

import psycopg


def tamper(db_url: str, statement: str, params: tuple[Any, ...] = ()) -> None:
    """Change one stored row as a superuser who bypasses the tables' triggers."""
    with psycopg.connect(db_url) as conn:
        conn.execute("SET session_replication_role = replica")
        cursor = conn.execute(statement, params)
        assert cursor.rowcount == 1, statement
        conn.commit()


def rewrite_and_rechain(db_url: str, old: str, new: str) -> int:
    """Bypass the triggers, change the first payment's amount from `old` to `new`, and
    chain every event from it on again with the database's own digest function: the
    hash chain then agrees with itself. Answers the payment's position."""
    with psycopg.connect(db_url) as conn:
        conn.execute("SET session_replication_role = replica")
        row = conn.execute(
            "UPDATE ledger_events SET state = convert_to(replace(convert_from(state, 'UTF8'), "
            "%s, %s), 'UTF8') WHERE notification_id = (SELECT min(notification_id) "
            "FROM ledger_events WHERE topic LIKE '%%Payment.Recorded' "
            "AND strpos(convert_from(state, 'UTF8'), %s) > 0) RETURNING notification_id",
            (f'"_data_":"{old}"', f'"_data_":"{new}"', f'"_data_":"{old}"'),
        ).fetchone()
        assert row is not None
        changed = int(row[0])
        conn.execute(
            f"""
            DO $$
                DECLARE e ledger_events; prev bytea;
                BEGIN
                    SELECT hash INTO prev FROM ledger_events WHERE notification_id < {changed}
                        ORDER BY notification_id DESC LIMIT 1;
                    prev := coalesce(prev, decode(repeat('00', 32), 'hex'));
                    FOR e IN SELECT * FROM ledger_events WHERE notification_id >= {changed}
                            ORDER BY notification_id LOOP
                        prev := ledger_event_digest(prev, e);
                        UPDATE ledger_events SET hash = prev
                            WHERE notification_id = e.notification_id;
                    END LOOP;
                END $$;
            """
        )
        conn.commit()
    return changed


def delete_checkpoints(db_url: str) -> None:
    """Remove every stored checkpoint, as an owner covering their tracks would."""
    with psycopg.connect(db_url) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM ledger_checkpoints")
        conn.commit()
