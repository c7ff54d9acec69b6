"""The authorization matrix, generated from the app's own route table: every route
against every role and against no key. A route without a declared policy fails."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ledger.domain.roles import ROLES
from ledger.entrypoints.runtime import Settings

PUBLIC = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
PLACEHOLDERS = {"year": "2024"}


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every route, from the OpenAPI document the app
    builds from its own route table."""
    app = create_app(Settings(database_url="unused", data_dir=Settings.from_env().data_dir))
    return [
        (method.upper(), path, operation)
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
    ]


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PLACEHOLDERS.get(m.group(1), "X-1"), path)


def test_every_route_declares_who_may_call_it() -> None:
    operations = _operations()
    undeclared = [(m, p) for m, p, op in operations if p not in PUBLIC and "x-roles" not in op]
    assert len(operations) >= 30
    assert undeclared == []


def test_every_route_answers_each_role_as_declared(
    api: Callable[[str | None], TestClient],
) -> None:
    clients = {role: api(role) for role in ROLES}
    anonymous = api(None)
    json = {"Content-Type": "application/json"}
    checked = 0
    for method, path, operation in _operations():
        if path in PUBLIC:
            continue
        allowed = set(operation["x-roles"])
        url = _url(path)
        r = anonymous.request(method, url, content=b"{}", headers=json)
        assert r.status_code == 401, (method, url, r.text)
        assert r.json()["code"] == "unauthenticated"
        for role, client in clients.items():
            r = client.request(method, url, content=b"{}", headers=json)
            if role in allowed:
                assert r.status_code not in (401, 403), (role, method, url, r.text)
            else:
                assert r.status_code == 403, (role, method, url, r.text)
                assert r.json()["code"] == "forbidden"
            checked += 1
    assert checked >= len(ROLES) * 30  # every route of the API was reached


@pytest.mark.parametrize("role", ROLES)
def test_every_role_may_read(api: Callable[[str | None], TestClient], role: str) -> None:
    r = api(role).get("/v1/events")
    assert r.status_code == 200, r.text
