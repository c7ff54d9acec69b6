"""Traces (OpenTelemetry), only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set: a span per
request (FastAPI's instrumentation) carrying the request's `request_id`, and under it a
span per SQL statement (psycopg's), sent over OTLP/HTTP in batches. Without the
variable nothing is instrumented, and a request costs what it did.

Traces start only at requests (`RequestsOnly`). The SDK reads the standard variables
itself: `OTEL_SERVICE_NAME` (default `talent-ledger`), `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_SCHEDULE_DELAY`... (docs/operations.md,
"Traces"). Statements are traced without their parameters: those may hold a talent's
sealed data or a key's digest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

SERVICE = "talent-ledger"
#: probes and scrapes, asked every few seconds, would drown the requests in spans
UNTRACED = "healthz,readyz,metrics"


class RequestsOnly(Sampler):
    """A trace starts only at a request. Statements outside any request (the group
    commit's appends, which serve many requests at once; the projection worker's batches
    every few milliseconds; probes) would flood the collector with spans of no request,
    and crowd out the requests' own: their time shows in the metrics instead."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if kind == SpanKind.SERVER:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "RequestsOnly"


def new_provider(service: str = SERVICE) -> TracerProvider:
    """A provider whose traces start at requests (a request's statements follow it)."""
    return TracerProvider(
        sampler=ParentBased(root=RequestsOnly()), resource=Resource.create({SERVICE_NAME: service})
    )


def tracer_provider(environ: Mapping[str, str]) -> TracerProvider | None:
    """A provider exporting to the configured collector; None when none is."""
    if not environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    provider = new_provider(environ.get("OTEL_SERVICE_NAME") or SERVICE)
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
