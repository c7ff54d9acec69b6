"""Traces (OpenTelemetry), only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set: a span per
request (FastAPI's instrumentation) carrying the request's `request_id`, and under it a
span per SQL statement (psycopg's), sent over OTLP/HTTP in batches. Without the
variable nothing is instrumented, and a request costs what it did.

The SDK reads the standard variables itself: `OTEL_SERVICE_NAME` (default
`talent-ledger`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`, the
sampler's `OTEL_TRACES_SAMPLER`... (docs/operations.md, "Traces"). Statements are
traced without their parameters: those may hold a talent's sealed data or a key's
digest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

SERVICE = "talent-ledger"
#: probes and scrapes, asked every few seconds, would drown the requests in spans
UNTRACED = "healthz,readyz,metrics"


def tracer_provider(environ: Mapping[str, str]) -> TracerProvider | None:
    """A provider exporting to the configured collector; None when none is."""
    if not environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: environ.get("OTEL_SERVICE_NAME") or SERVICE})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def trace_requests(app: FastAPI, provider: TracerProvider) -> None:
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls=UNTRACED)


def traced_connections(provider: TracerProvider) -> Callable[[Any], None]:
    """What instruments each new connection of a pool: the statements on it get spans."""

    def instrument(conn: Any) -> None:
        PsycopgInstrumentor.instrument_connection(conn, tracer_provider=provider)

    return instrument


def name_request(request_id: str) -> None:
    """Put the request's id on its span (nothing to do when it is not traced)."""
    trace.get_current_span().set_attribute("request_id", request_id)
