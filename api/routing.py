"""Who may call what, checked before the body is even read (CONTRACT §3).

Each route declares its roles in `openapi_extra["x-roles"]` (readable by the docs and
by the authorization test); `LedgerRoute` authenticates and authorizes first, then
checks the media type, and only then lets FastAPI parse and validate the body.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import cached_property
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi._compat import ModelField
from fastapi.dependencies.utils import get_flat_params, request_params_to_args
from fastapi.params import Param, ParamTypes
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api.problems import ProblemError
from ledger.adapters.api_keys import KeyCache
from ledger.adapters.postgres import datastore_of
from ledger.domain.context import actor_cvar
from ledger.domain.errors import NotReached
from ledger.domain.roles import ROLES, Principal
from ledger.domain.values import ID_PATTERN
from ledger.usecases.ledger import Ledger
from projections.worker import wait_for_position

ANY_ROLE = ROLES
PUBLIC: tuple[str, ...] = ()


def roles(*allowed: str) -> dict[str, Any]:
    """The `openapi_extra` of a route open to `allowed` roles, with its bearer security."""
    return {"x-roles": list(allowed), "security": [{"HTTPBearer": []}] if allowed else []}


class LedgerRoute(APIRoute):
    @cached_property
    def _path_and_query(self) -> list[tuple[ModelField, ParamTypes]]:
        """The route's path and query parameters, its dependencies' included. Its own
        dependant: our routers are included without a prefix or dependencies of their
        own, which FastAPI would keep on the inclusion instead."""
        return [
            (f, f.field_info.in_)
            for f in get_flat_params(self.dependant)
            if isinstance(f.field_info, Param)
            and f.field_info.in_ in (ParamTypes.path, ParamTypes.query)
        ]

    def refuses_parameters(self, request: Request) -> bool:
        """Whether FastAPI will answer this request's path or query with a 422. It
        checks them only after the dependencies, one of which waits for `min_position`:
        a malformed request must be refused at once, not after the wait."""
        given = {ParamTypes.path: request.path_params, ParamTypes.query: request.query_params}
        return any(request_params_to_args([f], given[kind])[1] for f, kind in self._path_and_query)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        allowed: list[str] = (self.openapi_extra or {}).get("x-roles", [])
        takes_body = self.body_field is not None

        async def guarded(request: Request) -> Response:
            if allowed:
                principal = await _authenticate(request)
                request.state.principal = principal
                actor_cvar.set(principal.name)
                if not principal.roles & set(allowed):
                    raise ProblemError(
                        "forbidden", f"this needs one of the roles: {', '.join(allowed)}"
                    )
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


async def _authenticate(request: Request) -> Principal:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ProblemError(
            "unauthenticated",
            "send Authorization: Bearer <api key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    keys: KeyCache = request.app.state.keys
    # a key seen lately costs no thread hand-off; an unknown one is looked up
    principal = keys.known(key.strip()) or await run_in_threadpool(keys.authenticate, key.strip())
    if principal is None:
        raise ProblemError(
            "unauthenticated", "unknown API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


def ledger_of(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.ledger
    return ledger


def principal_of(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


# Documents the bearer scheme in OpenAPI; the check itself is `LedgerRoute`'s.
_bearer = HTTPBearer(auto_error=False)


# The dependencies are coroutines: FastAPI would run a plain function in a worker
# thread, a hand-off that costs more than what they do.
async def _ledger(request: Request) -> Ledger:
    return ledger_of(request)


async def _principal(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    return principal_of(request)


async def _consistent(
    request: Request,
    min_position: Annotated[
        int | None,
        Query(ge=0, description="Wait (at most 5 s) until the read models include this position"),
    ] = None,
) -> None:
    route = request.scope["route"]
    assert isinstance(route, LedgerRoute)
    if (
        min_position is not None
        and not route.refuses_parameters(request)
        and not await run_in_threadpool(
            wait_for_position, datastore_of(ledger_of(request)), min_position
        )
    ):
        raise NotReached(min_position)


# Ids and years in a path follow the rules of bodies and of batch operations (which
# carry them in their bodies): a malformed one is a 422, as in a batch, and never reaches
# a query (a NUL byte in an id made PostgreSQL refuse the query: a 503).
PathId = Annotated[str, Path(pattern=ID_PATTERN)]
PathYear = Annotated[int, Path(ge=1900, le=2999)]
LedgerDep = Annotated[Ledger, Depends(_ledger)]
PrincipalDep = Annotated[Principal, Depends(_principal)]
Consistent = Depends(_consistent)
