"""The writing process itself (`api.writer` says why there is one): started, watched
and stopped by `ledger serve`, deciding the writes its API processes send."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import signal
import socket
import tempfile
import threading
import time
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


def _serve_connection(ledger: Ledger, conn: socket.socket) -> None:
    """Each write an API process sends, decided in the next group; its answer sent
    back as soon as its group is recorded."""
    sending = threading.Lock()
    reader = conn.makefile("rb")

    def reply(
        number: int, op: Operation, ids: dict[str, Any], request_id: str, decided: Future[Any]
    ) -> None:
        answered = frame((number, *_answer(ledger, op, ids, request_id, decided)))
        with sending, suppress(OSError):  # an API process gone: nobody waits for it
            conn.sendall(answered)

    with conn, reader:
        while length := reader.read(LENGTH):
            message = reader.read(int.from_bytes(length, "big"))
            number, name, ids, command, actor, request_id = pickle.loads(message)  # noqa: S301
            op = OPERATIONS[name]
            # the group commit runs it in this context: its events and log lines carry both
            with acting_as(actor, request_id), bound_contextvars(request_id=request_id):
                decided = ledger.execute_later((op.use_case.decide, command))
            decided.add_done_callback(partial(reply, number, op, ids, request_id))


def serve(path: str, parent: int) -> None:
    """The writer process: listens on `path` until told to stop (SIGTERM) or its
    parent is gone, then finishes the writes it took and exits."""
    configure_logging()
    tune_collector()  # its cache of aggregates is the largest heap of all
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: `ledger serve` stops it last
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    settings = Settings.from_env()
    ledger = open_ledger(database_url(settings), settings)
    ledger.start_group_commit(metrics.observe_group)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
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
            threading.Thread(target=_serve_connection, args=(ledger, conn), daemon=True).start()
    finally:
        listener.close()
        ledger.close()  # the writes taken are decided and answered first


class WriterProcess:
    """`ledger serve`'s writer: started before the API processes, started again if it
    dies, stopped after them."""

    def __init__(self) -> None:
        self._directory = Path(tempfile.mkdtemp(prefix="ledger-writer-"))  # mode 0700
        self.path = str(self._directory / "writer.sock")
        self._process: BaseProcess | None = None
        self._stopping = threading.Event()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        self._spawn()
        threading.Thread(target=self._watch, name="writer-watch", daemon=True).start()

    def _spawn(self) -> None:
        Path(self.path).unlink(missing_ok=True)
        spawn = multiprocessing.get_context("spawn")  # as uvicorn starts its workers
        self._process = spawn.Process(
            target=serve, args=(self.path, os.getpid()), name="ledger-writer", daemon=True
        )
        self._process.start()
        deadline = time.monotonic() + 60
        while not Path(self.path).exists():
            if not self._process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the writing process did not start (its log says why)")
            time.sleep(0.05)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            assert self._process is not None
            self._process.join()
            # exited of itself when told to stop (the SIGTERM that `ledger serve`'s
            # process group got, say), with what it took recorded: not started again
            if self._stopping.is_set() or self._process.exitcode == 0:
                return
            log.error("writer_exited", exitcode=self._process.exitcode)
            time.sleep(RECONNECT_SECONDS)
            try:
                self._spawn()
            except RuntimeError:
                log.exception("writer_not_restarted")

    def stop(self) -> None:
        self._stopping.set()
        if self._process is not None and self._process.is_alive():
            self._process.terminate()
            self._process.join(30)
        shutil.rmtree(self._directory, ignore_errors=True)
