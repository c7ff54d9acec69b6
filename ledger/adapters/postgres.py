"""The event store on PostgreSQL (`ledger.engine.store`): eventsourcing's recorder,
made stricter, and the schema of everything the ledger stores besides read models.

Events are appended in an `AppendSession`: a transaction holding the append lock (so
positions follow commit order), in which the engine re-checks the version of
every aggregate a command read and decides again on what changed before it appends.
This is what makes budget, payment and bank-reference rules race-free across threads
and processes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
)
from psycopg import Cursor, sql
from psycopg.errors import SerializationFailure
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow

from ledger.domain.chain import GENESIS
from ledger.domain.errors import ValidationFailed
from ledger.engine.store import Changed, Overtaken

EVENTS_TABLE = "ledger_events"
CHECKPOINTS_TABLE = "ledger_checkpoints"
REFUSALS_TABLE = "ledger_refusals"
# eventsourcing's name for the application's snapshot table (its name, then "_snapshots")
SNAPSHOTS_TABLE = "ledger_snapshots"
GENESIS_SQL = "\\x" + GENESIS.hex()
#: the append lock, answering its wait (named when it locked the event table itself)
LOCK_WAITED = "ledger_lock_events_waited()"
#: what the append lock locks (migration "append-lock-own-table"): never holds a row
APPEND_LOCK_TABLE = "ledger_append_lock"
#: the server's check of what a decision read (migration "expect-current"), and its error
EXPECT_CURRENT = "ledger_expect_current"
#: the lock, that check and an append as one statement (migration "append-checked")
APPEND_CHECKED = "ledger_append_checked"
#: its arguments' types: the lock's timeout, the versions read, the events, the snapshots
APPEND_CHECKED_ARGUMENTS = (
    "text, uuid[], bigint[], uuid[], bigint[], text[], bytea[], uuid[], bigint[], text[], bytea[]"
)
STALE = "a version read is no longer current"
READ_COMMITTED_ONLY = "events are appended in READ COMMITTED transactions only"
SCHEMA_LOCK_KEY = 7_242_024  # pg_advisory_lock key: one migrator at a time


class Reads:
    """Reads of the event store on one cursor."""

    def __init__(self, recorder: LedgerRecorder, curs: Any) -> None:
        self._recorder = recorder
        self.cursor = curs

    def changed(self, read_versions: Mapping[UUID, int], events_up_to: int) -> dict[UUID, Changed]:
        return self._changed_on(self.cursor, read_versions, events_up_to)()

    def _changed_on(
        self, cursor: Any, read_versions: Mapping[UUID, int], events_up_to: int
    ) -> Callable[[], dict[UUID, Changed]]:
        """The check sent on `cursor`, and how to read its answer."""
        if not read_versions:
            return dict
        cursor.execute(
            self._recorder.changed_sql,
            (list(read_versions), list(read_versions.values()), events_up_to),
            prepare=True,
        )

        def answer() -> dict[UUID, Changed]:
            found: dict[UUID, Changed] = {}
            for r in cursor.fetchall():
                aggregate_id = r["originator_id"]
                change = found.get(aggregate_id) or found.setdefault(
                    aggregate_id, Changed(r["version"], [])
                )
                if r["originator_version"] is not None:
                    change.events.append(
                        StoredEvent(aggregate_id, r["originator_version"], r["topic"], r["state"])
                    )
            return found

        return answer

    def events_after(self, versions: Mapping[UUID, int]) -> list[StoredEvent]:
        """The events of each aggregate past the given version, in version order."""
        if not versions:
            return []
        self.cursor.execute(
            self._recorder.events_after_sql, (list(versions), list(versions.values()))
        )
        return [
            StoredEvent(r["originator_id"], r["originator_version"], r["topic"], r["state"])
            for r in self.cursor.fetchall()
        ]


class AppendSession(Reads):
    """One transaction holding the append lock: no other writer can append until it
    ends, so what it reads stays true until its events are in."""

    def __init__(self, recorder: LedgerRecorder, curs: Any, lock: Any) -> None:
        super().__init__(recorder, curs)
        self._lock = lock
        self._appended: list[Any] = []

    def changed_later(
        self, read_versions: Mapping[UUID, int], events_up_to: int
    ) -> Callable[[], dict[UUID, Changed]]:
        """On a cursor of its own, so that its answer waits there (in the pipeline)."""
        return self._changed_on(self.cursor.connection.cursor(), read_versions, events_up_to)

    def expect_current(self, read_versions: Mapping[UUID, int]) -> None:
        """Sent ahead of what is appended next, answered with the commit: a version
        read that is no longer current fails the transaction (`append_session` then
        raises `Overtaken`)."""
        if read_versions:
            self.cursor.connection.cursor().execute(
                self._recorder.expect_sql,
                (list(read_versions), list(read_versions.values())),
                prepare=True,
            )

    def lock_waited(self) -> float:
        """Measured by the server, answered with the lock: no round trip of its own."""
        row = self._lock.fetchone()
        return float(row["waited"]) if row else 0.0

    def append(self, stored: Sequence[StoredEvent]) -> None:
        """Sent at once, answered with the commit: nobody waits for the answer with the
        lock held, and the server inserts these while the caller encodes what it
        appends next. `positions` reads the answers once the session ended. Without
        eventsourcing's NOTIFY: nothing listens for it (the projection workers poll, and
        notify waits on a channel of their own), and each would wake every listening
        session."""
        appended = self.cursor.connection.cursor()
        appended.execute(self._recorder.insert_sql, _columns(stored), binary=True)
        self._appended.append(appended)

    def positions(self) -> list[int]:
        """The positions of the events appended, in their order."""
        return [row["notification_id"] for a in self._appended for row in a.fetchall()]

    def insert_snapshots(self, snapshots: Sequence[StoredEvent]) -> None:
        """In the events' own transaction: no snapshot outlives a rollback of its events."""
        self.cursor.execute(self._recorder.insert_snapshots_sql, _columns(snapshots), binary=True)


