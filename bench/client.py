"""The load generator: light enough that the server, not it, is what is measured.

One asyncio loop drives every client, each on its own keep-alive HTTP/1.1 connection,
with requests written as bytes. A thread per client with a full HTTP library cost
more CPU than the server it measured, on the same two cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit


class HttpError(Exception):
    pass


class Http:
    """One keep-alive connection; answers (status, body). Enough HTTP for our server:
    every answer the bench reads carries a Content-Length."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        url = urlsplit(base)
        self._host, self._port = url.hostname or "127.0.0.1", url.port or 80
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head = f"Host: {self._host}:{self._port}\r\n{extra}"
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        data = b"" if body is None else json.dumps(body).encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        kind = "Content-Type: application/json\r\n" if data else ""
        message = (
            f"{method} {path} HTTP/1.1\r\n{self._head}{extra}{kind}"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode() + data
        try:
            if self._streams is None:
                self._streams = await asyncio.open_connection(self._host, self._port)
            reader, writer = self._streams
            writer.write(message)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            fields = {
                name.strip().lower(): value
                for name, _, value in (line.partition(":") for line in lines[1:])
            }
            length = int(fields["content-length"])
            return int(lines[0].split(" ", 2)[1]), await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, KeyError, ValueError) as e:
            await self.close()
            raise HttpError(str(e)) from e

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


Step = Callable[[Http, int, int], Awaitable[int]]


class Load:
    """Clients calling `step(http, client, i)` (which answers how many events it
    recorded) until the time is up; latencies in milliseconds."""

    def __init__(self, base: str, clients: int, step: Step) -> None:
        self.base = base
        self.clients = clients
        self.step = step
        self.latencies: list[float] = []
        self.events = 0
        self.errors = 0

    async def _client(self, n: int, until: float) -> None:
        http = Http(self.base)
        i = 0
        while time.monotonic() < until:
            started = time.perf_counter()
            try:
                events = await self.step(http, n, i)
            except (HttpError, AssertionError):
                self.errors += 1
                await asyncio.sleep(0.01)
                continue
            self.latencies.append((time.perf_counter() - started) * 1000)
            self.events += events
            i += 1
        await http.close()

    async def run(self, seconds: float) -> float:
        """Run for `seconds`; answers the wall time taken."""
        started = time.monotonic()
        until = started + seconds
        await asyncio.gather(*(self._client(n, until) for n in range(self.clients)))
        return time.monotonic() - started


class ConstantRate:
    """An open-loop load, as wrk2 makes one: `rate` requests a second in all, each of
    `clients` connections sending on its own fixed schedule whatever the answers do.
    A request's latency runs from when it was due, not from when it went: a server that
    stalls for a second is charged for every request that should have gone meanwhile,
    which a closed loop (the next request only after the answer) would never send, and
    so never count (coordinated omission)."""

    def __init__(self, base: str, clients: int, rate: float, step: Step) -> None:
        self.base = base
        self.clients = clients
        self.interval = clients / rate  # each connection's time between two requests
        self.step = step
        self.latencies: list[float] = []
        self.errors = 0

    async def _client(self, n: int, started: float, until: float) -> None:
        http = Http(self.base)
        i = 0
        due = started + n * self.interval / self.clients  # connections spread evenly
        while due < until:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            try:
                await self.step(http, n, i)
            except (HttpError, AssertionError):  # counted apart: a fast refusal is no answer
                self.errors += 1
            else:
                self.latencies.append((time.monotonic() - due) * 1000)
            i += 1
            due += self.interval
        await http.close()

    async def run(self, seconds: float) -> None:
        started = time.monotonic()
        await asyncio.gather(
            *(self._client(n, started, started + seconds) for n in range(self.clients))
        )


def cpu_share(run: Callable[[], Any]) -> tuple[Any, float]:
    """`run()`, and the share of the machine's CPU this process used meanwhile."""
    cpu, wall = time.process_time(), time.monotonic()
    result = run()
    used = (time.process_time() - cpu) / (time.monotonic() - wall)
    return result, used / (os.cpu_count() or 1)
