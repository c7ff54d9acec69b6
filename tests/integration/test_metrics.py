"""`GET /metrics` in one process (several: `tests/e2e/test_serve.py`): Prometheus text
for any valid key, with what an operator watches first."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ledger.adapters.postgres import APPEND_LOCK_TABLE
from tests.integration.scenario import Actors, open_year

Api = Callable[[str | None], TestClient]


def _samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def test_metrics_count_requests_groups_and_the_ledger_for_any_key(api: Api) -> None:
    assert api(None).get("/metrics").status_code == 401
    auditor = api("auditor")
    route = (("method", "POST"), ("route", "/v1/fund-years"), ("status", "201"))
    before = _samples(auditor)
    a = Actors.of(api)
    open_year(a, 2024)
    head = int(
        a.admin.post("/v1/fund-years", json={"year": 2025, "currency": "CNY"}).headers[
            "Ledger-Position"
        ]
    )
    auditor.get("/v1/fund-years/2025", params={"min_position": head})
    after = _samples(auditor)

    def grew(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
        return after[(name, labels)] - before.get((name, labels), 0.0)

    assert grew("ledger_http_requests_total", route) == 2
    assert grew("ledger_http_request_duration_seconds_count", route) == 2
    assert grew("ledger_group_commit_size_count") >= 1
    assert grew("ledger_append_seconds_count") == grew("ledger_group_commit_size_count")
    assert after[("ledger_head_position", ())] == head
    assert after[("ledger_projection_lag_events", ())] == 0
    assert after[("ledger_disbursement_runs", ())] == 0
    assert after[("ledger_pool_connections", (("state", "open"),))] >= 1
    for role in ("admin", "clerk", "approver", "treasury"):
        assert api(role).get("/metrics").status_code == 200


def test_the_append_lock_s_wait_is_measured_apart(api: Api, db_url: str) -> None:
    """Another process holding the append lock for half a second: the write waits for
    it, and `ledger_append_lock_wait_seconds` says so, as well as the append's time."""
    auditor = api("auditor")
    admin = api("admin")
    before = _samples(auditor)
    with psycopg.connect(db_url) as other:  # a transaction until its rollback
        other.execute(f"LOCK TABLE {APPEND_LOCK_TABLE} IN EXCLUSIVE MODE")
        holder = threading.Timer(0.5, other.rollback)  # let go of it in half a second
        started = time.monotonic()
        holder.start()
        r = admin.post("/v1/fund-years", json={"year": 2025, "currency": "CNY"})
        holder.join()
    assert r.status_code == 201, r.text
    assert time.monotonic() - started >= 0.5
    after = _samples(auditor)

    def grew(name: str) -> float:
        return after[(name, ())] - before.get((name, ()), 0.0)

    assert grew("ledger_append_lock_wait_seconds_count") == 1
    assert 0.4 <= grew("ledger_append_lock_wait_seconds_sum") <= grew("ledger_append_seconds_sum")


def test_the_pool_is_sampled_by_the_process_not_by_requests(api: Api) -> None:
    """The pool's figures are there at the first scrape of a fresh process, before it
    answered anything, and follow the pool without a request paying for each sample."""
    first = _samples(api("auditor"))
    assert first[("ledger_pool_connections", (("state", "open"),))] >= 1
    assert ("ledger_pool_connections", (("state", "idle"),)) in first
