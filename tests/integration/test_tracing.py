"""Traces (`api.tracing`): with a tracer provider, a request is a span carrying its
`request_id`, with its SQL statements as spans under it, and no statement's parameters;
without one (no `OTEL_EXPORTER_OTLP_ENDPOINT`) nothing is traced."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api import tracing
from api.app import create_app
from ledger.adapters.postgres import datastore_of
from ledger.entrypoints.runtime import Settings
from tests.conftest import install_key


@pytest.fixture
def traced(test_settings: Settings) -> Iterator[tuple[TestClient, InMemorySpanExporter]]:
    """The app as it comes (its projection worker in process), traced in memory."""
    exporter = InMemorySpanExporter()
    provider = tracing.new_provider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(test_settings, provider)
    with TestClient(app) as client:
        key = install_key(datastore_of(app.state.ledger), "admin", ["admin"])
        client.headers["Authorization"] = f"Bearer {key}"
        exporter.clear()
        yield client, exporter


def _requests(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [s for s in spans if (s.attributes or {}).get("http.route")]


def _statements(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [s for s in spans if (s.attributes or {}).get("db.system") == "postgresql"]


def test_a_request_is_a_span_with_its_request_id_and_its_statements_under_it(
    traced: tuple[TestClient, InMemorySpanExporter],
) -> None:
    client, exporter = traced
    r = client.get("/v1/fund-years", headers={"X-Request-Id": "req-t1"})
    assert r.status_code == 200, r.text

    spans = exporter.get_finished_spans()
    (server,) = [s for s in _requests(spans) if s.parent is None]
    assert server.attributes is not None
    assert server.attributes["request_id"] == "req-t1"
    assert server.attributes["http.route"] == "/v1/fund-years"
    statements = _statements(spans)
    assert any("SELECT" in s.name for s in statements), [s.name for s in spans]
    assert {s.context.trace_id for s in statements} == {server.context.trace_id}
    for span in statements:
        assert not any(k.startswith("db.statement.parameters") for k in span.attributes or {})


def test_statements_outside_any_request_are_not_traced(
    traced: tuple[TestClient, InMemorySpanExporter],
) -> None:
    """The group commit's appends (for many requests at once) and the projection
    worker's batches start no trace of their own: every span exported belongs to a
    request's (docs/operations.md, "Traces")."""
    client, exporter = traced
    r = client.post(
        "/v1/fund-years", json={"year": 2025, "currency": "CNY"}, headers={"X-Request-Id": "req-t2"}
    )
    assert r.status_code == 201, r.text
    time.sleep(0.3)  # the worker applies the write meanwhile, in batches of its own
    spans = exporter.get_finished_spans()
    (server,) = [s for s in _requests(spans) if s.parent is None]
    assert (server.attributes or {})["request_id"] == "req-t2"
    assert {s.context.trace_id for s in spans} == {server.context.trace_id}


def test_probes_are_not_traced(traced: tuple[TestClient, InMemorySpanExporter]) -> None:
    client, exporter = traced
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert not exporter.get_finished_spans()  # not their statements either


def test_only_a_configured_endpoint_turns_tracing_on() -> None:
    assert tracing.tracer_provider({}) is None
    provider = tracing.tracer_provider({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes["service.name"] == "talent-ledger"
    provider.shutdown()
