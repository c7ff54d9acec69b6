"""Follows the event store and keeps the read models, one transaction per batch."""

from __future__ import annotations

import threading
import time

import structlog
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore
from psycopg import sql

from ledger.application import LedgerApplication
from ledger.store import EVENTS_TABLE, datastore_of
from projections.balances import PROJECTION, apply_event

log = structlog.get_logger(__name__)

BATCH_SIZE = 1000
IDLE_POLL_SECONDS = 0.02
MIN_POSITION_WAIT_SECONDS = 5.0


class ProjectionWorker:
    """Applies events after the tracked position; safe to run in many processes."""

    def __init__(self, app: LedgerApplication) -> None:
        self.app = app
        self.datastore: PostgresDatastore = datastore_of(app)
        self._stop = threading.Event()

    def run_batch(self, limit: int = BATCH_SIZE) -> int:
        """Apply the next batch; the tracking row lock keeps other workers out meanwhile."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "SELECT position FROM projection_tracking WHERE name = %s FOR UPDATE",
                (PROJECTION,),
            )
            row = curs.fetchone()
            assert row is not None, "projection_tracking is not migrated"
            curs.execute(
                sql.SQL(
                    "SELECT notification_id, originator_id, originator_version, topic, state "
                    "FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
                ).format(sql.Identifier(EVENTS_TABLE)),
                (row["position"], limit),
            )
            rows = curs.fetchall()
            for r in rows:
                stored = StoredEvent(
                    originator_id=r["originator_id"],
                    originator_version=r["originator_version"],
                    topic=r["topic"],
                    state=bytes(r["state"]),
                )
                apply_event(curs, self.app.mapper.to_domain_event(stored))
            if rows:
                curs.execute(
                    "UPDATE projection_tracking SET position = %s WHERE name = %s",
                    (rows[-1]["notification_id"], PROJECTION),
                )
            return len(rows)

    def catch_up(self) -> None:
        while self.run_batch():
            pass

    def run_forever(self) -> None:
        log.info("projection_worker_started", projection=PROJECTION)
        while not self._stop.is_set():
            try:
                if not self.run_batch():
                    self._stop.wait(IDLE_POLL_SECONDS)
            except Exception:  # a worker must outlive a database restart
                log.exception("projection_batch_failed")
                self._stop.wait(1.0)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name="projections", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()


def tracked_position(datastore: PostgresDatastore) -> int:
    with datastore.transaction(commit=False) as curs:
        curs.execute("SELECT position FROM projection_tracking WHERE name = %s", (PROJECTION,))
        row = curs.fetchone()
        return int(row["position"]) if row else 0


def wait_for_position(datastore: PostgresDatastore, position: int) -> bool:
    """Poll until the read models include `position`; False after the wait limit."""
    deadline = time.monotonic() + MIN_POSITION_WAIT_SECONDS
    while tracked_position(datastore) < position:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
