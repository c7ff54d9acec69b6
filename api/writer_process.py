"""The writing process itself (`api.writer` says why there is one): started, watched
and stopped by `ledger serve`, deciding the writes its API processes send."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import select
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import suppress
from functools import partial
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import structlog
from eventsourcing.persistence import PersistenceError
from structlog.contextvars import bound_contextvars

from api import metrics
from api.operations import Operation, answer, presented
from api.problems import UNAVAILABLE
from api.resources import OPERATIONS
from api.writer import LENGTH, RECONNECT_SECONDS, frame
from ledger.domain.context import acting_as
from ledger.domain.errors import LedgerError
from ledger.entrypoints.logs import configure_logging
from ledger.entrypoints.runtime import Settings, database_url, open_ledger, tune_collector
from ledger.usecases.ledger import Ledger

log = structlog.get_logger(__name__)

#: how `ledger serve` tells its writer to stop: SIGTERM and SIGINT reach the whole
#: process group, while the API processes still have writes to hand it
STOP_SIGNAL = signal.SIGUSR1
#: a writer that dies sooner after starting is started again later (see WriterProcess)
YOUNG_SECONDS = 10.0
MAX_DELAY_SECONDS = 30.0
#: how long an API process may leave its answers unread before it is cut off
SEND_SECONDS = 5.0
#: the writer's answer to a write it did not take (it is stopping, or is of another
#: release): the API process decides it itself
NOT_TAKEN = (None, None)


def _answer(
    ledger: Ledger, op: Operation, ids: dict[str, Any], request_id: str, decided: Future[Any]
) -> Any:
    """What an API process is told of a decision: (True, its answer) or (False, the
    error to raise there)."""
    try:
        return True, answer(op, presented(ledger, op, ids, decided.result()))
    except LedgerError as refusal:
        return False, refusal
    except UNAVAILABLE as e:
        return False, PersistenceError(str(e))
    except Exception:
        log.exception("write_failed", op=op.name, request_id=request_id)
        return False, RuntimeError("the writing process failed; its log says why")


class _Connection:
    """An API process's writes: each decided in the next group, its answer sent back
    by the group commit as soon as its group is recorded: handing each answer to a
    thread of the connection's own cost more than the send (docs/performance.md,
    "stop 32"). An API process that stops reading its answers for SEND_SECONDS is cut
    off, so that it holds up the group commit no longer."""

    def __init__(self, ledger: Ledger, conn: socket.socket) -> None:
        self._ledger = ledger
        self._conn = conn
        self._sending = threading.Lock()

    def serve(self) -> None:
        try:
            with self._conn.makefile("rb") as reader:
                while length := reader.read(LENGTH):
                    self._take(reader.read(int.from_bytes(length, "big")))
        except Exception:  # a frame it cannot read: the API process sees it gone
            log.exception("writer_connection_failed")
        finally:
            with self._sending:
                self._conn.close()

    def _take(self, message: bytes) -> None:
        number, name, ids, command, actor, request_id = pickle.loads(message)  # noqa: S301
        try:
            op = OPERATIONS[name]
            # the group commit runs it in this context: its events and log lines carry both
            with acting_as(actor, request_id), bound_contextvars(request_id=request_id):
                decided = self._ledger.execute_later((op.use_case.decide, command))
        except Exception:  # stopping, or an operation of another release: decided there
            self._send(number, lambda: NOT_TAKEN)
            return
        answer_it = partial(_answer, self._ledger, op, ids, request_id, decided)
        decided.add_done_callback(lambda _: self._send(number, answer_it))

    def _send(self, number: int, answer_it: Callable[[], Any]) -> None:
        try:
            data = frame((number, *answer_it()))
        except Exception:  # an answer that will not pickle
            log.exception("writer_answer_failed")
            data = frame((number, False, RuntimeError("the writing process failed")))
        with self._sending:
            try:
                _send_within(self._conn, data, SEND_SECONDS)
            except OSError:  # gone, or not reading: nobody waits for the rest either
                with suppress(OSError):
                    self._conn.shutdown(socket.SHUT_RDWR)


def _send_within(conn: socket.socket, data: bytes, seconds: float) -> None:
    """`sendall`, given up after `seconds` of a full buffer (`TimeoutError`), without
    a timeout on the socket, which its reader blocks on."""
    view = memoryview(data)
    deadline = time.monotonic() + seconds
    while view:
        try:
            view = view[conn.send(view, socket.MSG_DONTWAIT) :]
        except BlockingIOError:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [conn], [], remaining)[1]:
                raise TimeoutError("the API process does not read its answers") from None


def serve(path: str, parent: int) -> None:
    """The writer process: listens on `path` until `ledger serve` stops it (SIGUSR1)
    or is gone, then finishes the writes it took and exits. SIGINT and SIGTERM, which
    a terminal or a service manager sends to the whole process group, leave it
    writing while the API processes finish what they serve; it goes last."""
    configure_logging()
    tune_collector()  # its cache of aggregates is the largest heap of all
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stopping = threading.Event()
    signal.signal(STOP_SIGNAL, lambda *_: stopping.set())
    settings = Settings.from_env()
    ledger = open_ledger(database_url(settings), settings)
    ledger.start_group_commit(metrics.observe_group)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    Path(path + ".new").unlink(missing_ok=True)  # left by a writer that died starting
    listener.bind(path + ".new")
    listener.listen(64)
    listener.settimeout(0.5)
    os.replace(path + ".new", path)  # it appears listening
    log.info("writer_started", pid=os.getpid())
    try:
        while not stopping.is_set() and os.getppid() == parent:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            connection = _Connection(ledger, conn)
            threading.Thread(target=connection.serve, name="writer-read", daemon=True).start()
    finally:
        listener.close()
        ledger.close()  # the writes taken are decided and answered first


class WriterProcess:
    """`ledger serve`'s writer: started before the API processes, started again if it
    dies (after a second, twice as long each time it dies young, up to half a
    minute), stopped after them."""

    def __init__(self) -> None:
        self._directory = Path(tempfile.mkdtemp(prefix="ledger-writer-"))  # mode 0700
        self.path = str(self._directory / "writer.sock")
        self._process: BaseProcess | None = None
        self._stopping = threading.Event()
        self._spawning = threading.Lock()  # no writer started once `stop` began

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        self._spawn()
        threading.Thread(target=self._watch, name="writer-watch", daemon=True).start()

    def _spawn(self) -> None:
        with self._spawning:
            if self._stopping.is_set():
                return
            Path(self.path).unlink(missing_ok=True)
            spawn = multiprocessing.get_context("spawn")  # as uvicorn starts its workers
            process = spawn.Process(
                target=serve, args=(self.path, os.getpid()), name="ledger-writer", daemon=True
            )
            self._process = process
            process.start()
            deadline = time.monotonic() + 60
            while not Path(self.path).exists():
                if not process.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the writing process did not start (its log says why)")
                time.sleep(0.05)

    def _watch(self) -> None:
        delay = RECONNECT_SECONDS
        while True:
            process = self._process
            assert process is not None
            started = time.monotonic()
            process.join()
            if self._stopping.is_set():
                return
            log.error("writer_exited", exitcode=process.exitcode)
            died_young = time.monotonic() - started < YOUNG_SECONDS
            delay = min(delay * 2, MAX_DELAY_SECONDS) if died_young else RECONNECT_SECONDS
            if self._stopping.wait(delay):
                return
            try:
                self._spawn()
            except RuntimeError:
                log.exception("writer_not_restarted")

    def stop(self) -> None:
        """Once the API processes are stopped: the writer records what it took, exits."""
        with self._spawning:
            self._stopping.set()
        process = self._process
        if process is not None and process.pid is not None and process.exitcode is None:
            with suppress(ProcessLookupError):
                os.kill(process.pid, STOP_SIGNAL)
            process.join(30)
            if process.exitcode is None:
                process.kill()
        shutil.rmtree(self._directory, ignore_errors=True)
