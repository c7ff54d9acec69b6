"""The processes `ledger serve` starts beside its API processes: its writer
(`api.writer_process`) and its projection worker. Each is started before the API
processes, started again if it dies, and stopped after them.

Each runs in a process of its own rather than as a thread of an API process: a
thread there shares the interpreter with the event loop, which then waits for it at
every system call (docs/performance.md, "stop 32" for the writer, "stop 33" for the
projection worker: a batch folded in an API process held up its requests by up to
200 ms).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.process import BaseProcess
from typing import Any

import structlog

from ledger.entrypoints.logs import configure_logging
from ledger.entrypoints.runtime import Settings, database_url, open_ledger, tune_collector
from ledger.usecases.ledger import Ledger
from projections.worker import ProjectionWorker

log = structlog.get_logger(__name__)

#: how `ledger serve` tells a child to stop: SIGTERM and SIGINT reach the whole process
#: group, while the API processes still have work for the children
STOP_SIGNAL = signal.SIGUSR1
#: a child that dies sooner after starting is started again later (see `Child`)
YOUNG_SECONDS = 10.0
FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 30.0
#: how often a child looks whether it should stop
POLL_SECONDS = 0.5


def child_started(name: str) -> tuple[Ledger, Callable[[int], bool]]:
    """In a child, first: its logging and collector as every `ledger` process's, its
    ledger, and `running(parent)`, false once `ledger serve` stopped it (STOP_SIGNAL)
    or is gone. SIGINT and SIGTERM, which a terminal or a service manager sends to the
    whole process group, leave it running while the API processes finish what they
    serve; it goes last."""
    configure_logging()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stopping = threading.Event()
    signal.signal(STOP_SIGNAL, lambda *_: stopping.set())
    settings = Settings.from_env()
    ledger = open_ledger(database_url(settings), settings)
    tune_collector()  # after the ledger: what it opened is long-lived
    log.info(f"{name}_started", pid=os.getpid())
    return ledger, lambda parent: not stopping.is_set() and os.getppid() == parent


def run_projections(parent: int) -> None:
    """The projection child: one worker, leading the deployment's batches as any
    worker may (`ProjectionWorker.run_forever`), until stopped."""
    ledger, running = child_started("projections")
    worker = ProjectionWorker(ledger)
    worker.start()
    try:
        while running(parent) and worker.running:
            time.sleep(POLL_SECONDS)
    finally:
        worker.stop()
        ledger.close()


class Child:
    """A process of `ledger serve`: `target(*args, parent's pid)` in a process spawned
    as uvicorn spawns its workers, `ready()` once it serves; started again if it dies
    (after a second, twice as long each time it dies young, up to half a minute)."""

    def __init__(
        self,
        name: str,
        target: Callable[..., None],
        *args: Any,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.name = name
        self._target = target
        self._args = args
        self._ready = ready
        self._process: BaseProcess | None = None
        self._stopping = threading.Event()
        self._spawning = threading.Lock()  # no child started once `stop` began

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        self._spawn()
        threading.Thread(target=self._watch, name=f"{self.name}-watch", daemon=True).start()

    def _spawn(self) -> None:
        with self._spawning:
            if self._stopping.is_set():
                return
            spawn = multiprocessing.get_context("spawn")
            process = spawn.Process(
                target=self._target,
                args=(*self._args, os.getpid()),
                name=f"ledger-{self.name}",
                daemon=True,
            )
            self._process = process
            process.start()
            deadline = time.monotonic() + 60
            while not self._ready():
                if not process.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"the {self.name} process did not start (its log says why)")
                time.sleep(0.05)

    def _watch(self) -> None:
        delay = FIRST_DELAY_SECONDS
        while True:
            process = self._process
            assert process is not None
            started = time.monotonic()
            process.join()
            if self._stopping.is_set():
                return
            log.error(f"{self.name}_exited", exitcode=process.exitcode)
            died_young = time.monotonic() - started < YOUNG_SECONDS
            delay = min(delay * 2, MAX_DELAY_SECONDS) if died_young else FIRST_DELAY_SECONDS
            if self._stopping.wait(delay):
                return
            try:
                self._spawn()
            except RuntimeError:
                log.exception(f"{self.name}_not_restarted")

    def stop(self) -> None:
        """Once the API processes are stopped: it finishes what it took, and exits."""
        with self._spawning:
            self._stopping.set()
        process = self._process
        if process is not None and process.pid is not None and process.exitcode is None:
            with suppress(ProcessLookupError):
                os.kill(process.pid, STOP_SIGNAL)
            process.join(30)
            if process.exitcode is None:
                process.kill()
