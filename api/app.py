"""The FastAPI application: built by `create_app`, its resources opened in `lifespan`."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import os
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from opentelemetry.sdk.trace import TracerProvider
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import audit, batch, exports, keys, metrics, reads, tracing, treasury, writer
from api.console import pages as console
from api.console.session import Sessions
from api.examples import with_examples
from api.problems import (
    UNAVAILABLE,
    ProblemError,
    install_problem_handlers,
    install_unavailable_handlers,
    problem_response,
    problem_responses,
    unavailable_response,
    with_problem_schemas,
)
from api.resources import RESOURCES
from api.routing import (
    LedgerRoute,
    add_routes,
    authenticate,
    operation_id,
    with_bearer_scheme,
)
from api.schemas import Health, Readiness
from api.writes import Writes
from ledger.adapters.api_keys import KeyCache
from ledger.adapters.postgres import datastore_of
from ledger.domain.context import request_id_cvar
from ledger.entrypoints.logs import configure_logging, written_together
from ledger.entrypoints.runtime import (
    Settings,
    database_url,
    master_key,
    open_ledger,
    open_standby,
    tune_collector,
)
from projections.schema import ensure_schema
from projections.waits import tracked_position
from projections.worker import NAMES, ProjectionWorker

log = structlog.get_logger("api")

MAX_BODY_BYTES = 1024 * 1024
#: a file from the bank (a statement, a run's status report) may be larger
MAX_FILE_BYTES = 20 * 1024 * 1024
#: the console's forms that carry those files (their form's few fields come on top)
FILE_PATHS = re.compile(
    r"(/v1|/console)/reconciliations|(/v1|/console)/disbursement-runs/[^/]+/settle"
)
#: every route under it needs a key (`api.routing.roles`)
AUTHENTICATED = "/v1/"
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}", re.ASCII)


class BodyTooLarge(Exception):
    pass


async def _read_body(receive: Receive, declared: int, limit: int) -> bytes:
    """The whole body, refused past `limit` whether or not its length was declared."""
    if declared > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then the real channel."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _RequestIds:
    """New request ids, 32 hex digits: this process's random half, then a count. Not
    `uuid4`, whose read of the system's randomness hands the interpreter to another
    thread for the length of a system call, every request (docs/performance.md)."""

    def __init__(self) -> None:
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._prefix = secrets.token_hex(8)
        self._count = itertools.count()

    def __call__(self) -> str:
        if self._pid != os.getpid():  # a forked child counts on its own
            self._start()
        return f"{self._prefix}{next(self._count):016x}"


_new_request_id = _RequestIds()


class RequestContext:
    """ASGI middleware: request id, body size limit, one log line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID_RE.fullmatch(given) else _new_request_id()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        request_id_cvar.set(request_id)
        tracing.name_request(request_id)
        started = time.perf_counter()
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"].append((b"x-request-id", request_id.encode()))
            await send(message)

        body: bytes | None = None
        try:
            has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
            if has_body and scope["path"].startswith(AUTHENTICATED):
                # who asks, before a byte of the body is read: an anonymous client cannot
                # make the server take in (and hold) a body of up to MAX_FILE_BYTES
                keys = scope["app"].state.keys
                principal = await authenticate(keys, headers.get("authorization", ""))
                scope.setdefault("state", {})["principal"] = principal
            limit = MAX_FILE_BYTES if FILE_PATHS.fullmatch(scope["path"]) else MAX_BODY_BYTES
            body = await _read_body(receive, int(headers.get("content-length") or 0), limit)
        except ProblemError as refused:
            response = problem_response(refused.code, refused.detail, headers=refused.headers)
            await response(scope, receive, send_with_id)
        except UNAVAILABLE:  # the key could not be looked up
            await unavailable_response()(scope, receive, send_with_id)
        except BodyTooLarge:
            response = problem_response(
                "payload_too_large", f"the body is over {limit // (1024 * 1024)} MiB"
            )
            await response(scope, receive, send_with_id)
        try:
            if body is not None:
                await self.app(scope, _replay(body, receive), send_with_id)
        except Exception:
            log.exception("unhandled_error")
            if status is None:  # nothing sent yet: answer a problem, not a bare 500
                response = problem_response("internal_error", "an unexpected error was logged")
                await response(scope, receive, send_with_id)
        finally:
            await _account(scope, status, time.perf_counter() - started)
            structlog.contextvars.clear_contextvars()


