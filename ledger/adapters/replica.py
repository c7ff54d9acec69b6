"""A read replica: a standby kept by PostgreSQL's own streaming replication.

Reads of the read models may go to it (`LEDGER_READ_DATABASE_URL`); writes, the
projection workers, keys and everything a decision reads stay on the primary. A standby
is only as fresh as its replay: a read that names a position (`min_position`) waits
for it there, and takes the primary past a short wait (`projections.waits`).

While the standby does not answer, reads go to the primary: the same rows, at least as
fresh, at the cost of the primary's load, which is better than refusing reads that the
primary can serve. A probe asks it once a second, and a connection found broken takes it
out at once; a read already under way on a standby that dies gets the retryable `503` of
any lost connection (docs/deployment.md, "Read replica").
"""

from __future__ import annotations

import threading

import structlog
from eventsourcing.postgres import PostgresDatastore

from ledger.adapters.pool import LedgerPool

log = structlog.get_logger(__name__)

PROBE_SECONDS = 1.0


class Standby(PostgresDatastore):
    """The standby's connection pool, knowing its primary (what a position is checked
    against: the standby may not have replayed the last event recorded) and whether it
    answers."""

    primary: PostgresDatastore
    up = False
    _stop: threading.Event

    def watch(self, primary: PostgresDatastore) -> None:
        """Start probing it, once a second, in a thread of its own."""
        self.primary = primary
        self._stop = threading.Event()
        self.probe()
        threading.Thread(target=self._probe_forever, name="standby-probe", daemon=True).start()

    @property
    def usable(self) -> bool:
        """Up at the last probe, and no connection found broken since."""
        pool = self.pool
        return self.up and not (isinstance(pool, LedgerPool) and pool.suspect)

    def probe(self) -> None:
        """Up when it answers and is still a standby: one promoted (or a URL naming
        another primary) follows this ledger's primary no more, and its reads would
        fall behind for good."""
        try:
            with self.get_connection() as conn:
                row = conn.execute("SELECT pg_is_in_recovery() AS standby").fetchone()
            reason = None if row and row["standby"] else "not_in_recovery"
        except Exception as e:  # any failure to answer is down
            reason = type(e).__name__
        if reason is not None and self.up:
            log.warning("standby_down", reason=reason)
        elif reason is None and not self.up:
            log.info("standby_up")
        self.up = reason is None

    def _probe_forever(self) -> None:
        while not self._stop.wait(PROBE_SECONDS):
            self.probe()

    def close(self) -> None:
        if hasattr(self, "_stop"):
            self._stop.set()
        super().close()


def primary_of(datastore: PostgresDatastore) -> PostgresDatastore:
    """Where the events are recorded first: the datastore itself, or a standby's primary."""
    return datastore.primary if isinstance(datastore, Standby) else datastore


def reads_from(primary: PostgresDatastore, standby: Standby | None) -> PostgresDatastore:
    """The datastore a read goes to now: the standby while it answers."""
    return standby if standby is not None and standby.usable else primary
