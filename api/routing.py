"""Who may call what, checked before the body is even read (docs/api.md, "Conventions").

Each route declares its roles in `openapi_extra["x-roles"]` (readable by the docs and
by the authorization test); `LedgerRoute` authenticates and authorizes first, then
checks the media type, and only then lets FastAPI parse and validate the body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from typing import Annotated, Any, TypeVar

import structlog
from eventsourcing.postgres import PostgresDatastore
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi._compat import ModelField
from fastapi.dependencies.utils import get_flat_params, request_params_to_args
from fastapi.params import Param, ParamTypes
from fastapi.routing import APIRoute
from starlette._utils import get_route_path  # how Starlette's own routes read the path
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

from api.problems import STATUS, ProblemError, problem_responses
from api.schemas import Instant
from ledger.adapters.api_keys import KeyCache
from ledger.adapters.postgres import datastore_of
from ledger.adapters.refusals import Refusal, ids_of, record_refusal
from ledger.adapters.replica import reads_from
from ledger.domain.context import actor_cvar, request_id_cvar
from ledger.domain.errors import LedgerError
from ledger.domain.roles import ROLES, Principal
from ledger.domain.values import ID_PATTERN, YEARS
from ledger.entrypoints.runtime import Settings
from ledger.usecases.ledger import Ledger
from projections import reads
from projections.waits import reach
from projections.worker import NAMES

F = TypeVar("F", bound=Callable[..., Any])
log = structlog.get_logger(__name__)

ANY_ROLE = ROLES
PUBLIC: tuple[str, ...] = ()


def roles(*allowed: str) -> dict[str, Any]:
    """The `openapi_extra` of a route open to `allowed` roles, with its bearer security."""
    return {"x-roles": list(allowed), "security": [{BEARER: []}] if allowed else []}


BEARER = "HTTPBearer"


def with_bearer_scheme(openapi: dict[str, Any]) -> dict[str, Any]:
    """Declare the scheme `roles` names. Declared here, not by a dependency on each
    route (FastAPI's `HTTPBearer`): the check is `LedgerRoute`'s, and a dependency would
    be solved on every request for nothing."""
    schemes = openapi.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[BEARER] = {"type": "http", "scheme": "bearer"}
    return openapi


def operation_id(route: APIRoute) -> str:
    """A route's operationId: its endpoint's name in camelCase (`list_grants` ->
    `listGrants`): stable, and what a generated client names its method after."""
    first, *rest = route.name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def ledger_router(tag: str, *, prefix: str = "/v1") -> APIRouter:
    """A router of API routes under `tag`, each checked by `LedgerRoute` and named by
    `operation_id`, to be added to the app by `add_routes`."""
    return APIRouter(
        prefix=prefix, route_class=LedgerRoute, tags=[tag], generate_unique_id_function=operation_id
    )


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """`router`'s routes as the app's own, not an inclusion. FastAPI matches an included
    router by walking it anew at each request, and the one that matches twice; the
    prefix, tags, route class and operationIds of ours are on each route already, so
    their routes are matched flat, in the same order, for less (docs/performance.md,
    "stop 36"). What only an inclusion gives is not used here: the app's dependency
    overrides do not reach these routes, nor does a router's own lifespan."""
    app.router.routes.extend(router.routes)


class LedgerRoute(APIRoute):
    @cached_property
    def _literal_start(self) -> str:
        """What every path this route matches begins with: its path up to the first
        parameter."""
        return self.path_format.split("{", 1)[0]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """FastAPI's match, tried only on a path that begins as the route's does: the
        app's routes are tried one after the other at each request (a grant proposal
        is the 15th), and a full match costs each a regular expression, a lookup of its
        route context and a scope of its own (docs/performance.md, "stop 37")."""
        if scope["type"] == "http" and not get_route_path(scope).startswith(self._literal_start):
            return Match.NONE, {}
        return super().matches(scope)

    @cached_property
    def _path_and_query(self) -> list[tuple[ModelField, ParamTypes]]:
        """The route's path and query parameters, its dependencies' included: its own
        dependant's, the route being the app's own (`add_routes`), with no inclusion's
        prefix or dependencies beside it."""
        return [
            (f, f.field_info.in_)
            for f in get_flat_params(self.dependant)
            if isinstance(f.field_info, Param)
            and f.field_info.in_ in (ParamTypes.path, ParamTypes.query)
        ]

    @cached_property
    def _query_names(self) -> frozenset[str]:
        return frozenset(f.alias for f, kind in self._path_and_query if kind == ParamTypes.query)

    def refuse_unknown_parameters(self, request: Request) -> None:
        """A query parameter the route does not declare is a mistake (a misspelt filter
        would otherwise answer everything): a 422 naming it."""
        if not request.scope["query_string"]:  # most requests: nothing to parse
            return
        unknown = sorted(request.query_params.keys() - self._query_names)
        if unknown:
            raise ProblemError(
                "validation_error",
                f"unknown query parameter: {', '.join(unknown)}",
                errors=[
                    {"loc": ["query", name], "msg": "unknown parameter", "type": "extra_forbidden"}
                    for name in unknown
                ],
            )

    def refuses_parameters(self, request: Request) -> bool:
        """Whether FastAPI will answer this request's path or query with a 422. It
        checks them only after the dependencies, one of which waits for `min_position`:
        a malformed request must be refused at once, not after the wait."""
        given = {ParamTypes.path: request.path_params, ParamTypes.query: request.query_params}
        return any(request_params_to_args([f], given[kind])[1] for f, kind in self._path_and_query)

    def request_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """What answers a request once it is checked: FastAPI's own handler."""
        return super().get_route_handler()

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = self.request_handler()
        allowed: list[str] = (self.openapi_extra or {}).get("x-roles", [])
        takes_body = self.body_field is not None

        async def guarded(request: Request) -> Response:
            try:
                return await checked(request)
            except (ProblemError, LedgerError) as refusal:
                if is_evidence(request.method, refusal.code):
                    await _keep_evidence(request, self.path, refusal.code)
                raise

        async def checked(request: Request) -> Response:
            if allowed:
                principal = await _authenticate(request)
                request.state.principal = principal
                actor_cvar.set(principal.name)
                if not principal.roles & set(allowed):
                    raise ProblemError(
                        "forbidden", f"this needs one of the roles: {', '.join(allowed)}"
                    )
            self.refuse_unknown_parameters(request)
            has_body = request.headers.get("content-length", "0") != "0" or (
                "transfer-encoding" in request.headers
            )
            if takes_body and has_body:
                media_type = request.headers.get("content-type", "").split(";")[0].strip()
                if media_type.lower() != "application/json":
                    raise ProblemError(
                        "unsupported_media_type", "send the body as application/json"
                    )
            return await handler(request)

        return guarded


def is_evidence(method: str, code: str) -> bool:
    """Whether a refusal is kept as evidence (CONTRACT §13): a write refused as
    forbidden, or by a business rule (a conflict other than an idempotent retry's)."""
    status = STATUS.get(code, 409)
    return method not in ("GET", "HEAD") and (
        status == 403 or (status == 409 and code != "idempotency_conflict")
    )


async def _keep_evidence(request: Request, route: str, code: str) -> None:
    """Keep a refused request as evidence, reading its body if the refusal came first."""
    try:
        body = json.loads(await request.body() or b"null")
    except Exception:
        body = None
    args = (ledger_of(request), request.method, route, code, request.path_params, body)
    await run_in_threadpool(keep_evidence, *args)


def keep_evidence(
    ledger: Ledger, method: str, route: str, code: str, params: dict[str, Any], body: Any
) -> None:
    """Record a refused write (`is_evidence`): who, the route (its template, never the
    path as sent, which may hold anything), and the ids its path and body named. Never
    a reason to answer otherwise: a failure is logged."""
    refusal = Refusal(
        actor_cvar.get(), request_id_cvar.get(), method, route, code, ids_of(params, body)
    )
    try:
        record_refusal(datastore_of(ledger), refusal)
    except Exception:  # the answer stands; the log says evidence was lost
        log.exception("refusal_not_recorded", code=code, route=route)


async def authenticate(keys: KeyCache, authorization: str) -> Principal:
    """The holder of the key an `Authorization: Bearer` header gives; a 401 else. A key
    seen lately costs no thread hand-off; an unknown one is looked up."""
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ProblemError(
            "unauthenticated",
            "send Authorization: Bearer <api key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = keys.known(key.strip()) or await run_in_threadpool(keys.authenticate, key.strip())
    if principal is None:
        raise ProblemError(
            "unauthenticated", "unknown API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


async def _authenticate(request: Request) -> Principal:
    """The request's principal: found by `RequestContext` before it read the body."""
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:
        return known
    keys: KeyCache = request.app.state.keys
    return await authenticate(keys, request.headers.get("authorization", ""))


async def _settings(request: Request) -> Settings:
    return settings_of(request)


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def file_body(request: Request, what: str) -> bytes:
    """The body of a route that takes a file (a bank statement, a status report): none
    at all is a 422 naming it, before its media type is judged."""
    data = await request.body()
    if not data:
        raise ProblemError(
            "validation_error",
            f"the body is {what}, and it is missing",
            errors=[{"loc": ["body"], "msg": f"{what} is required", "type": "rule"}],
        )
    return data


def ledger_of(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.ledger
    return ledger


def principal_of(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


# The dependencies are coroutines: FastAPI would run a plain function in a worker
# thread, a hand-off that costs more than what they do.
async def _ledger(request: Request) -> Ledger:
    return ledger_of(request)


async def _principal(request: Request) -> Principal:
    return principal_of(request)


MAX_POSITION = 2**63 - 1  # a bigint, what PostgreSQL numbers events with


def consistent(views: Sequence[str]) -> Any:
    """A route's choice of database (`ReadsDep`): the standby while it answers, else the
    primary; with `min_position`, one whose views include it (`projections.waits`)."""

    async def wait(
        request: Request,
        min_position: Annotated[
            int | None,
            Query(
                ge=0,
                le=MAX_POSITION,
                description="Wait (at most 5 s) until the read models include this position "
                "(one a write answered: a position past the last event recorded is a 422)",
            ),
        ] = None,
    ) -> None:
        route = request.scope["route"]
        assert isinstance(route, LedgerRoute)
        datastore = reads_from(datastore_of(ledger_of(request)), request.app.state.standby)
        if min_position is not None and not route.refuses_parameters(request):
            datastore = await run_in_threadpool(reach, datastore, min_position, views)
        request.state.reads = datastore

    return Depends(wait)


def read(
    router: APIRouter,
    path: str,
    model: type | None = None,
    *,
    summary: str,
    views: Sequence[str] = NAMES,
    responses: dict[int | str, dict[str, Any]] | None = None,
    **kwargs: Any,
) -> Callable[[F], F]:
    """A read route, open to every role, waiting for `min_position` on the `views` it
    reads (all of them, for one that reads the events themselves). Its `summary` is a
    line; the endpoint's docstring, what a caller needs to know."""
    return router.get(
        path,
        response_model=model,
        summary=summary,
        openapi_extra=roles(*ANY_ROLE),
        dependencies=[consistent(views)],
        responses={**READ_PROBLEMS, **(responses or {})},
        **kwargs,
    )


READ_PROBLEMS = problem_responses("unauthenticated", "not_found", "validation_error", "unavailable")


@dataclass(frozen=True)
class AsOf:
    """The point a read asked for. Checking the query is a coroutine (no worker
    thread); finding the position of an instant takes a query, so the endpoint does
    it in its own worker thread, one hand-off per read instead of two."""

    instant: datetime | None
    position: int | None

    def resolve(self, datastore: PostgresDatastore) -> int | None:
        """The position asked for, or None; the read waits for the read models to reach
        it. An instant's is that of the last event recorded by then; given both, an
        event counts only if it meets both, so the earlier of the two."""
        positions = [] if self.position is None else [self.position]
        if self.instant is not None:
            positions.append(reads.position_at(datastore, self.instant))
        return min(positions, default=None)


async def _as_of(
    as_of: Annotated[
        Instant | None,
        Query(
            description="Answer as of this instant: the events recorded at or before it "
            "(with `as_of_position` too, only those that meet both)"
        ),
    ] = None,
    as_of_position: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_POSITION,
            description="Answer as of this global position: the events up to it "
            "(a position past the last event recorded is a 422)",
        ),
    ] = None,
) -> AsOf:
    return AsOf(as_of, as_of_position)


async def _reads(request: Request) -> PostgresDatastore:
    """Where a read route reads the read models from, as `consistent` chose (the primary
    when it chose nothing: its query was invalid, and the endpoint will not run)."""
    datastore: PostgresDatastore = getattr(request.state, "reads", None) or datastore_of(
        ledger_of(request)
    )
    return datastore


async def _today(request: Request) -> date:
    return settings_of(request).today()


# Ids and years in a path follow the rules of bodies and of batch operations (which
# carry them in their bodies): a malformed one is a 422, as in a batch, and never reaches
# a query (a NUL byte in an id made PostgreSQL refuse the query: a 503).
PathId = Annotated[str, Path(pattern=ID_PATTERN)]
PathYear = Annotated[int, Path(ge=YEARS.first, le=YEARS.last)]
LedgerDep = Annotated[Ledger, Depends(_ledger)]
#: the database a read route reads the read models from (`consistent`)
ReadsDep = Annotated[PostgresDatastore, Depends(_reads)]
PrincipalDep = Annotated[Principal, Depends(_principal)]
AsOfQuery = Annotated[AsOf, Depends(_as_of)]
#: the business date now, what a date left out defaults to (`LEDGER_TIMEZONE`)
Today = Annotated[date, Depends(_today)]
SettingsDep = Annotated[Settings, Depends(_settings)]
