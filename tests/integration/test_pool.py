"""The connection pool after its connections died under it (`ledger.adapters.pool`)."""

from __future__ import annotations

import psycopg
from eventsourcing.persistence import OperationalError

from ledger.adapters.pool import LedgerPool
from ledger.adapters.postgres import datastore_of
from ledger.usecases.ledger import Ledger


def test_connections_killed_under_the_pool_cost_one_request_not_one_each(
    ledger: Ledger, db_url: str
) -> None:
    """A restart leaves every pooled connection dead: the first broken one drains the
    pool, so the next request gets a new connection instead of the next dead one."""
    datastore = datastore_of(ledger)
    assert isinstance(datastore.pool, LedgerPool)
    datastore.pool.wait(timeout=10)
    idle = datastore.pool.get_stats()["pool_available"]
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )

    failures = 0
    for _ in range(idle + 2):
        try:
            with datastore.transaction(commit=False) as curs:
                curs.execute("SELECT 1")
        except OperationalError:
            failures += 1

    assert idle >= 2
    assert failures == 1
