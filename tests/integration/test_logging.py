"""Structured logs (docs/cli.md): JSON lines off a terminal, a `request_id` on every
line of a request, one access line per request, and no secret or personal data.

structlog's configuration is global and `configure_logging` caches loggers on first
use (`cache_logger_on_first_use=True`): a module-level logger such as `api.app.log`
keeps whatever it was first built with. The `logs` fixture therefore points
`sys.stderr` at a buffer *before* configuring, forgets the loggers cached by the
project's modules before and after, and restores structlog and the root logger.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import select
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog

import api.app as app_module
from ledger.entrypoints.logs import configure_logging, written_together
from tests.integration.scenario import (
    Actors,
    Api,
    created,
    expect,
    funded,
    grant_body,
    position,
    talent_body,
)

Lines = Callable[[], list[dict[str, Any]]]
PROJECT_MODULES = ("api", "ledger", "projections")
LAZY_PROXY = type(structlog.get_logger())  # what `structlog.get_logger()` hands out
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def _forget_cached_loggers() -> None:
    """Make the project's module-level lazy loggers read the configuration again."""
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in PROJECT_MODULES:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, LAZY_PROXY):
                vars(value).pop("bind", None)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """`sys.stderr` replaced by a buffer; structlog and stdlib logging restored after."""
    buffer = io.StringIO()
    saved_config = structlog.get_config()
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    saved_uvicorn = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate)
        for name in UVICORN_LOGGERS
    }
    monkeypatch.setattr(sys, "stderr", buffer)
    _forget_cached_loggers()
    yield buffer
    ours = set(root.handlers) - set(saved_root[0])
    root.handlers[:] = [h for h in root.handlers if h not in ours] + [
        h
        for h in saved_root[0]
        if type(h).__module__ != "_pytest.logging" and h not in root.handlers
    ]
    root.setLevel(saved_root[1])
    for name, (handlers, propagate) in saved_uvicorn.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate
    structlog.configure(**saved_config)
    _forget_cached_loggers()


def _parse(buffer: io.StringIO) -> list[dict[str, Any]]:
    lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


@pytest.fixture
def logs(stderr: io.StringIO) -> Lines:
    """JSON logging configured on the captured stderr; returns the parsed lines so far."""
    configure_logging(json=True)
    return lambda: _parse(stderr)


def _requests(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == "request"]


def test_logs_are_json_lines_when_stderr_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch, stderr: io.StringIO, api: Api
) -> None:
    monkeypatch.setattr(sys, "stderr", stderr)  # pytest's capture re-took it for this phase
    configure_logging()  # json=None: decided by whether stderr is a terminal
    response = api("auditor").get("/healthz")
    assert response.status_code == 200
    lines = _parse(stderr)  # every line is a JSON object
    assert lines
    (access,) = _requests(lines)
    assert access["level"] == "info"
    assert access["timestamp"].endswith("Z")


@dataclass(frozen=True)
class _Held:
    name: str
    secret: str = field(repr=False)


def test_any_value_can_be_logged_and_a_dataclass_only_as_its_repr(logs: Lines) -> None:
    """Lines are written by orjson: what it would write its own way (a dataclass's every
    field) goes to structlog's fallback, its repr; what it refuses, to the stdlib's."""
    log = structlog.get_logger("tests")
    log.info("held", held=_Held("zhao", "s3cr3t"), by_year={2030: "open"})
    log.info("large", amount=2**70, text="中文")
    held, large = logs()
    assert held["held"] == "_Held(name='zhao')"
    assert held["by_year"] == {"2030": "open"}
    assert (large["amount"], large["text"]) == (2**70, "中文")


def test_logs_are_readable_text_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, stderr: io.StringIO, api: Api
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    configure_logging()
    assert api("auditor").get("/healthz").status_code == 200
    text = terminal.getvalue()
    assert "request" in text
    assert "/healthz" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[-1])


def test_one_line_per_request_with_method_route_status_duration_and_actor(
    logs: Lines, api: Api
) -> None:
    a = funded(api)
    created(a.clerk.post("/v1/grants", json=grant_body()))
    before = len(_requests(logs()))
    response = a.approver.post("/v1/grants/G-1/approve", json={"note": "同意"})
    assert response.status_code == 200
    lines = _requests(logs())[before:]
    assert len(lines) == 1
    (line,) = lines
    assert line["method"] == "POST"
    assert line["route"] == "/v1/grants/{grant_id}/approve"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], int | float)
    assert line["duration_ms"] >= 0
    assert line["actor"] == "approver"
    assert line["request_id"] == response.headers["X-Request-Id"]