class LedgerRecorder(PostgresApplicationRecorder):
    # eventsourcing retries these reads ten times, 0.2 s apart, on a connection error:
    # a request would hang for seconds while the database is down. One attempt, then
    # a retryable 503; `ledger.adapters.pool` already replaces the connections a restart broke.
    select_events = PostgresAggregateRecorder.select_events.__wrapped__
    max_notification_id = PostgresApplicationRecorder.max_notification_id.__wrapped__

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the append lock instead of the library's `LOCK TABLE ... IN EXCLUSIVE MODE`
        # on the event table, as the owner (the migrations "append-lock-wait" and
        # "append-lock-own-table"), after its lock timeout, answering how long it waited
        timeout = self.lock_table_statements[0]  # the library's SET LOCAL lock_timeout
        assert isinstance(timeout, sql.Composable)
        self.lock_table_statements = [
            timeout.as_string(),
            "SELECT ledger_lock_events_waited() AS waited",
        ]
        table = sql.SQL("{0}.{1}").format(
            sql.Identifier(self.datastore.schema), sql.Identifier(self.events_table_name)
        )
        # The statements of every append are rendered once, here: psycopg renders a
        # composed one again at each execution (docs/performance.md, "stop 32").
        # Each aggregate's version by one backward index probe (a GROUP BY would read
        # every event of a fund year, and the planner even scanned the table), and the
        # events after the version read by an index range scan (LATERAL, its ORDER BY
        # keeping the planner from flattening it into a join), when they are few
        # enough to read under the lock: only the aggregates that changed. The ids and
        # versions go as binary arrays, as the insert's columns do: formatting a run's
        # tens of thousands of ids as text costs more than the query.
        self.changed_sql = (
            sql.SQL(
                "SELECT a.id AS originator_id, v.version, e.originator_version, e.topic, e.state "
                "FROM unnest(%b::uuid[], %b::bigint[]) AS a(id, read) "
                "CROSS JOIN LATERAL (SELECT coalesce((SELECT x.originator_version FROM {0} x "
                "WHERE x.originator_id = a.id ORDER BY x.originator_version DESC LIMIT 1), 0) "
                "AS version) v "
                "LEFT JOIN LATERAL (SELECT e.originator_version, e.topic, e.state FROM {0} e "
                "WHERE e.originator_id = a.id AND e.originator_version > a.read "
                "AND v.version - a.read <= %s ORDER BY e.originator_version) e ON true "
                "WHERE v.version <> a.read ORDER BY a.id, e.originator_version"
            )
            .format(table)
            .as_string()
        )
        # parallel arrays sent in binary: the library's composite-type array is
        # formatted as text in Python, escaping every byte of every event's state
        insert = (
            "INSERT INTO {0} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[])"
        )
        self.insert_sql = sql.SQL(insert + " RETURNING notification_id").format(table).as_string()
        self.expect_sql = (
            sql.SQL("SELECT {0}(%b::uuid[], %b::bigint[])")
            .format(sql.Identifier(EXPECT_CURRENT))
            .as_string()
        )
        self.append_checked_sql = (
            sql.SQL(
                "SELECT * FROM {0}(%s, %b::uuid[], %b::bigint[], "
                "%b::uuid[], %b::bigint[], %b::text[], %b::bytea[], "
                "%b::uuid[], %b::bigint[], %b::text[], %b::bytea[])"
            )
            .format(sql.Identifier(APPEND_CHECKED))
            .as_string()
        )
        self.insert_snapshots_sql = (
            sql.SQL(insert)
            .format(
                sql.SQL("{0}.{1}").format(
                    sql.Identifier(self.datastore.schema), sql.Identifier(SNAPSHOTS_TABLE)
                )
            )
            .as_string()
        )
        # an index range scan per aggregate, forced by the LATERAL subquery's ORDER BY
        # (without one the planner flattens it into a join): joined to the unnest,
        # the planner took a parallel scan of the whole table once it held some tens
        # of thousands of events, under the lock (docs/performance.md)
        self.events_after_sql = (
            sql.SQL(
                "SELECT e.originator_id, e.originator_version, e.topic, e.state "
                "FROM unnest(%b::uuid[], %b::bigint[]) AS a(id, version) "
                "CROSS JOIN LATERAL (SELECT * FROM {0} e WHERE e.originator_id = a.id "
                "AND e.originator_version > a.version ORDER BY e.originator_version) e "
                "ORDER BY e.originator_id, e.originator_version"
            )
            .format(table)
            .as_string()
        )

    @contextmanager
    def append_session(self) -> Iterator[AppendSession]:
        """The statements are pipelined: the lock goes out with the first query (the
        check, which answers what changed too), the insert with the commit, so a
        decision costs two round trips, and only the first is awaited holding the
        lock. The transaction is begun and committed by statements in the pipeline:
        psycopg's `transaction()` would await a round trip of its own before its
        COMMIT, and one after. The lock's own cursor keeps its answer, the time it was
        waited for."""
        with self.datastore.get_connection() as conn:
            try:
                with conn.pipeline():
                    transaction = conn.cursor()
                    transaction.execute("BEGIN")
                    lock = conn.cursor()
                    for statement in self.lock_table_statements:
                        lock.execute(statement, prepare=True)
                    yield AppendSession(self, conn.cursor(), lock)
                    transaction.execute("COMMIT")
            except SerializationFailure as e:
                if e.diag.message_primary == STALE:
                    raise Overtaken(STALE) from None
                raise
            finally:
                # whatever failed (a statement, or the decision) left a transaction open
                if not conn.broken and conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.rollback()

    def append_checked(
        self,
        read_versions: Mapping[UUID, int],
        stored: Sequence[StoredEvent],
        snapshots: Sequence[StoredEvent],
    ) -> tuple[list[int], float]:
        """One statement, which is its own transaction (the pool's connections
        autocommit): one round trip, and none awaited holding the lock."""
        timeout = f"{self.datastore.lock_timeout}s"
        read = (list(read_versions), list(read_versions.values()))
        with self.datastore.get_connection() as conn:
            try:
                row = conn.execute(
                    self.append_checked_sql,
                    (timeout, *read, *_columns(stored), *_columns(snapshots)),
                    prepare=True,
                ).fetchone()
            except SerializationFailure as e:
                if e.diag.message_primary == STALE:
                    raise Overtaken(STALE) from None
                raise
        assert row is not None
        return list(row["positions"]), float(row["waited"])

    @contextmanager
    def reads(self) -> Iterator[Reads]:
        """Reads holding no lock, in no transaction: what they find may be overtaken
        before an append session checks it again."""
        with statements(self.datastore) as curs:
            yield Reads(self, curs)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The library's append (the engine appends in its own `append_session`)."""
        if not stored_events:
            return []
        with self.append_session() as session:
            session.append(stored_events)
        return session.positions()


