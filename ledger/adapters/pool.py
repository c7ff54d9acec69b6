"""The connection pool, made to ride out a database restart.

Left alone, psycopg_pool (under eventsourcing's datastore) keeps every caller waiting
the whole pool timeout while the database refuses connections, hands out the dead
connections a restart left behind one request at a time, and retries connecting with
a backoff that doubles up to minutes, so a service could stay down long after its
database is back. This pool instead:

- drains itself when a connection comes back broken: its idle siblings died with it;
- while the database looks down (a broken connection, or reconnecting failed), lets a
  caller wait only briefly: its wait starts a new connection attempt, which either
  proves the database back or ends in a quick, retryable `503`;
- gives up a reconnection after a second, so the next caller starts a fresh attempt
  at once rather than after a long backoff.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from eventsourcing.postgres import ConnectionPool, PostgresDatastore
from psycopg import Connection
from psycopg.rows import DictRow

SUSPECT_WAIT_SECONDS = 0.5
RECONNECT_TIMEOUT_SECONDS = 1.0


class LedgerPool(ConnectionPool[Connection[DictRow]]):
    suspect = False  # the database may be down: wait for a connection only briefly

    def getconn(self, timeout: float | None = None) -> Connection[DictRow]:
        if self.suspect:
            timeout = min(self.timeout if timeout is None else timeout, SUSPECT_WAIT_SECONDS)
        conn = super().getconn(timeout)
        # Handed out after a drain, so connected since: the database answers again.
        self.suspect = False
        return conn

    def putconn(self, conn: Connection[DictRow]) -> None:
        if conn.broken and not self.suspect:
            self.suspect = True
            self.drain()
        super().putconn(conn)

    def reconnect_failed(self) -> None:
        self.suspect = True
        super().reconnect_failed()


def use_ledger_pool(
    datastore: PostgresDatastore,
    connection: Mapping[str, Any],
    on_connect: Callable[[Connection[DictRow]], None] | None = None,
) -> None:
    """Give `datastore` a `LedgerPool` with the settings of the pool it was built with,
    its connections made with every other `connection` parameter too (`sslmode`,
    `options`, keepalives, `target_session_attrs`...: what eventsourcing's own settings
    have no name for), each new one handed to `on_connect` too (to trace it)."""
    old = datastore.pool
    assert isinstance(old.kwargs, dict)  # as eventsourcing builds it
    configure = datastore.after_connect_func()
    if on_connect is not None:
        first = configure

        def configure(conn: Connection[DictRow]) -> None:
            first(conn)
            on_connect(conn)

    datastore.pool = LedgerPool(
        connection_class=old.connection_class,
        kwargs={**old.kwargs, **connection},
        min_size=old.min_size,
        max_size=old.max_size,
        open=False,
        configure=configure,
        check=ConnectionPool.check_connection if datastore.pre_ping else None,
        timeout=old.timeout,
        max_waiting=old.max_waiting,
        max_lifetime=old.max_lifetime,
        reconnect_timeout=RECONNECT_TIMEOUT_SECONDS,
        get_password_func=old.get_password_func,
    )
    old.close()
