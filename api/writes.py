"""The write routes: one per operation (`api.operations`), made from its declaration."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from functools import cached_property
from typing import Any

from fastapi import APIRouter, Request
from fastapi.dependencies.utils import request_body_to_args, request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from starlette._utils import get_route_path  # how Starlette's own routes read the path
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from api.operations import Operation, answer_json, presented
from api.problems import problem_responses
from api.routing import LedgerRoute, PathId, PathYear, ledger_of, roles
from api.writer import Answer, WriterLink, forwarded
from ledger.usecases.ledger import Ledger

ALWAYS = (
    "unauthenticated",
    "forbidden",
    "payload_too_large",
    "unsupported_media_type",
    "validation_error",
    "unavailable",
    "contended",
)


# Every write answers the position to read after, and says when it was a replay.
WRITE_HEADERS: dict[str, Any] = {
    "Ledger-Position": {
        "description": "Global position of the last event this write recorded (or replayed)",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "Idempotent-Replayed": {
        "description": "Present when the answer is a replay of an earlier identical request",
        "schema": {"type": "string", "enum": ["true"]},
    },
}


def written(model: type[BaseModel], *, created: bool) -> dict[int | str, dict[str, Any]]:
    """The success answers of a write: an action answers 200; a create answers 201, and
    200 with the resource as created when it is the replay of an identical create."""
    if not created:
        return {200: {"description": "Done", "headers": WRITE_HEADERS}}
    return {
        201: {"description": "Created", "headers": WRITE_HEADERS},
        200: {
            "description": "Replay of an identical create: the resource as it was created",
            "model": model,
            "headers": WRITE_HEADERS,
        },
    }


async def perform(
    op: Operation, ledger: Ledger, writer: WriterLink | None, ids: dict[str, Any], body: Any
) -> Response:
    """The decision runs in a group commit and the request only awaits it: no worker
    thread sits blocked for each write in flight. Under `ledger serve`, that is the
    writing process's (`api.writer`), else this process's own. What needs a query
    (sealing a name before, unsealing one after) runs in a worker thread, never in a
    group commit."""
    command = op.command_of(ids, body or op.body())
    if op.use_case.prepare is None:
        step = ledger.step(command)
    else:
        step = await run_in_threadpool(ledger.step, command)
    if writer is not None and forwarded(op):
        answered = await writer.perform(op, ids, step)
        if answered is not None:
            return _response(answered)
    outcome = await asyncio.wrap_future(ledger.execute_later(step))
    if op.present_queries:
        outcome = await run_in_threadpool(presented, ledger, op, ids, outcome)
    else:
        outcome = presented(ledger, op, ids, outcome)
    return _response(answer_json(op, outcome))


class WriteRoute(LedgerRoute):
    """A write's route, answered by its own handler rather than FastAPI's generic one.

    A write's endpoint takes its path ids, one JSON body and the request, nothing
    else: FastAPI's handler would still, at every request, solve a dependency graph,
    parse the media type again with `email.message`, read the query string, the
    cookies and its own telemetry's state, and wrap what it calls in a context of its
    own: more than half of what the app spent on a grant proposal
    (docs/performance.md, "stop 39"). This one validates with FastAPI's own functions,
    so the ids, the body and their errors are FastAPI's (`tests/unit/test_write_handler.py`);
    the OpenAPI document is made from the endpoint's signature as for any route. A
    route with anything else to solve (a dependency, a query or header parameter) is
    refused when it is built. `LedgerRoute` has authorized the request, refused a query
    parameter and a body announced in another media type than JSON before it gets
    here."""

    @cached_property
    def answer(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, checks first, as `Writes` calls it."""
        return self.get_route_handler()

    def request_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        dependant = self.dependant
        endpoint, path_params = dependant.call, dependant.path_params
        body_params = dependant.body_params
        assert endpoint is not None and dependant.request_param_name == "request"
        solved_elsewhere = (
            dependant.dependencies,
            dependant.query_params,
            dependant.header_params,
            dependant.cookie_params,
            dependant.background_tasks_param_name,
            dependant.response_param_name,
        )
        if any(solved_elsewhere):
            raise TypeError(f"{self.path}: a write takes its ids and one JSON body only")
        embed = self._embed_body_fields

        async def handle(request: Request) -> Response:
            ids, errors = request_params_to_args(path_params, request.path_params)
            received = await _json_body(request)
            body, body_errors = await request_body_to_args(body_params, received, embed)
            if errors or body_errors:
                given = None if received is PydanticUndefined else received
                raise RequestValidationError([*errors, *body_errors], body=given)
            response: Response = await endpoint(request=request, **ids, **body)
            return response

        return handle