async def _account(scope: Scope, status: int | None, seconds: float) -> None:
    """A request's log line and its metrics (by route template: a path as sent would
    make a series per id)."""
    route = getattr(scope.get("route"), "path", None)
    metrics.observe_request(scope["method"], route or "unmatched", status or 500, seconds)
    await _lines.log(
        method=scope["method"],
        route=route or scope["path"],
        status=status,
        duration_ms=round(seconds * 1000, 1),
        actor=_actor(scope),
    )


class _RequestLines:
    """The lines of the requests that end in one turn of the event loop, logged
    together (`written_together`): the answers of a writer's group end many requests
    in one turn. The first to end waits for the turn to be over, then logs every line
    it gathered, each in its own request's context (the same `request_id`; its
    `timestamp` is that moment) and before its own request returns: the others
    returned already. A process killed outright may lose one turn's lines, never an
    event (docs/performance.md, "stop 38")."""

    def __init__(self) -> None:
        self._waiting: dict[asyncio.AbstractEventLoop, list[Any]] = {}

    async def log(self, **fields: Any) -> None:
        loop = asyncio.get_running_loop()
        line = (contextvars.copy_context(), fields)
        if loop in self._waiting:  # the first of this turn logs it
            self._waiting[loop].append(line)
            return
        self._waiting[loop] = [line]
        try:
            await asyncio.sleep(0)  # the others ending in this turn add theirs
        finally:  # cancelled or not: nothing waits for a later turn
            with written_together():
                for context, gathered in self._waiting.pop(loop):
                    try:
                        context.run(log.info, "request", **gathered)
                    except Exception:  # the others are still logged, this one's loss too
                        context.run(log.exception, "request_line_failed")


_lines = _RequestLines()


def _actor(scope: Scope) -> str | None:
    principal = scope.get("state", {}).get("principal")
    return getattr(principal, "name", None)


REQUEST_ID_HEADER = {
    "description": "The client's X-Request-Id when valid, else a new one; on every log line",
    "required": True,
    "schema": {"type": "string", "pattern": f"^{_REQUEST_ID_RE.pattern}$"},
}


def _with_request_ids(openapi: dict[str, Any]) -> dict[str, Any]:
    """Every answer carries `X-Request-Id` (`RequestContext` adds it): say so in each."""
    for item in openapi.get("paths", {}).values():
        for operation in item.values():
            for response in operation.get("responses", {}).values():
                # a new dict: the headers given by a route may be shared between routes
                headers = {**response.get("headers", {}), "X-Request-Id": REQUEST_ID_HEADER}
                response["headers"] = headers
    return openapi