def _columns(stored: Sequence[StoredEvent]) -> tuple[list[Any], ...]:
    """Stored events as the parallel arrays the inserts take."""
    return (
        [e.originator_id for e in stored],
        [e.originator_version for e in stored],
        [e.topic for e in stored],
        [e.state for e in stored],
    )


def _grant_to_callers_of(function: str, grant: str) -> str:
    """A migration's DO block granting `grant` to every role that may call `function`
    (the application roles `grant_app_role` made), so that a migration run by the owner
    without `db init` leaves them able to do what they did."""
    return f"""
        DO $$
            DECLARE role_name text;
            BEGIN
                FOR role_name IN
                    SELECT acl.grantee::regrole::text
                    FROM pg_proc, aclexplode(pg_proc.proacl) AS acl
                    WHERE pg_proc.oid = '{function}'::regprocedure
                      AND acl.privilege_type = 'EXECUTE'
                      AND acl.grantee NOT IN (0, pg_proc.proowner)
                LOOP
                    EXECUTE format('GRANT {grant} TO %s', role_name);
                END LOOP;
            END $$;
        """  # noqa: S608 - DDL from constants, no values


def _chain_trigger(first: str) -> str:
    """The chain's trigger function, opening with `first`: each event hashed to the one
    before it in position order (docs/design.md, "Integrity: the hash chain"), from
    `ledger_event_digest` written out."""
    return f"""
        CREATE OR REPLACE FUNCTION ledger_events_chain() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE last record;
            BEGIN{first}
                SELECT hash, recorded_at INTO last FROM {EVENTS_TABLE}
                    ORDER BY notification_id DESC LIMIT 1;
                NEW.recorded_at := greatest(NEW.recorded_at, last.recorded_at);
                NEW.hash := sha256(
                    coalesce(last.hash, '{GENESIS_SQL}')
                    || convert_to(concat_ws('|', NEW.notification_id, NEW.originator_id,
                                            NEW.originator_version, NEW.topic, ''), 'UTF8')
                    || NEW.state
                    || convert_to('|' || to_char(NEW.recorded_at AT TIME ZONE 'UTC',
                                                 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), 'UTF8'));
                RETURN NEW;
            END $$;
        """  # noqa: S608 - DDL from constants, no values


