"""`GET /metrics` (CONTRACT §15): Prometheus text, for any valid key.

What each process counts (requests, their latency, group commits, its pool) is kept by
prometheus-client; with several `--workers`, `ledger serve` gives them one fresh
directory (`PROMETHEUS_MULTIPROC_DIR`) where each process writes its own file and a
scrape, whichever process answers it, adds them up. What is true of the ledger as a
whole (the head, the read models' lag, runs and reconciliations) is read from the
database when scraped.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Iterator
from typing import Any, Protocol

from fastapi import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from api.problems import problem_responses
from api.routing import ANY_ROLE, LedgerDep, PrincipalDep, ledger_router, roles
from ledger.adapters.postgres import datastore_of, statements
from ledger.usecases.ledger import Ledger
from projections.waits import tracked_position
from projections.worker import NAMES

router = ledger_router("operations", prefix="")

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# registry=None: registered into each scrape's registry (`_registry`), not a global one
REQUESTS = Counter(
    "ledger_http_requests", "Requests answered", ["method", "route", "status"], registry=None
)
LATENCY = Histogram(
    "ledger_http_request_duration_seconds",
    "Time to answer a request",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
GROUP_SIZE = Histogram(
    "ledger_group_commit_size",
    "Commands decided and recorded in one append",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=None,
)
APPEND_SECONDS = Histogram(
    "ledger_append_seconds",
    "Time from asking for the append lock to the commit: the lock's wait, the decisions "
    "and the insert",
    buckets=LATENCY_BUCKETS,
    registry=None,
)
LOCK_WAIT = Histogram(
    "ledger_append_lock_wait_seconds",
    "Time an append waited for the append lock (other processes' appends), as the "
    "database measured it",
    buckets=LATENCY_BUCKETS,
    registry=None,
)
POOL = Gauge(
    "ledger_pool_connections",
    "This process's database connections, by state",
    ["state"],
    multiprocess_mode="liveall",
    registry=None,
)
OWN = (REQUESTS, LATENCY, GROUP_SIZE, APPEND_SECONDS, LOCK_WAIT, POOL)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    count, latency = _request_series(method, route, status)
    count.inc()
    latency.observe(seconds)


@functools.cache
def _request_series(method: str, route: str, status: int) -> tuple[Any, Any]:
    """A route's series, found once: `labels` takes a lock and builds a key each time.
    The cache holds what the metric holds anyway: routes are templates, and methods
    and statuses few."""
    labels = (method, route, str(status))
    return REQUESTS.labels(*labels), LATENCY.labels(*labels)


def observe_group(size: int, seconds: float, lock_waited: float) -> None:
    GROUP_SIZE.observe(size)
    APPEND_SECONDS.observe(seconds)
    LOCK_WAIT.observe(lock_waited)


class Pool(Protocol):
    def get_stats(self) -> dict[str, int]: ...


#: how often each process samples its pool's figures (a scrape reads the last sample)
POOL_SAMPLE_SECONDS = 1.0


async def sample_pool(pool: Pool) -> None:
    """This process's pool, sampled every POOL_SAMPLE_SECONDS until cancelled: a figure
    of the moment, which no request need pay for."""
    while True:
        observe_pool(pool)
        await asyncio.sleep(POOL_SAMPLE_SECONDS)


def observe_pool(pool: Pool) -> None:
    stats = pool.get_stats()
    POOL.labels("open").set(stats.get("pool_size", 0))
    POOL.labels("idle").set(stats.get("pool_available", 0))
    POOL.labels("waited_for").set(stats.get("requests_waiting", 0))


_COUNTS = """
SELECT (SELECT coalesce(max(notification_id), 0) FROM ledger_events) AS head,
       (SELECT count(*) FROM rm_disbursement_runs) AS runs,
       (SELECT count(*) FROM rm_reconciliations) AS reconciliations
"""


class LedgerFigures(Collector):
    """Figures of the whole ledger, read from the database at each scrape."""

    def __init__(self, ledger: Ledger) -> None:
        self._datastore = datastore_of(ledger)

    def collect(self) -> Iterator[Any]:
        with statements(self._datastore) as curs:
            row = curs.execute(_COUNTS).fetchone()
        assert row is not None
        position = tracked_position(self._datastore, NAMES)
        yield GaugeMetricFamily("ledger_head_position", "The last event recorded", row["head"])
        yield GaugeMetricFamily(
            "ledger_projection_lag_events",
            "Events recorded that the read models have not applied yet",
            row["head"] - position,
        )
        yield GaugeMetricFamily(
            "ledger_disbursement_runs", "Disbursement runs prepared", row["runs"]
        )
        yield GaugeMetricFamily(
            "ledger_reconciliations", "Bank statements reconciled", row["reconciliations"]
        )


def _registry(ledger: Ledger) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    if os.environ.get(MULTIPROCESS):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for metric in OWN:
            registry.register(metric)
    registry.register(LedgerFigures(ledger))
    return registry


@router.get(
    "/metrics",
    summary="Metrics for Prometheus",
    openapi_extra=roles(*ANY_ROLE),
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}, "description": "Text"},
        **problem_responses("unauthenticated", "validation_error", "unavailable"),
    },
)
def get_metrics(ledger: LedgerDep, _: PrincipalDep) -> Response:
    """Requests and their latency by route and status, group-commit sizes and append
    times, connection-pool use, the head position and the read models' lag, and the
    counts of disbursement runs and reconciliations, in Prometheus's text format."""
    return Response(generate_latest(_registry(ledger)), media_type=CONTENT_TYPE_LATEST)