def test_every_request_is_logged_once_even_when_refused(logs: Lines, api: Api) -> None:
    a = Actors.of(api)
    anonymous = api(None)
    responses = [
        anonymous.get("/v1/grants/G-1"),  # 401
        a.auditor.post("/v1/grants", json=grant_body()),  # 403
        a.auditor.get("/v1/grants/G-404"),  # 404
        a.clerk.post("/v1/grants", json={"grant_id": 1}),  # 422
        a.auditor.get("/v1/grants/G-1", params={"min_position": "x"}),  # 422
    ]
    lines = _requests(logs())
    by_id = {line["request_id"]: line for line in lines}
    assert len(by_id) == len(lines)
    for response in responses:
        line = by_id[response.headers["X-Request-Id"]]
        assert line["status"] == response.status_code
    assert by_id[responses[0].headers["X-Request-Id"]]["actor"] is None
    assert by_id[responses[2].headers["X-Request-Id"]]["actor"] == "auditor"
    assert by_id[responses[2].headers["X-Request-Id"]]["route"] == "/v1/grants/{grant_id}"


def test_a_forbidden_request_names_the_authenticated_actor(logs: Lines, api: Api) -> None:
    response = api("auditor").post("/v1/grants", json=grant_body())
    assert response.status_code == 403
    (line,) = _requests(logs())
    assert (line["status"], line["actor"]) == (403, "auditor")


def test_every_line_logged_during_a_request_carries_its_request_id(logs: Lines, api: Api) -> None:
    a = funded(api)
    for n in range(3):
        a.clerk.post("/v1/grants", json=grant_body(f"G-{n}"))
        a.auditor.get(f"/v1/grants/G-{n}")
    lines = logs()
    server_lines = [line for line in lines if line.get("logger") != "httpx2"]  # the client's
    in_requests = [line for line in server_lines if not line["event"].startswith("projection")]
    assert len(_requests(in_requests)) >= 10
    for line in in_requests:
        assert isinstance(line.get("request_id"), str), line
        assert line["request_id"], line


INVALID_REQUEST_IDS = ["with spaces", "x" * 65, "", "<script>", "semi;colon", "-dash/slash"]


def test_request_ids_are_echoed_reused_when_valid_and_unique_otherwise(
    logs: Lines, api: Api, subtests: pytest.Subtests
) -> None:
    auditor = api("auditor")
    with subtests.test("a valid client id is reused and echoed"):
        response = auditor.get("/v1/grants/G-1", headers={"X-Request-Id": "batch-7:grant.1"})
        assert response.headers["X-Request-Id"] == "batch-7:grant.1"
        assert _requests(logs())[-1]["request_id"] == "batch-7:grant.1"
    for given in INVALID_REQUEST_IDS:
        with subtests.test("an invalid client id is replaced", given=given):
            response = auditor.get("/v1/grants/G-1", headers={"X-Request-Id": given})
            echoed = response.headers["X-Request-Id"]
            assert echoed != given
            assert 1 <= len(echoed) <= 64
            assert _requests(logs())[-1]["request_id"] == echoed
    with subtests.test("each request gets its own id"):
        before = len(_requests(logs()))
        ids = {auditor.get("/healthz").headers["X-Request-Id"] for _ in range(5)}
        assert len(ids) == 5
        assert {line["request_id"] for line in _requests(logs())[before:]} == ids


def test_no_api_key_and_no_talent_name_appears_in_the_logs(
    stderr: io.StringIO, logs: Lines, api: Api
) -> None:
    a = funded(api)
    name = "欧阳明月"
    registered = a.clerk.post("/v1/talents", json=talent_body("T-2", name=name))
    created(registered)
    expect(a.auditor.get(f"/v1/talents/T-2?min_position={position(registered)}"), 200)
    a.clerk.post("/v1/talents", json={**talent_body("T-3", name=name), "extra": 1})  # 422
    a.clerk.post("/v1/talents", json=talent_body("T-2", name=name + "2"))  # 409
    stranger = api(None)
    stranger.headers["Authorization"] = "Bearer tl_leaked-key-that-does-not-exist"
    stranger.get("/v1/talents/T-2")
    text = stderr.getvalue()
    assert len(_requests(logs())) >= 9
    keys = [
        getattr(a, role).headers["Authorization"].removeprefix("Bearer ")
        for role in ("admin", "clerk", "auditor")
    ]
    for secret in [*keys, "tl_leaked-key-that-does-not-exist"]:
        assert secret not in text
    assert name not in text
    assert "Bearer" not in text