# Each step runs once, recorded by name in ledger_schema; a step is never edited.
MIGRATIONS: list[tuple[str, str]] = [
    (
        # The event table carries the instant the database recorded each event
        # (under the append lock, so it rises with the position), and refuses to
        # change or lose a row.
        "events-recorded-at-and-immutable",
        f"""
        ALTER TABLE {EVENTS_TABLE} ADD COLUMN IF NOT EXISTS
            recorded_at timestamptz NOT NULL DEFAULT clock_timestamp();
        CREATE OR REPLACE FUNCTION ledger_events_immutable() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'ledger events are immutable: % refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END $$;
        CREATE TRIGGER ledger_events_no_update BEFORE UPDATE OR DELETE ON {EVENTS_TABLE}
            FOR EACH ROW EXECUTE FUNCTION ledger_events_immutable();
        CREATE TRIGGER ledger_events_no_truncate BEFORE TRUNCATE ON {EVENTS_TABLE}
            FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_immutable();
        """,
    ),
    (
        "api-keys",
        """
        CREATE TABLE api_keys (
            key_hash text PRIMARY KEY,
            name text NOT NULL CHECK (name <> ''),
            roles text[] NOT NULL CHECK (cardinality(roles) > 0),
            created_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
    (
        # Each event is chained by hash to the one before it in the global order,
        # inside the appending transaction. `recorded_at` is made monotonic here, so
        # "recorded at or before T" is always a prefix of the positions. Events
        # recorded before this step are chained by the step itself.
        "events-hash-chain",
        f"""
        ALTER TABLE {EVENTS_TABLE} ADD COLUMN hash bytea;
        CREATE FUNCTION ledger_event_digest(prev bytea, e {EVENTS_TABLE}) RETURNS bytea
            LANGUAGE sql IMMUTABLE AS $$
            SELECT sha256(
                prev
                || convert_to(concat_ws('|', e.notification_id, e.originator_id,
                                        e.originator_version, e.topic, ''), 'UTF8')
                || e.state
                || convert_to('|' || to_char(e.recorded_at AT TIME ZONE 'UTC',
                                             'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), 'UTF8'))
            $$;
        CREATE FUNCTION ledger_events_chain() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE last record;
            BEGIN
                LOCK TABLE {EVENTS_TABLE} IN EXCLUSIVE MODE;
                SELECT hash, recorded_at INTO last FROM {EVENTS_TABLE}
                    ORDER BY notification_id DESC LIMIT 1;
                NEW.recorded_at := greatest(NEW.recorded_at, last.recorded_at);
                NEW.hash := ledger_event_digest(coalesce(last.hash, '{GENESIS_SQL}'), NEW);
                RETURN NEW;
            END $$;
        ALTER TABLE {EVENTS_TABLE} DISABLE TRIGGER ledger_events_no_update;
        DO $$
            DECLARE e {EVENTS_TABLE}; prev bytea := '{GENESIS_SQL}';
            BEGIN
                FOR e IN SELECT * FROM {EVENTS_TABLE} ORDER BY notification_id LOOP
                    prev := ledger_event_digest(prev, e);
                    UPDATE {EVENTS_TABLE} SET hash = prev
                        WHERE notification_id = e.notification_id;
                END LOOP;
            END $$;
        ALTER TABLE {EVENTS_TABLE} ENABLE TRIGGER ledger_events_no_update;
        ALTER TABLE {EVENTS_TABLE} ALTER COLUMN hash SET NOT NULL;
        CREATE TRIGGER ledger_events_chain BEFORE INSERT ON {EVENTS_TABLE}
            FOR EACH ROW EXECUTE FUNCTION ledger_events_chain();
        CREATE INDEX ledger_events_recorded_at_idx
            ON {EVENTS_TABLE} (recorded_at, notification_id);
        """,  # noqa: S608 - DDL from constants, no values
    ),
    (
        # Talents' data keys, wrapped by the master key (`ledger.usecases.personal`). Kept out
        # of the immutable events so that destroying one erases that talent's name.
        "talent-keys",
        """
        CREATE TABLE talent_keys (
            talent_id text PRIMARY KEY,
            wrapped bytea,
            created_at timestamptz NOT NULL DEFAULT now(),
            destroyed_at timestamptz,
            CHECK ((wrapped IS NULL) = (destroyed_at IS NOT NULL))
        );
        """,
    ),
    (
        # The chain's trigger with `ledger_event_digest` written out: a SQL function
        # called from PL/pgSQL is run, not inlined, for every row, and this is the
        # append lock's critical section (5,000 rows in one statement: 77-79 -> 65-69
        # µs per row). The function stays: it states the digest, and tests hold the
        # trigger, it and `ledger.domain.chain.event_digest` to the same bytes.
        "events-hash-chain-digest-inline",
        _chain_trigger(f"\n                LOCK TABLE {EVENTS_TABLE} IN EXCLUSIVE MODE;"),
    ),
    (
        # Signed checkpoints (`ledger.adapters.checkpoints`), as immutable as the events.
        # `peaks` is the tree's frontier, from which the next checkpoint grows.
        "audit-checkpoints",
        f"""
        CREATE OR REPLACE FUNCTION ledger_events_immutable() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is immutable: % refused', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END $$;
        CREATE TABLE {CHECKPOINTS_TABLE} (
            checkpoint_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            tree_size bigint NOT NULL CHECK (tree_size >= 0),
            head_position bigint NOT NULL CHECK (head_position >= 0),
            root bytea NOT NULL,
            head bytea NOT NULL,
            peaks bytea[] NOT NULL,
            note text NOT NULL,
            signed_at timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        CREATE INDEX {CHECKPOINTS_TABLE}_tree_size_idx
            ON {CHECKPOINTS_TABLE} (tree_size, checkpoint_id);
        CREATE TRIGGER {CHECKPOINTS_TABLE}_no_update
            BEFORE UPDATE OR DELETE ON {CHECKPOINTS_TABLE}
            FOR EACH ROW EXECUTE FUNCTION ledger_events_immutable();
        CREATE TRIGGER {CHECKPOINTS_TABLE}_no_truncate BEFORE TRUNCATE ON {CHECKPOINTS_TABLE}
            FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_immutable();
        """,
    ),
    (
        # Keys with a life cycle (`ledger.adapters.api_keys`): unique names (a name
        # held twice before this step gets `-<its order>` after it), expiry, revocation,
        # last use, and `seq`, the order they were issued in, for `GET /v1/keys`.
        "api-keys-life-cycle",
        """
        ALTER TABLE api_keys
            ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY,
            ADD COLUMN expires_at timestamptz,
            ADD COLUMN revoked_at timestamptz,
            ADD COLUMN last_used_at timestamptz;
        UPDATE api_keys k SET name = k.name || '-' || d.n
            FROM (SELECT key_hash, row_number() OVER (PARTITION BY name
                  ORDER BY created_at, key_hash) AS n FROM api_keys) d
            WHERE d.key_hash = k.key_hash AND d.n > 1;
        CREATE UNIQUE INDEX api_keys_name_idx ON api_keys (name);
        CREATE UNIQUE INDEX api_keys_seq_idx ON api_keys (seq);
        """,
    ),
    (
        # Refused attempts kept as evidence (`ledger.adapters.refusals`), append-only.
        "refusals",
        f"""
        CREATE TABLE {REFUSALS_TABLE} (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT clock_timestamp(),
            actor text NOT NULL,
            request_id text NOT NULL,
            method text NOT NULL,
            path text NOT NULL,
            code text NOT NULL,
            ids jsonb NOT NULL
        );
        CREATE INDEX {REFUSALS_TABLE}_code_idx ON {REFUSALS_TABLE} (code, seq);
        CREATE INDEX {REFUSALS_TABLE}_actor_idx ON {REFUSALS_TABLE} (actor, seq);
        CREATE INDEX {REFUSALS_TABLE}_at_idx ON {REFUSALS_TABLE} (at, seq);
        CREATE TRIGGER {REFUSALS_TABLE}_no_update BEFORE UPDATE OR DELETE ON {REFUSALS_TABLE}
            FOR EACH ROW EXECUTE FUNCTION ledger_events_immutable();
        CREATE TRIGGER {REFUSALS_TABLE}_no_truncate BEFORE TRUNCATE ON {REFUSALS_TABLE}
            FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_immutable();
        """,
    ),
    (
        # An application role may append but not lock the event table itself: `LOCK
        # ... IN EXCLUSIVE MODE` needs UPDATE, DELETE or TRUNCATE, exactly what it must
        # not hold. The owner's functions take the lock for it, in its transaction.
        # No temporary table can stand in for the ledger's in them: the application
        # role may create none (`grant_app_role`). The lock's finds `public` (the
        # ledger's schema: POSTGRES_SCHEMA is never set) first all the same; the
        # chain's trigger keeps the caller's path: a SET clause costs every row.
        "append-lock-as-owner",
        f"""
        CREATE FUNCTION ledger_lock_events() RETURNS void LANGUAGE plpgsql
            SECURITY DEFINER SET search_path = public, pg_temp AS $$
            BEGIN
                LOCK TABLE {EVENTS_TABLE} IN EXCLUSIVE MODE;
            END $$;
        REVOKE ALL ON FUNCTION ledger_lock_events() FROM PUBLIC;
        DO $$ BEGIN
            IF to_regproc('ledger_events_chain') IS NOT NULL THEN
                ALTER FUNCTION ledger_events_chain() SECURITY DEFINER;
            END IF;
        END $$;
        """,
    ),
    (
        # The append lock, answering how long it was waited for, as the server measured
        # it (`ledger_append_lock_wait_seconds`): the lock goes out in one round trip
        # with the first read, so the client cannot time it apart. The older function
        # stays for processes of the release before; whoever may call it may call this
        # one, so that an owner's command that migrates without `db init` leaves the
        # application role able to append.
        "append-lock-wait",
        f"""
        CREATE FUNCTION ledger_lock_events_waited() RETURNS double precision
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
            BEGIN
                LOCK TABLE {EVENTS_TABLE} IN EXCLUSIVE MODE;
                RETURN extract(epoch FROM clock_timestamp() - statement_timestamp());
            END $$;
        REVOKE ALL ON FUNCTION ledger_lock_events_waited() FROM PUBLIC;
        {_grant_to_callers_of("ledger_lock_events()", f"EXECUTE ON FUNCTION {LOCK_WAITED}")}
        """,
    ),
    (
        # Snapshots of long histories (a fund year's), each written in the transaction
        # of the events that brought it about, as immutable as they are. They summarise
        # what the chain proves and are never part of it: a snapshot only spares a
        # process that has no copy the replay of a whole year. Whoever may append may
        # write them.
        "snapshots",
        f"""
        CREATE TABLE {SNAPSHOTS_TABLE} (
            originator_id uuid NOT NULL,
            originator_version bigint NOT NULL,
            topic text NOT NULL,
            state bytea NOT NULL,
            PRIMARY KEY (originator_id, originator_version)
        );
        CREATE TRIGGER {SNAPSHOTS_TABLE}_no_update BEFORE UPDATE OR DELETE ON {SNAPSHOTS_TABLE}
            FOR EACH ROW EXECUTE FUNCTION ledger_events_immutable();
        CREATE TRIGGER {SNAPSHOTS_TABLE}_no_truncate BEFORE TRUNCATE ON {SNAPSHOTS_TABLE}
            FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_immutable();
        {_grant_to_callers_of(LOCK_WAITED, f"SELECT, INSERT ON {SNAPSHOTS_TABLE}")}
        """,
    ),
    (
        # What a decision taken under the append lock read, checked by the server ahead
        # of its events (`AppendSession.expect_current`) instead of awaited with the
        # lock held: a version no longer current fails the transaction, which then
        # records nothing. Each version by one backward index probe, as `changed_sql`.
        "expect-current",
        f"""
        CREATE FUNCTION {EXPECT_CURRENT}(ids uuid[], versions bigint[]) RETURNS void
            LANGUAGE plpgsql AS $$
            BEGIN
                IF EXISTS (
                    SELECT 1 FROM unnest(ids, versions) AS a(id, read)
                    WHERE coalesce((SELECT x.originator_version FROM {EVENTS_TABLE} x
                                    WHERE x.originator_id = a.id
                                    ORDER BY x.originator_version DESC LIMIT 1), 0) <> a.read
                ) THEN
                    RAISE EXCEPTION '{STALE}' USING ERRCODE = 'serialization_failure';
                END IF;
            END $$;
        """,  # noqa: S608 - DDL from constants, no values
    ),
    (
        # A decision taken on a process's copies with the lock released, recorded in
        # one statement and one transaction (`LedgerRecorder.append_checked`): the
        # lock, the check of every version it read, its events and any snapshots. The
        # six statements of an append session cost the writing process more than the
        # decision of a proposal (docs/performance.md, "stop 34"). It must
        # stay VOLATILE: its check then sees what was committed before the lock.
        "append-checked",
        f"""
        CREATE FUNCTION {APPEND_CHECKED}(
            lock_timeout text, read_ids uuid[], read_versions bigint[],
            ids uuid[], versions bigint[], topics text[], states bytea[],
            snapshot_ids uuid[], snapshot_versions bigint[], snapshot_topics text[],
            snapshot_states bytea[], OUT waited double precision, OUT positions bigint[])
            LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM set_config('lock_timeout', lock_timeout, true);
                waited := {LOCK_WAITED};
                PERFORM {EXPECT_CURRENT}(read_ids, read_versions);
                WITH inserted AS (
                    INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state)
                    SELECT * FROM unnest(ids, versions, topics, states)
                    RETURNING notification_id
                )
                SELECT coalesce(array_agg(notification_id ORDER BY notification_id), '{{}}')
                INTO positions FROM inserted;
                INSERT INTO {SNAPSHOTS_TABLE} (originator_id, originator_version, topic, state)
                SELECT * FROM unnest(snapshot_ids, snapshot_versions, snapshot_topics,
                                     snapshot_states);
            END $$;
        """,  # noqa: S608 - DDL from constants, no values
    ),
    (
        # The append lock on a table of its own. `EXCLUSIVE` on the event table itself
        # also waits for VACUUM and ANALYZE, autovacuum's included, which hold it in
        # `SHARE UPDATE EXCLUSIVE` mode: every append stood still until PostgreSQL
        # cancelled autovacuum, a `deadlock_timeout` (1 s) later, and the table was
        # never vacuumed but by the anti-wraparound vacuum, which is not cancelled
        # (docs/performance.md, "stop 35"). On a table of its own, the lock leaves
        # VACUUM and ANALYZE of the history alone; vacuum no longer cuts empty pages
        # off its end either, which takes the table whole for a moment. Every insert
        # into the event table still takes the lock, before any row of the statement
        # takes its position (the statement's trigger): positions are taken, committed
        # and chained in one order, whoever inserts. Only in READ COMMITTED: a
        # transaction reading one snapshot throughout would chain an event to one
        # before the last. The chain's trigger then need not lock for each row, nor
        # run as the owner. The lock functions keep their names for their callers.
        "append-lock-own-table",
        f"""
        CREATE TABLE {APPEND_LOCK_TABLE} ();
        CREATE FUNCTION ledger_append_lock() RETURNS trigger LANGUAGE plpgsql
            SECURITY DEFINER SET search_path = public, pg_temp AS $$
            BEGIN
                IF current_setting('transaction_isolation') <> 'read committed' THEN
                    RAISE EXCEPTION '{READ_COMMITTED_ONLY}'
                        USING ERRCODE = 'invalid_transaction_state';
                END IF;
                LOCK TABLE {APPEND_LOCK_TABLE} IN EXCLUSIVE MODE;
                RETURN NULL;
            END $$;
        REVOKE ALL ON FUNCTION ledger_append_lock() FROM PUBLIC;
        ALTER TABLE {EVENTS_TABLE} SET (vacuum_truncate = false);
        CREATE TRIGGER ledger_events_append_lock BEFORE INSERT ON {EVENTS_TABLE}
            FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_lock();
        CREATE OR REPLACE FUNCTION ledger_lock_events() RETURNS void LANGUAGE plpgsql
            SECURITY DEFINER SET search_path = public, pg_temp AS $$
            BEGIN
                LOCK TABLE {APPEND_LOCK_TABLE} IN EXCLUSIVE MODE;
            END $$;
        CREATE OR REPLACE FUNCTION {LOCK_WAITED} RETURNS double precision
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
            BEGIN
                LOCK TABLE {APPEND_LOCK_TABLE} IN EXCLUSIVE MODE;
                RETURN extract(epoch FROM clock_timestamp() - statement_timestamp());
            END $$;
        """
        + _chain_trigger(""),
    ),
]

#: what an application role may do to the ledger's own tables (`grant_app_role`): append
#: to the history, never change it; keys and talents' keys change as their life cycles do
APP_PRIVILEGES: dict[str, str] = {
    # only what an append writes: the position, instant and hash are the database's
    EVENTS_TABLE: "SELECT, INSERT (originator_id, originator_version, topic, state)",
    CHECKPOINTS_TABLE: "SELECT, INSERT",
    SNAPSHOTS_TABLE: "SELECT, INSERT",
    REFUSALS_TABLE: "SELECT, INSERT",
    "api_keys": "SELECT, INSERT, UPDATE",
    "talent_keys": "SELECT, INSERT, UPDATE",
    "ledger_schema": "SELECT",
}
ROLE_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"


def grant_app_role(datastore: PostgresDatastore, role: str, read_models: Sequence[str]) -> None:
    """Create the application role `role` if there is none (it logs in; its password,
    if any, is the database administrator's business), and grant it what the ledger
    needs: `APP_PRIVILEGES`, the append lock, and all of the `read_models` (rebuilt by
    truncating them). Run as the owner of the schema."""
    if not re.fullmatch(ROLE_PATTERN, role):
        raise ValidationFailed("app_role", f"{role!r} is not a role name (a-z, 0-9, _)")
    who = sql.Identifier(role)
    with schema_lock(datastore), datastore.transaction(commit=True) as curs:
        curs.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if curs.fetchone() is None:
            curs.execute(sql.SQL("CREATE ROLE {} LOGIN").format(who))
        curs.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(datastore.schema), who)
        )
        for table, privileges in APP_PRIVILEGES.items():
            curs.execute(
                sql.SQL("GRANT " + privileges + " ON {} TO {}").format(sql.Identifier(table), who)
            )
        for table in read_models:
            curs.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {} TO {}").format(
                    sql.Identifier(table), who
                )
            )
        curs.execute(
            sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(
                sql.Identifier(datastore.schema), who
            )
        )
        for function in (
            "ledger_lock_events()",
            LOCK_WAITED,
            f"{EXPECT_CURRENT}(uuid[], bigint[])",
            f"{APPEND_CHECKED}({APPEND_CHECKED_ARGUMENTS})",
        ):
            curs.execute(sql.SQL(f"GRANT EXECUTE ON FUNCTION {function} TO {{}}").format(who))
        # a temporary table named like one of the ledger's would stand in for it in the
        # owner's functions, which the application role calls
        curs.execute("SELECT current_database() AS db")
        database = curs.fetchone()["db"]  # type: ignore[index]
        curs.execute(
            sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database))
        )


@contextmanager
def schema_lock(datastore: PostgresDatastore) -> Iterator[None]:
    """One process at a time changes the schema (every process does it on start)."""
    with datastore.get_connection() as lock_conn:
        lock_conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
        try:
            yield
        finally:
            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))


def migrate(
    datastore: PostgresDatastore,
    steps: Sequence[tuple[str, str]],
    *,
    recorder: LedgerRecorder | None = None,
) -> None:
    """Apply the `steps` not applied yet (after creating the event table, given its
    `recorder`); safe when several processes start at once."""
    with schema_lock(datastore):
        if _up_to_date(datastore, steps, recorder):
            return
        if recorder is not None:
            recorder.create_table()
        with datastore.transaction(commit=True) as curs:
            curs.execute(
                "CREATE TABLE IF NOT EXISTS ledger_schema (name text PRIMARY KEY, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            curs.execute("SELECT name FROM ledger_schema")
            done = {row["name"] for row in curs.fetchall()}
            for name, statement in steps:
                if name not in done:
                    curs.execute(statement)  # fixed DDL text
                    curs.execute("INSERT INTO ledger_schema (name) VALUES (%s)", (name,))


class SchemaBehind(Exception):
    """The schema lacks steps this code needs, and this role may not add them."""


def _up_to_date(
    datastore: PostgresDatastore, steps: Sequence[tuple[str, str]], recorder: LedgerRecorder | None
) -> bool:
    """Whether every step was applied (and the event table made): then migrating does
    nothing, which is all an application role may do (it may not create or alter
    anything). A role that may not when there is something to do is told who may."""
    with statements(datastore) as curs:
        curs.execute(
            "SELECT to_regclass('ledger_schema') IS NOT NULL AS known, "
            "to_regclass(%s) IS NOT NULL AS events, "
            "has_schema_privilege(current_schema(), 'CREATE') AS may_create",
            (EVENTS_TABLE,),
        )
        row = curs.fetchone()
        assert row is not None
        done: set[str] = set()
        if row["known"]:
            curs.execute("SELECT name FROM ledger_schema")
            done = {r["name"] for r in curs.fetchall()}
    if {name for name, _ in steps} <= done and (recorder is None or row["events"]):
        return True
    if not row["may_create"]:
        raise SchemaBehind(
            "the database's schema needs upgrading, which this role may not do: run "
            "`ledger db init --app-role ROLE` as the schema's owner first"
        )
    return False


@contextmanager
def statements(datastore: PostgresDatastore) -> Iterator[Cursor[DictRow]]:
    """A cursor whose statements each commit alone (the pool's connections
    autocommit): a read of one statement needs no transaction, whose BEGIN and
    ROLLBACK would triple its round trips."""
    with datastore.get_connection() as conn:
        yield conn.cursor()


@contextmanager
def snapshot(datastore: PostgresDatastore) -> Iterator[Cursor[DictRow]]:
    """A read-only transaction whose statements all see one moment: the read models a
    report joins agree with each other whatever batch commits meanwhile. Kept short:
    nothing inside it waits on a client."""
    with datastore.transaction(commit=False) as curs:
        curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield curs


_HEAD = sql.SQL("SELECT coalesce(max(notification_id), 0) AS head FROM {}").format(
    sql.Identifier(EVENTS_TABLE)
)


def head_position(datastore: PostgresDatastore) -> int:
    """The position of the last event recorded (0 before the first)."""
    with statements(datastore) as curs:
        return int(curs.execute(_HEAD).fetchone()["head"])  # type: ignore[index]


def datastore_of(app: Application[Any]) -> PostgresDatastore:
    """The connection pool behind an application, shared by read models and keys."""
    recorder = app.recorder
    assert isinstance(recorder, LedgerRecorder), "the ledger runs on PostgreSQL only"
    return recorder.datastore