def _document_problems(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_examples(
                _with_request_ids(with_problem_schemas(with_bearer_scheme(build())))
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


STATIC = Path(__file__).resolve().parent / "static"


def _documentation_pages(app: FastAPI) -> None:
    """`/docs` and `/redoc`, their scripts, styles and icon served from `/static`
    (docs/supply-chain.md): the intranets this runs in reach no CDN."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    title = f"{app.title} {app.version}"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "",
            title=title,
            swagger_js_url="/static/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui.css",
            swagger_favicon_url="/static/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "",
            title=title,
            redoc_js_url="/static/redoc.standalone.js",
            redoc_favicon_url="/static/favicon.png",
            with_google_fonts=False,
        )


def _close(app: FastAPI) -> None:
    """Close what `lifespan` opened, the ledger last: the others use it."""
    state = app.state
    if state.writer is not None:
        state.writer.close()
    if state.worker is not None:
        state.worker.stop()
    if state.standby is not None:
        state.standby.close()
    state.ledger.close()


def create_app(settings: Settings, traces: TracerProvider | None = None) -> FastAPI:
    """The API (and the console), tracing to `traces` if given (`api.tracing`)."""
    on_connect = tracing.traced_connections(traces) if traces else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ledger = open_ledger(database_url(settings), settings, on_connect)
        ledger.start_group_commit(metrics.observe_group)
        app.state.ledger = ledger
        app.state.settings = settings
        app.state.keys = KeyCache(datastore_of(ledger))
        app.state.standby = open_standby(settings, datastore_of(ledger), on_connect)
        app.state.sessions = Sessions(master_key(settings))
        worker = ProjectionWorker(ledger) if settings.projections_in_process else None
        if worker is None:  # the reads still need the read models' tables
            ensure_schema(datastore_of(ledger))
        if worker is not None:
            worker.start()
        app.state.worker = worker
        app.state.writer = writer.link_from_env()
        pool_sampler = asyncio.create_task(metrics.sample_pool(datastore_of(ledger).pool))
        try:
            yield
        finally:
            pool_sampler.cancel()
            _close(app)
            if traces is not None:
                traces.shutdown()  # what is batched is sent

    app = FastAPI(
        docs_url=None,  # served below, with assets of its own
        redoc_url=None,
        generate_unique_id_function=operation_id,
        title="Talent benefits ledger",
        version="1",
        description="Event-sourced ledger of a city's talent-attraction fund.",
        lifespan=lifespan,
        # traces are `api.tracing`'s, when configured: FastAPI's own telemetry would
        # otherwise look for OpenTelemetry providers at every request, to find none
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.router.route_class = LedgerRoute
    app.add_middleware(RequestContext)
    if traces is not None:
        tracing.trace_requests(app, traces)
    install_problem_handlers(app)
    install_unavailable_handlers(app)
    for module in (*RESOURCES, batch, reads, audit, keys, treasury, exports, metrics):
        add_routes(app, module.router)
    app.router.middleware_stack = Writes(app.router)
    _document_problems(app)

    _documentation_pages(app)
    console.install(app)
    _probes(app)
    return app


def _probes(app: FastAPI) -> None:
    """`/healthz` and `/readyz`, what a process manager and a load balancer ask."""

    @app.get("/healthz", response_model=Health, tags=["operations"], summary="Liveness")
    def get_health() -> Health:
        """Liveness: the process answers, whatever the database does (a probe that
        restarts the process on a failure asks this one)."""
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Readiness,
        tags=["operations"],
        summary="Readiness",
        responses=problem_responses("unavailable"),  # the database, or not ready (its detail)
    )
    def get_readiness(request: Request) -> Any:
        """Readiness, what a load balancer asks: the database answers, the read models
        lag the last event recorded by at most `LEDGER_READY_MAX_LAG` events, and this
        process's projection worker (if it runs one) is running and not failing batch
        after batch. Else a `503` naming why."""
        datastore = datastore_of(request.app.state.ledger)
        head = request.app.state.ledger.store.max_notification_id() or 0
        position = tracked_position(datastore, NAMES)
        reasons = _not_ready(request.app, head - position)
        if reasons:
            return problem_response("unavailable", "not ready: " + "; ".join(reasons))
        return Readiness(
            status="ready",
            database=True,
            head_position=head,
            projection_position=position,
            projection_lag=head - position,
        )


def _not_ready(app: FastAPI, lag: int) -> list[str]:
    """Why this process should not be sent requests, if it should not."""
    reasons = []
    limit = app.state.settings.ready_max_lag
    if lag > limit:
        reasons.append(f"the read models lag {lag} events behind, over {limit}")
    worker = app.state.worker
    if worker is not None and not worker.running:
        reasons.append("the projection worker has stopped")
    elif worker is not None and worker.failing:
        reasons.append(f"the projection worker failed {worker.failures_in_a_row} batches in a row")
    return reasons


def app_from_env() -> FastAPI:
    """The uvicorn factory of `ledger serve`: each worker process builds its own app."""
    configure_logging()
    tune_collector()
    return create_app(Settings.from_env(), tracing.tracer_provider(os.environ))