class Writes:
    """The app's router, with its write routes found first, by one lookup.

    The router tries the app's routes one after the other (a grant proposal is the
    15th), and each route it finds answers through FastAPI's wrappers of a request: a
    handler of exceptions of its own (the app's middleware has one already) and two
    stacks for dependencies that clean up after themselves, which no write has. A
    middleware of the router (Starlette's `Router.middleware_stack`), this finds a
    write by its path, or among the few write routes with ids in theirs, and has its
    route's own handler answer it (`WriteRoute`, `LedgerRoute`'s checks first); what
    it raises reaches the app's handlers as from any route, and every other request
    goes on to the router. It takes only what the router would give a write route: no
    route before one takes a path of its (`tests/unit/test_routing.py`). The app's
    routes are left as they are, for the OpenAPI document, the traces' route names
    and the answers' `Allow`. It passes by what the router and a route would apply
    besides: a middleware of the router's own and a route's body limit (the app has
    neither: `RequestContext` limits bodies) and FastAPI's telemetry (off)."""

    def __init__(self, router: APIRouter) -> None:
        writes = [route for route in router.routes if isinstance(route, WriteRoute)]
        self._by_path = {r.path: r for r in writes if not r.param_convertors}
        self._with_ids = [r for r in writes if r.param_convertors]
        self._router = router
        self._next = router.middleware_stack

    def match(self, scope: Scope) -> tuple[WriteRoute | None, Scope]:
        """The write route the router would take for `scope`, and the scope it would
        give it; None when it would take another."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None, {}
        found = self._by_path.get(get_route_path(scope))
        for route in self._with_ids if found is None else (found,):
            match, child_scope = route.matches(scope)
            if match == Match.FULL:
                return route, child_scope
        return None, {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route, child_scope = self.match(scope)
        if route is None:
            await self._next(scope, receive, send)
            return
        scope.setdefault("router", self._router)
        scope.update(child_scope)
        response = await route.answer(Request(scope, receive, send))
        await response(scope, receive, send)


async def _json_body(request: Request) -> Any:
    """The body as FastAPI's handler reads it for a route that takes JSON: none when
    empty, and its errors when it is not JSON, or not text."""
    data = await request.body()
    if not data:
        return PydanticUndefined
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        error = {
            "type": "json_invalid",
            "loc": ("body", e.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": e.msg},
        }
        raise RequestValidationError([error], body=e.doc) from e
    except Exception as e:  # not text in the encoding it names, nested too deep...
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from e


def _response(answered: Answer) -> Response:
    status, headers, body = answered
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _endpoint(op: Operation) -> Callable[..., Awaitable[Response]]:
    """An endpoint taking the operation's path ids and body, as FastAPI reads a
    signature: `__signature__` declares them, since they differ per operation."""

    async def endpoint(request: Request, body: Any = None, **ids: Any) -> Response:
        return await perform(op, ledger_of(request), request.app.state.writer, ids, body)

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter(name, keyword, annotation=PathYear if name == "year" else PathId)
        for name in op.ids
    ]
    parameters += [
        inspect.Parameter(
            "body",
            keyword,
            annotation=op.body | None if op.body_optional else op.body,
            default=None if op.body_optional else inspect.Parameter.empty,
        ),
        inspect.Parameter("request", keyword, annotation=Request),
    ]
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    endpoint.__name__ = op.use_case.decide.__name__
    return endpoint


def read_link(operation_id: str, key: str, ids: Iterable[str]) -> dict[str, Any]:
    """An OpenAPI link from a write's answer to the read of what it wrote: the id from
    the request's path or the answer's body, and `min_position` from `Ledger-Position`,
    so that the read sees the write."""
    source = f"$request.path.{key}" if key in ids else f"$response.body#/{key}"
    return {
        operation_id: {
            "operationId": operation_id,
            "parameters": {key: source, "min_position": "$response.header.Ledger-Position"},
            "description": "Read what the write recorded, once the read models include it",
        }
    }


def linked(
    responses: dict[int | str, dict[str, Any]], links: dict[str, Any]
) -> dict[int | str, dict[str, Any]]:
    return {
        status: {**response, "links": links} if str(status).startswith("2") else response
        for status, response in responses.items()
    }


def add_writes(router: APIRouter, operations: Iterable[Operation]) -> None:
    """A route on `router` for each of `operations`, as it declares."""
    for op in operations:
        router.add_api_route(
            op.path,
            _endpoint(op),
            methods=["POST"],
            name=op.use_case.decide.__name__,
            summary=op.summary,
            description=op.description,
            response_model=op.out,
            status_code=201 if op.created else 200,
            openapi_extra=roles(op.role),
            route_class_override=WriteRoute,
            responses={
                **linked(written(op.out, created=op.created), read_link(*op.reads, op.ids)),
                **problem_responses(*ALWAYS, *op.refusals),
            },
        )
