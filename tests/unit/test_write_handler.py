"""`WriteRoute`'s handler answers every request as FastAPI's own handler of the route
would: the same values to the endpoint, or the same errors, for every write route and
every kind of wrong id or body."""

from __future__ import annotations

import asyncio
import json
import re
from contextlib import AsyncExitStack
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from api.app import create_app
from api.examples import recorded
from api.routing import operation_id
from api.writes import WriteRoute
from ledger.entrypoints.runtime import Settings

_APP = create_app(Settings(database_url="unused", data_dir=Settings.from_env().data_dir))
ROUTES = [r for r in _APP.router.routes if isinstance(r, WriteRoute)]


def _bodies(example: Any) -> list[bytes]:
    """The example's body, and what is wrong with a body in every way a client can."""
    bodies = [b"", b"null", b"[]", b"{}", b'{"unknown": 1}', b"{", b'"text"', b"\xff\xfe{}"]
    bodies += [b'{"a": "\x80"}', b"\xef\xbb\xbf{}", b"NaN", b'{"a": 1, "a": 2}']
    bodies += [b"[" * 2000, b'{"a": ' * 2000]  # nested past the parser's recursion
    if isinstance(example, dict):
        bodies.append(json.dumps(example).encode())
        for field in example:  # each field a number, then missing
            bodies.append(json.dumps({**example, field: 12345}).encode())
            bodies.append(json.dumps({k: v for k, v in example.items() if k != field}).encode())
    return bodies


def _paths(route: APIRoute, example_path: str) -> list[str]:
    """The example's path, and each of its ids made malformed."""
    paths = [example_path]
    for name in route.param_convertors:
        for wrong in ("bad id", "x" * 300, "99999"):
            paths.append(
                re.sub(r"\{" + name + r"\}", wrong, route.path_format).format(
                    **dict(route.path_regex.match(example_path).groupdict())  # type: ignore[union-attr]
                )
            )
    return paths


class _Recorded(Response):
    """What the endpoint was called with, returned as a response is."""

    def __init__(self, values: dict[str, Any]) -> None:
        super().__init__()
        self.values = values


async def _outcome(handler: Any, scope: dict[str, Any], body: bytes) -> tuple[Any, ...]:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async with AsyncExitStack() as stack:
        scope = {
            **scope,
            "fastapi_middleware_astack": stack,
            "fastapi_inner_astack": stack,
            "fastapi_function_astack": stack,
        }
        try:
            called = await handler(Request(scope, receive))
        except RequestValidationError as e:
            return ("invalid", [(e["loc"], e["msg"], e["type"]) for e in e.errors()])
        except HTTPException as e:
            return ("http", e.status_code, e.detail)
        return ("called", called.values)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.path + " " + r.name)
def test_the_handler_of_a_write_answers_as_fastapis_would(route: WriteRoute) -> None:
    example = recorded()[operation_id(route)]
    endpoint = route.dependant.call

    async def recording(request: Request, **values: Any) -> Response:
        return _Recorded(values)

    route.dependant.call = recording
    try:
        compared, called = _compare(route, example, route.request_handler())
    finally:
        route.dependant.call = endpoint
    assert called >= 1  # the example itself reaches the endpoint
    assert compared >= 8


def _compare(route: WriteRoute, example: dict[str, Any], ours: Any) -> tuple[int, int]:
    """How many requests both handlers answered alike, and how many reached the
    endpoint."""
    fastapis = APIRoute.get_route_handler(route)
    compared = called = 0
    for path in _paths(route, example["path"]):
        scope = {"type": "http", "method": "POST", "path": path, "root_path": ""}
        match, child = route.matches(scope)
        if match != Match.FULL:  # an id its path's pattern refuses: the router's 404
            continue
        scope |= child | {"headers": [(b"content-type", b"application/json")], "query_string": b""}
        for body in _bodies(example["body"]):
            expected = asyncio.run(_outcome(fastapis, scope, body))
            assert asyncio.run(_outcome(ours, scope, body)) == expected, (path, body)
            compared += 1
            called += expected[0] == "called"
    return compared, called
