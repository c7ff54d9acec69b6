"""The writing process of `ledger serve`: the API processes hand it their writes.

A write decided in an API process shares that process's interpreter with its event
loop: the group-commit thread waits for the interpreter at every step, the append
lock held meanwhile, and the event loop pays for the hand-overs; two processes then
take turns at the lock, each overtaken by the other. `ledger serve` therefore starts
one process that only writes (docs/design.md, "One writing process"): each API
process sends it a write operation's prepared command, and it decides, records and
presents it in its group commit, answering the status, headers and body to send.

Nothing depends on it for correctness: every rule is still checked under the append
lock, whoever appends. An API process that cannot reach it decides the write itself,
as an API process without one does (`create_app` outside `ledger serve`); a write
sent and never answered (the writer died with it) is answered 503, to be retried.

The two sides speak pickled frames (a 4-byte length, then the frame) over a Unix
socket in a directory only the server's user can open: the stdlib's own framing for
Python objects between processes of one program, read by the event loop without a
thread of its own (`multiprocessing.connection` would need one, blocking).
"""

from __future__ import annotations

import asyncio
import os
import pickle
import time
from typing import TYPE_CHECKING, Any, cast

import structlog
from eventsourcing.persistence import PersistenceError

from ledger.domain.context import actor_cvar, request_id_cvar
from ledger.usecases.ledger import Step

if TYPE_CHECKING:
    from api.operations import Operation


log = structlog.get_logger(__name__)

#: how `ledger serve` tells its API processes where the writer listens
SOCKET_VARIABLE = "LEDGER_WRITER_SOCKET"
#: after failing to reach the writer, how long an API process decides writes itself
RECONNECT_SECONDS = 1.0
#: what the writer's answers mean (2: the body as JSON bytes), sent with each write's
#: operation: a writer and an API process whose releases answer differently hand each
#: other's writes back "not taken" (a writer of an earlier release knows no such
#: operation), and the API process decides them itself
PROTOCOL = 2
LENGTH = 4
Answer = tuple[int, dict[str, str], bytes]  # status, headers, JSON body


def forwarded(op: Operation) -> bool:
    """Whether `op` is sent to the writer: not when presenting its answer queries the
    database (a talent's name unsealed), which would hold up the writer's next group."""
    return not op.present_queries


def operation_taken(sent: Any) -> str | None:
    """The name of the operation an API process sent, when it expects the answers this
    release gives; else None."""
    if isinstance(sent, tuple) and len(sent) == 2 and sent[1] == PROTOCOL:
        return str(sent[0])
    return None


def frame(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(LENGTH, "big") + data


def unframe(buffer: bytearray) -> list[Any]:
    """The whole frames at the start of `buffer`, taken out of it (the rest waits for
    more bytes). Both ends are one program's processes: the frames are pickles."""
    messages = []
    while len(buffer) >= LENGTH:
        end = LENGTH + int.from_bytes(buffer[:LENGTH], "big")
        if len(buffer) < end:
            break
        messages.append(pickle.loads(buffer[LENGTH:end]))  # noqa: S301 - see above
        del buffer[:end]
    return messages


# --- the API process's side ---------------------------------------------------------


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._waiting: dict[int, asyncio.Future[tuple[bool, Any]]] = {}
        self._sent = 0
        self._buffer = bytearray()
        self._outbox: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream's (uvloop's own class)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        for number, ok, payload in unframe(self._buffer):
            waiting = self._waiting.pop(number, None)
            if waiting is not None and not waiting.done():  # done: its request was cancelled
                waiting.set_result((ok, payload))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        lost = PersistenceError("the writing process went away before answering; retry")
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(lost)
        self._waiting.clear()

    def send(self, message: tuple[Any, ...]) -> asyncio.Future[tuple[bool, Any]]:
        """Sent with the others of this turn of the event loop, in one write: the
        writer then takes them in one read, and into one group."""
        loop = asyncio.get_running_loop()
        self._sent += 1
        answered = loop.create_future()
        self._waiting[self._sent] = answered
        if not self._outbox:
            loop.call_soon(self._flush)
        self._outbox.append(frame((self._sent, *message)))
        return answered

    def _flush(self) -> None:
        frames, self._outbox = self._outbox, []
        if self.transport is not None:  # else connection_lost failed their requests
            self.transport.write(b"".join(frames))


class WriterLink:
    """An API process's way to the writer: connected at the first write, and again
    after the writer went away, at most once every RECONNECT_SECONDS."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._connection: _Connection | None = None
        self._connecting = asyncio.Lock()
        self._retry_at = 0.0

    async def perform(self, op: Operation, ids: dict[str, Any], step: Step) -> Answer | None:
        """The answer to `op`'s prepared `step`, decided by the writer; None when it
        cannot be reached (nothing was sent: decide it here). A refusal is raised."""
        connection = await self._connected()
        if connection is None:
            return None
        message = ((op.name, PROTOCOL), ids, step[1], actor_cvar.get(), request_id_cvar.get())
        ok, payload = await connection.send(message)
        if ok is None:  # not taken (a writer of another release, or stopping): decided here
            return None
        if not ok:
            raise payload
        answered: Answer = payload
        return answered

    async def _connected(self) -> _Connection | None:
        if self._connection is not None and self._connection.transport is not None:
            return self._connection
        async with self._connecting:  # one connection, however many writes ask at once
            if self._connection is not None and self._connection.transport is not None:
                return self._connection
            if time.monotonic() < self._retry_at:
                return None
            loop = asyncio.get_running_loop()
            try:
                _, self._connection = await loop.create_unix_connection(_Connection, self.path)
            except OSError as e:
                self._connection = None
                self._retry_at = time.monotonic() + RECONNECT_SECONDS
                log.warning("writer_unreachable", error=str(e))
            return self._connection

    def close(self) -> None:
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.close()


def link_from_env() -> WriterLink | None:
    path = os.environ.get(SOCKET_VARIABLE)
    return WriterLink(path) if path else None
