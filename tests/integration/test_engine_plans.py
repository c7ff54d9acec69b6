"""The engine's reads under the append lock keep to the primary key whatever join the
planner would rather make: with statistics of one fund year holding half the table
(W1's shape), it answered `events_after` for eight aggregates or more with a parallel
scan of the whole event table (15 ms at 48,000 events, under the lock). Such
statistics are hard to make on purpose; a planner told to avoid nested loops prefers
the same plan, so the test tells it that."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import bench.generate
from ledger.adapters.postgres import EVENTS_TABLE, LedgerRecorder
from ledger.usecases.ledger import Ledger

pytestmark = [pytest.mark.db]


def _nodes(plan: dict[str, Any]) -> Iterator[str]:
    yield plan["Node Type"]
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@pytest.fixture
def long_history(ledger: Ledger, db_url: str) -> list[Any]:
    """10,000 events as the bench makes them (fund years, talents, grants, payments),
    analysed as autovacuum would; the ids of the sixteen longest streams."""
    bench.generate.generate(ledger, 10_000)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"ANALYZE {EVENTS_TABLE}")
        rows = conn.execute(
            f"SELECT originator_id FROM {EVENTS_TABLE} GROUP BY 1 ORDER BY count(*) DESC LIMIT 16"
        ).fetchall()
    return [aggregate_id for (aggregate_id,) in rows]


@pytest.mark.parametrize("query", ["changed_sql", "events_after_sql"])
def test_reads_under_the_lock_probe_the_primary_key(
    ledger: Ledger, db_url: str, long_history: list[Any], query: str
) -> None:
    recorder = ledger.recorder
    assert isinstance(recorder, LedgerRecorder)
    statement = getattr(recorder, query)
    params: tuple[Any, ...] = (long_history, [1] * 16)
    if query == "changed_sql":
        params += (1_000,)
    with psycopg.connect(db_url) as conn:
        conn.execute("SET enable_nestloop = off")
        (plan,) = conn.execute(f"EXPLAIN (FORMAT JSON) {statement}", params).fetchone()[0]
    nodes = set(_nodes(plan["Plan"]))
    assert not nodes & {"Seq Scan", "Parallel Seq Scan", "Hash Join", "Merge Join"}, nodes
