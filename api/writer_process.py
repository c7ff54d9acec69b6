"""The writing process itself (`api.writer` says why there is one): started, watched
and stopped by `ledger serve` (`api.children`), deciding the writes its API processes
send."""

from __future__ import annotations

import os
import select
import selectors
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import suppress
from pathlib import Path
from typing import Any

import structlog
from eventsourcing.persistence import PersistenceError
from structlog.contextvars import bind_contextvars

from api import metrics
from api.children import Child, child_started
from api.operations import Operation, answer_json, presented
from api.problems import UNAVAILABLE
from api.resources import OPERATIONS
from api.writer import frame, operation_taken, unframe
from ledger.domain.context import context_acting_as
from ledger.domain.errors import LedgerError
from ledger.engine.group_commit import MAX_GROUP
from ledger.usecases.ledger import Ledger

log = structlog.get_logger(__name__)

#: how long an API process may leave its answers unread before it is cut off
SEND_SECONDS = 5.0
#: the writer's answer to a write it did not take (of another release): the API
#: process decides it itself
NOT_TAKEN = (None, None)
#: how long the writer waits for writes before it looks whether it should stop
POLL_SECONDS = 0.5
READ_BYTES = 1 << 20
#: a write as an API process sends it: number, operation, ids, command, actor, request id
WRITE_FIELDS = 6


def _answer(
    ledger: Ledger, op: Operation, ids: dict[str, Any], request_id: str, decided: Future[Any]
) -> tuple[bool, Any]:
    """What an API process is told of a decision: (True, its answer) or (False, the
    error to raise there)."""
    try:
        return True, answer_json(op, presented(ledger, op, ids, decided.result()))
    except LedgerError as refusal:
        return False, refusal
    except UNAVAILABLE as e:
        return False, PersistenceError(str(e))
    except Exception:
        log.exception("write_failed", op=op.name, request_id=request_id)
        return False, RuntimeError("the writing process failed; its log says why")


class _Connection:
    """An API process's end: its writes read as they come, its answers gathered and
    sent at once when their group is recorded."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._inbox = bytearray()
        self.outbox = bytearray()

    def writes(self) -> list[Any] | None:
        """The writes read now; None when the API process went away, or sent what this
        writer cannot read (then it sees the connection closed, its writes answered
        503, and the writer serves the others)."""
        try:
            data = self.sock.recv(READ_BYTES)
        except BlockingIOError:
            return []
        except OSError:
            return None
        if not data:
            return None
        self._inbox += data
        try:
            writes = unframe(self._inbox)
            if not all(isinstance(w, tuple) and len(w) == WRITE_FIELDS for w in writes):
                raise ValueError("a write of another shape")
        except Exception:
            log.exception("writer_connection_failed")
            return None
        return writes

    def answer(self, number: int, answered: tuple[Any, Any]) -> None:
        try:
            data = frame((number, *answered))
        except Exception:  # an answer that will not pickle
            log.exception("writer_answer_failed")
            data = frame((number, False, RuntimeError("the writing process failed")))
        self.outbox += data


class _Writer:
    """One thread does it all: reads what the API processes sent, decides it as one
    group and answers each process in one send. No thread of its own reads a
    connection, nor is a group commit's thread handed the writes: each hand-over
    between threads cost the interpreter, the append lock held meanwhile, and a
    wake-up of the other thread per write (docs/performance.md, "stop 33")."""

    def __init__(self, ledger: Ledger, listener: socket.socket) -> None:
        self._ledger = ledger
        self._listener = listener
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ)

    def serve(self, running: Callable[[], bool]) -> None:
        """Until `running()` is false; writes sent after the last group are not
        answered (the API processes, stopped first, see the connection closed)."""
        try:
            while running():
                taken = self._take(self._selector.select(POLL_SECONDS))
                for start in range(0, len(taken), MAX_GROUP):
                    self._decide(taken[start : start + MAX_GROUP])
                self._flush({connection for connection, _ in taken})
        finally:
            for key in list(self._selector.get_map().values()):
                if key.data is not None:
                    self._drop(key.data)
            self._selector.close()

    def _take(
        self, ready: list[tuple[selectors.SelectorKey, int]]
    ) -> list[tuple[_Connection, Any]]:
        taken = []
        for key, _ in ready:
            if key.fileobj is self._listener:
                with suppress(BlockingIOError):
                    sock, _ = self._listener.accept()
                    self._selector.register(sock, selectors.EVENT_READ, _Connection(sock))
                continue
            connection: _Connection = key.data
            writes = connection.writes()
            if writes is None:
                self._drop(connection)
                continue
            taken += [(connection, write) for write in writes]
        return taken

    def _decide(self, taken: list[tuple[_Connection, Any]]) -> None:
        steps, asked = [], []
        for connection, (number, sent, ids, command, actor, request_id) in taken:
            op = OPERATIONS.get(operation_taken(sent) or "")
            if op is None:  # of another release: decided there
                connection.answer(number, NOT_TAKEN)
                continue
            # decided in this context: its events and log lines carry both
            context = context_acting_as(actor, request_id)
            context.run(bind_contextvars, request_id=request_id)
            steps.append((op.use_case.decide, command, context))
            asked.append((connection, number, op, ids, request_id))
        decided = self._ledger.run_group(steps, metrics.observe_group) if steps else []
        for (connection, number, op, ids, request_id), outcome in zip(asked, decided, strict=True):
            connection.answer(number, _answer(self._ledger, op, ids, request_id, outcome))

    def _flush(self, connections: set[_Connection]) -> None:
        """Each connection's answers in one send. An API process that leaves them
        unread for SEND_SECONDS is cut off, so that it holds up the writes no longer."""
        for connection in connections:
            data, connection.outbox = connection.outbox, bytearray()
            try:
                _send_within(connection.sock, data, SEND_SECONDS)
            except OSError:  # gone, or not reading: nobody waits for the rest either
                self._drop(connection)

    def _drop(self, connection: _Connection) -> None:
        with suppress(KeyError, ValueError):
            self._selector.unregister(connection.sock)
        connection.sock.close()


def _send_within(conn: socket.socket, data: bytes | bytearray, seconds: float) -> None:
    """`sendall`, given up after `seconds` of a full buffer (`TimeoutError`)."""
    view = memoryview(data)
    deadline = time.monotonic() + seconds
    while view:
        try:
            view = view[conn.send(view) :]
        except BlockingIOError:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [conn], [], remaining)[1]:
                raise TimeoutError("the API process does not read its answers") from None


def serve(path: str, parent: int) -> None:
    """The writer process: listens on `path` until `ledger serve` stops it or is gone
    (`api.children`), then finishes the group it took and exits."""
    ledger, running = child_started("writer")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    Path(path + ".new").unlink(missing_ok=True)  # left by a writer that died starting
    listener.bind(path + ".new")
    listener.listen(64)
    listener.setblocking(False)
    os.replace(path + ".new", path)  # it appears listening
    try:
        _Writer(ledger, listener).serve(lambda: running(parent))
    finally:
        listener.close()
        ledger.close()


class WriterProcess(Child):
    """`ledger serve`'s writer, listening in a directory only the server's user can
    open (mode 0700)."""

    def __init__(self) -> None:
        self._directory = Path(tempfile.mkdtemp(prefix="ledger-writer-"))
        self.path = str(self._directory / "writer.sock")
        super().__init__("writer", serve, self.path, ready=Path(self.path).exists)

    def _spawn(self) -> None:
        Path(self.path).unlink(missing_ok=True)  # ready once the new one listens
        super()._spawn()

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self._directory, ignore_errors=True)
