"""`LedgerRoute.matches` skips a route whose literal start the path lacks, and `Writes`
finds a write before any route is tried: each must answer as FastAPI's own match and
the router's order do, for every route and every path the app serves."""

from __future__ import annotations

import re
from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match

from api.app import create_app
from api.routing import LedgerRoute
from api.writes import WriteRoute, Writes
from ledger.entrypoints.runtime import Settings


def _scope(path: str, method: str, root_path: str = "") -> dict[str, object]:
    return {"type": "http", "path": root_path + path, "root_path": root_path, "method": method}


def _paths(routes: list[LedgerRoute]) -> list[str]:
    """Every route's path with its ids filled in, with a trailing slash too, and a few
    others."""
    filled = [re.sub(r"\{\w+\}", "2030", r.path_format) for r in routes]
    return [*filled, *(p + "/" for p in filled), "/", "/v1", "/v1/", "/v1/grantsX", "/elsewhere"]


def test_a_route_matches_as_fastapi_matches_it() -> None:
    app = create_app(Settings(database_url="unused", data_dir=Settings.from_env().data_dir))
    routes = [r for r in app.router.routes if isinstance(r, LedgerRoute)]
    paths = _paths(routes)
    compared = skipped = 0
    for route in routes:
        for path in paths:
            for method in ("GET", "POST"):
                for root_path in ("", "/ledger"):
                    scope = _scope(path, method, root_path)
                    match, child = route.matches(scope)
                    assert (match, child) == APIRoute.matches(route, scope), (route.path, path)
                    compared += 1
                    skipped += not path.startswith(route.path_format.split("{")[0])
    assert len(routes) >= 50
    assert skipped > compared // 2  # most pairs never reach the regular expression


def _first_match(routes: list[BaseRoute], scope: dict[str, Any]) -> tuple[Any, Any]:
    """The route the router takes for `scope` (the first to match it fully), and the
    scope it gives the route."""
    for route in routes:
        match, child = route.matches(scope)
        if match == Match.FULL:
            return route, child
    return None, None


def test_writes_take_what_the_router_would_give_the_write_routes() -> None:
    app = create_app(Settings(database_url="unused", data_dir=Settings.from_env().data_dir))
    writes = app.router.middleware_stack
    assert isinstance(writes, Writes)
    routes = app.router.routes
    write_routes = [r for r in routes if isinstance(r, WriteRoute)]
    taken = 0
    for path in _paths([r for r in routes if isinstance(r, LedgerRoute)]):
        for method in ("GET", "POST", "PUT"):
            for root_path in ("", "/ledger"):
                scope = _scope(path, method, root_path)
                route, child = writes.match(scope)
                router = _first_match(routes, scope)
                if route is not None:
                    assert (route, child) == router, path
                    taken += 1
                else:
                    assert router[0] not in write_routes, path
    assert len(write_routes) >= 15
    assert taken >= 2 * len(write_routes)  # each write's own path at least, under both root paths
