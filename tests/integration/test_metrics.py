"""`GET /metrics` in one process (several: `tests/e2e/test_serve.py`): Prometheus text
for any valid key, with what an operator watches first."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

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
