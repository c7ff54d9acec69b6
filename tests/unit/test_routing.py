"""`LedgerRoute.matches` skips a route whose literal start the path lacks: it must
answer as FastAPI's own match does, for every route and every path the app serves."""

from __future__ import annotations

import re

from fastapi.routing import APIRoute

from api.app import create_app
from api.routing import LedgerRoute
from ledger.entrypoints.runtime import Settings


def _scope(path: str, method: str, root_path: str = "") -> dict[str, object]:
    return {"type": "http", "path": root_path + path, "root_path": root_path, "method": method}


def test_a_route_matches_as_fastapi_matches_it() -> None:
    app = create_app(Settings(database_url="unused", data_dir=Settings.from_env().data_dir))
    routes = [r for r in app.router.routes if isinstance(r, LedgerRoute)]
    filled = [re.sub(r"\{\w+\}", "2030", r.path_format) for r in routes]
    paths = [*filled, *(p + "/" for p in filled), "/", "/v1", "/v1/", "/v1/grantsX", "/elsewhere"]
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