def test_an_unexpected_error_is_a_500_problem_logged_with_its_request_id(
    logs: Lines, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = funded(api)

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(a.clerk.app.state.ledger, "step", fail)  # type: ignore[attr-defined]
    response = a.clerk.post("/v1/grants", json=grant_body())
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert "disk on fire" not in response.text
    request_id = response.headers.get("X-Request-Id")
    assert request_id
    failure = [
        line
        for line in logs()
        if line.get("request_id") == request_id and "disk on fire" in json.dumps(line)
    ]
    assert failure, "the exception is logged with the request's request_id"


class _Writes(io.StringIO):
    """A captured stderr that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch, stderr: io.StringIO) -> _Writes:
    """JSON logging configured on a captured stderr that keeps each write apart."""
    writes = _Writes()
    monkeypatch.setattr(sys, "stderr", writes)
    configure_logging(json=True)
    return writes


def test_lines_logged_together_are_written_in_one_write_in_order(captured: _Writes) -> None:
    log = structlog.get_logger("tests")
    log.info("alone")
    with written_together():
        log.info("first", n=1)
        log.info("second", n=2)
        assert len(captured.writes) == 1  # held until the end
    log.info("after")
    assert len(captured.writes) == 3
    assert [json.loads(line)["event"] for line in captured.writes[1].splitlines()] == [
        "first",
        "second",
    ]
    assert [json.loads(line)["event"] for line in captured.getvalue().splitlines()] == [
        "alone",
        "first",
        "second",
        "after",
    ]


def test_the_request_lines_of_one_turn_are_written_together_each_with_its_request_id(
    captured: _Writes,
) -> None:
    """The answers of a writer's group end many requests in one turn of the event loop:
    the first to end logs the lines of all of them once the turn is over, in one write,
    each in its request's context, before it returns itself."""

    async def request(request_id: str) -> list[str]:  # as `RequestContext` ends one
        structlog.contextvars.bind_contextvars(request_id=request_id)
        await app_module._lines.log(method="POST", route="/v1/grants", status=201, actor="c")
        return list(captured.writes)  # what was written when it returned

    async def turn() -> list[list[str]]:
        ids = ("r-1", "r-2", "r-3")
        return await asyncio.gather(*(asyncio.create_task(request(i)) for i in ids))

    first, second, third = asyncio.run(turn())
    assert second == third == []  # returned at once: the first logs their lines
    assert first == captured.writes
    (write,) = captured.writes
    lines = [json.loads(line) for line in write.splitlines()]
    assert [(line["event"], line["request_id"]) for line in lines] == [
        ("request", "r-1"),
        ("request", "r-2"),
        ("request", "r-3"),
    ]


def test_lines_written_together_go_in_writes_a_pipe_keeps_whole(captured: _Writes) -> None:
    """A pipe several processes write to keeps a write of up to PIPE_BUF bytes whole
    and may interleave a longer one: a turn's lines are cut between lines into such
    writes, and a line longer than that goes alone."""
    log = structlog.get_logger("tests")
    with written_together():
        for n in range(60):
            log.info("line", n=n, text="中文" * 20)
        log.info("long", text="x" * (2 * select.PIPE_BUF))
    assert len(captured.writes) > 2
    for write in captured.writes:
        assert write.endswith("\n")
        assert len(write.encode()) <= select.PIPE_BUF or write.count("\n") == 1
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert [line.get("n") for line in lines] == [*range(60), None]


def test_a_block_of_lines_together_inside_another_is_written_with_it(captured: _Writes) -> None:
    log = structlog.get_logger("tests")
    with written_together():
        log.info("outer")
        with written_together():
            log.info("inner")
        assert captured.writes == []
    (write,) = captured.writes
    assert [json.loads(line)["event"] for line in write.splitlines()] == ["outer", "inner"]


class _Unprintable:
    def __repr__(self) -> str:
        raise ValueError("no repr")


def test_a_request_line_that_cannot_be_written_costs_the_others_nothing(captured: _Writes) -> None:

    async def request(request_id: str, **fields: Any) -> None:
        structlog.contextvars.bind_contextvars(request_id=request_id)
        await app_module._lines.log(method="GET", status=200, **fields)

    async def turn() -> None:
        await asyncio.gather(
            asyncio.create_task(request("r-1")),
            asyncio.create_task(request("r-2", route=_Unprintable())),
            asyncio.create_task(request("r-3")),
        )

    asyncio.run(turn())  # nothing raised in the request that wrote the lines
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert [(line["event"], line["request_id"]) for line in lines] == [
        ("request", "r-1"),
        ("request_line_failed", "r-2"),
        ("request", "r-3"),
    ]
