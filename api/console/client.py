"""The console asks the API, in process, with the signed-in user's key.

Every page reads, and every action writes, through the same routes a client calls
(`httpx.ASGITransport` hands the request to this very application, its middleware
included): the roles, rules, refusals and their evidence are the API's, checked in one
place, and the console only presents what the API answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
from starlette.types import ASGIApp


class ApiRefused(Exception):
    """An answer of 4xx or 5xx: its status and RFC 9457 problem."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(problem.get("detail") or problem.get("title"))
        self.status = status
        self.problem = problem


class Api:
    """The API as one user sees it."""

    def __init__(self, app: ASGIApp, key: str, request_id: str) -> None:
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://console.internal",
            headers={"Authorization": f"Bearer {key}", "X-Request-Id": request_id},
            timeout=httpx.Timeout(300.0),  # an export of the whole trail takes a while
        )

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._client.aclose()

    async def call(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        content: bytes | None = None,
        content_type: str | None = None,
    ) -> httpx.Response:
        """The API's answer; a refusal raised as `ApiRefused`."""
        headers = {"Content-Type": content_type} if content_type else {}
        given = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        # a task of its own: the API's request context (its log variables, the actor)
        # is set in a copy of this one, never in the console's
        response = await asyncio.create_task(
            self._client.request(method, path, params=given, content=content, headers=headers)
        )
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": response.reason_phrase}
            raise ApiRefused(response.status_code, problem)
        return response

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return (await self.call("GET", path, params)).json()

    async def post(
        self, path: str, content: bytes, content_type: str, params: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        return await self.call("POST", path, params, content=content, content_type=content_type)

    async def all_items(self, path: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Every item of a list, page by page (for lists that stay short: fund years, a
        talent's history)."""
        items: list[Any] = []
        after: str | None = None
        while True:
            page = await self.get(path, {**(params or {}), "after": after, "limit": 500})
            items.extend(page["items"])
            after = page["next"]
            if after is None:
                return items
