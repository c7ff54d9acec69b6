"""uvicorn's HTTP protocol with the one timeout it lacks: for a request's head.

uvicorn closes a kept-alive connection idle past `--timeout-keep-alive`, but arms
nothing while a client connects and says nothing, or sends its request line and headers
a byte at a time: each such connection holds a place under `--limit-concurrency` for as
long as the client likes, and a few hundred of them shut everyone else out (slowloris).
Here a connection must finish each request's head within `--timeout-header` seconds of
its first byte (of connecting, for the first): else it is answered `408` and closed.
The body is not timed: an upload of 20 MiB on a slow line is legitimate, and only an
authenticated client gets that far (`api.app.RequestContext`).

Subclassing uvicorn's protocol is fragile across its releases: it is pinned
(requirements.lock) and `tests/e2e/test_serve.py` checks the behaviour.
"""

from __future__ import annotations

import asyncio
import os
from asyncio import TimerHandle
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: how `ledger serve --timeout-header` reaches its worker processes
HEAD_TIMEOUT_VARIABLE = "LEDGER_HEADER_TIMEOUT_SECONDS"
_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class HeadTimedProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timeout = float(os.environ[HEAD_TIMEOUT_VARIABLE])
        self._head_timer: TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._time_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # the next request on a kept-alive connection
            self._time_head()

    def on_headers_complete(self) -> None:
        self._stop_timing_head()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timing_head()
        super().connection_lost(exc)

    def _time_head(self) -> None:
        self._head_timer = self.loop.call_later(self._head_timeout, self._head_too_slow)

    def _stop_timing_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            self._time_head()  # a pipelined head behind a response still going out
        elif not self.transport.is_closing():
            self.transport.write(_TIMED_OUT)
            self.transport.close()
