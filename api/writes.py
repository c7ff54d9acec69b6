"""The write routes: one per operation (`api.operations`), made from its declaration."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.operations import Operation, answer_json, presented
from api.problems import problem_responses
from api.routing import PathId, PathYear, ledger_of, roles
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
            responses={
                **linked(written(op.out, created=op.created), read_link(*op.reads, op.ids)),
                **problem_responses(*ALWAYS, *op.refusals),
            },
        )
