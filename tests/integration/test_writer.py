"""The writing process (`api.writer`): the API hands it its writes, answers what it
decided exactly as a write decided in process, and decides writes itself while the
writer cannot be reached.

A real writer process (`WriterProcess`, as `ledger serve` starts it) on the test's
database, and the app over HTTP, in process, told its socket as `ledger serve` tells
its API processes.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient

from api import metrics, writer_process
from api.app import create_app
from api.resources import OPERATIONS
from api.writer import (
    PROTOCOL,
    RECONNECT_SECONDS,
    SOCKET_VARIABLE,
    WriterLink,
    frame,
    unframe,
)
from api.writer_process import NOT_TAKEN, WriterProcess
from ledger.adapters.postgres import datastore_of
from ledger.domain import errors
from ledger.entrypoints.runtime import Settings
from ledger.usecases.ledger import Ledger
from tests.conftest import ROLE_KEYS, install_key
from tests.integration.scenario import (
    Actors,
    assert_problem,
    assert_validation_error,
    created,
    grant_body,
    open_year,
    position,
    talent_body,
)

pytestmark = pytest.mark.db


class Local:
    """The app's own group commit, counting the writes it decided (not sent to the
    writer)."""

    def __init__(self, app: Any) -> None:
        self.decided = 0
        self.link: WriterLink = app.state.writer
        ledger = app.state.ledger
        own = ledger.execute_later

        def execute_later(step: Any) -> Future[Any]:
            self.decided += 1
            return own(step)

        ledger.execute_later = execute_later


@pytest.fixture
def writer(child_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriterProcess]:
    """A writer on the test's database, as `ledger serve` starts one."""
    process = WriterProcess()
    process.start()
    monkeypatch.setenv(SOCKET_VARIABLE, process.path)
    try:
        yield process
    finally:
        process.stop()


Served = tuple[Actors, Local]


class _As:
    """A role's requests through the one client: a `TestClient` not entered runs each
    request on an event loop of its own, and the writer's connection is made on the
    one loop an API process runs."""

    def __init__(self, client: TestClient, key: str) -> None:
        self._client = client
        self._auth = {"Authorization": f"Bearer {key}"}

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self._client.post(url, headers=self._auth, **kw)

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self._client.get(url, headers=self._auth, **kw)


@pytest.fixture
def served(writer: WriterProcess, test_settings: Settings) -> Iterator[Served]:
    """Fund year 2024 and talent T-1, through an app that hands its writes to `writer`."""
    app = create_app(test_settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        datastore = datastore_of(app.state.ledger)
        keys = {name: install_key(datastore, name, roles) for name, roles in ROLE_KEYS.items()}
        actors = Actors.of(lambda role: cast(TestClient, _As(client, keys[role or ""])))
        open_year(actors)
        local = Local(app)
        created(actors.clerk.post("/v1/talents", json=talent_body()))
        assert local.decided == 1  # its answer unseals a name: decided here (`forwarded`)
        yield actors, local


def test_the_writes_are_decided_by_the_writing_process(served: Served) -> None:
    a, local = served
    first = a.clerk.post("/v1/grants", json=grant_body("G-1", amount="100"))
    second = a.clerk.post("/v1/grants", json=grant_body("G-2", amount="200"))
    assert created(first)["grant_id"] == "G-1"
    assert created(second)["amount"] == "200.00"
    assert position(second) > position(first)
    approved = a.approver.post("/v1/grants/G-1/approve", json={"note": "同意"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert local.decided == 1  # only the talent's registration
    replay = a.clerk.post("/v1/grants", json=grant_body("G-1", amount="100"))
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert position(replay) >= position(first)
    events = a.auditor.get("/v1/grants/G-1", params={"min_position": position(approved)})
    assert events.status_code == 200, events.text
    assert events.json()["status"] == "approved"


def test_its_refusals_answer_and_are_kept_as_in_process(served: Served) -> None:
    a, local = served
    over = a.clerk.post("/v1/grants", json=grant_body("G-9", amount="999999999"))
    assert_problem(over, 409, "budget_exceeded")
    tiny = {
        **grant_body("G-8", amount="0.05", programme="settling_in"),
        "instalments": {"count": 10, "first_due_on": "2024-03-01", "interval_months": 1},
    }
    body = assert_validation_error(a.clerk.post("/v1/grants", json=tiny), "instalments.count")
    assert body["errors"] == [
        {
            "loc": ["body", "instalments.count"],
            "msg": "0.05 cannot be paid in 10 instalments of at least 0.01",
            "type": "rule",
        }
    ]
    assert local.decided == 1
    kept = a.auditor.get("/v1/audit/refusals", params={"code": "budget_exceeded"})
    assert [r["actor"] for r in kept.json()["items"]] == ["clerk"]


def test_writes_asked_at_once_share_one_connection(served: Served, writer: WriterProcess) -> None:
    a, local = served
    local.link.close()  # the next write connects again

    def propose(n: int) -> None:
        created(a.clerk.post("/v1/grants", json=grant_body(f"G-{n}", amount="10")))

    with ThreadPoolExecutor(8) as clients:  # one event loop serves them all at once
        list(clients.map(propose, range(24)))
    assert writer.pid is not None
    ours = str(Path(writer.path).parent)  # not its database's, when that is a socket
    sockets = psutil.Process(writer.pid).net_connections(kind="unix")
    listening_and_serving = [s for s in sockets if s.laddr.startswith(ours)]
    assert len(listening_and_serving) == 2
    assert local.decided == 1


def test_while_its_writer_cannot_be_reached_the_api_decides_writes_itself(
    served: Served, tmp_path: Path
) -> None:
    a, local = served
    created(a.clerk.post("/v1/grants", json=grant_body("G-1", amount="100")))
    path, local.link.path = local.link.path, str(tmp_path / "no-writer.sock")
    local.link.close()
    created(a.clerk.post("/v1/grants", json=grant_body("G-2", amount="100")))
    created(a.clerk.post("/v1/grants", json=grant_body("G-3", amount="100")))
    assert local.decided == 1 + 2
    local.link.path = path
    time.sleep(RECONNECT_SECONDS)
    created(a.clerk.post("/v1/grants", json=grant_body("G-4", amount="100")))
    assert local.decided == 1 + 2  # sent to the writer again


def test_a_writer_killed_is_started_again_and_takes_the_writes(
    served: Served, writer: WriterProcess
) -> None:
    a, local = served
    created(a.clerk.post("/v1/grants", json=grant_body("G-1", amount="100")))
    killed = writer.pid
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    # a write sent before this process saw the writer gone cannot know whether it was
    # recorded: a 503, which the client retries as for any other, with the same ids
    for _ in range(20):
        answered = a.clerk.post("/v1/grants", json=grant_body("G-2", amount="100"))
        if answered.status_code != 503:
            break
        time.sleep(0.2)
    created(answered)
    deadline = time.monotonic() + 30  # `ledger serve` starts another
    while writer.pid == killed or not Path(writer.path).exists():
        assert time.monotonic() < deadline, "no writer was started again"
        time.sleep(0.1)
    time.sleep(RECONNECT_SECONDS)
    decided_here = local.decided
    created(a.clerk.post("/v1/grants", json=grant_body("G-3", amount="100")))
    assert local.decided == decided_here  # sent to the new writer


def test_the_writes_read_at_once_are_one_group_answered_in_one_send(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's one thread reads what a connection sent, decides it as one group,
    and answers it in one send; a write of an operation it does not know is handed
    back (`NOT_TAKEN`), to be decided by the API process that sent it, as is one sent by
    an API process expecting answers of another release (`PROTOCOL`)."""
    groups: list[int] = []
    monkeypatch.setattr(metrics, "observe_group", lambda size, *_: groups.append(size))
    sends: list[list[Any]] = []
    send = writer_process._send_within

    def recorded(conn: socket.socket, data: bytes, seconds: float) -> None:
        sends.append(unframe(bytearray(data)))
        send(conn, data, seconds)

    monkeypatch.setattr(writer_process, "_send_within", recorded)
    path = str(tmp_path / "writer.sock")
    with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as api:
        listener.bind(path)
        listener.listen()
        listener.setblocking(False)
        api.connect(path)
        op = OPERATIONS["fund_year.open"]
        writes = [
            (
                n,
                (op.name, PROTOCOL),
                {},
                ledger.step(op.command_of({}, op.body(year=2030 + n, currency="CNY")))[1],
            )
            for n in range(3)
        ]
        command = writes[0][3]
        writes += [
            (3, ("fund_year.reopen", PROTOCOL), {}, None),  # of a later release, say
            (4, op.name, {}, command),  # from an API process expecting a dict for a body
            (5, (op.name, PROTOCOL + 1), {}, command),  # expecting what it will be next
        ]
        api.sendall(b"".join(frame((*write, "admin", f"r{n}")) for n, write in enumerate(writes)))
        deadline = time.monotonic() + 10
        writer_process._Writer(ledger, listener).serve(
            lambda: not sends and time.monotonic() < deadline
        )
    assert groups == [3]
    [answers] = sends
    assert [n for n, *_ in answers] == [3, 4, 5, 0, 1, 2]  # those it did not take, at once
    assert [tuple(a[1:]) for a in answers[:3]] == [NOT_TAKEN] * 3
    assert [(ok, status) for _, ok, (status, *_) in answers[3:]] == [(True, 201)] * 3


def test_a_connection_sending_what_the_writer_cannot_read_is_closed_the_others_served(
    ledger: Ledger, tmp_path: Path
) -> None:
    path = str(tmp_path / "writer.sock")
    with (
        socket.socket(socket.AF_UNIX) as listener,
        socket.socket(socket.AF_UNIX) as garbled,
        socket.socket(socket.AF_UNIX) as sound,
    ):
        listener.bind(path)
        listener.listen()
        listener.setblocking(False)
        garbled.connect(path)
        sound.connect(path)
        garbled.sendall(len(b"not a pickle").to_bytes(4, "big") + b"not a pickle")
        op = OPERATIONS["fund_year.open"]
        command = ledger.step(op.command_of({}, op.body(year=2030, currency="CNY")))[1]
        sound.sendall(frame((1, (op.name, PROTOCOL), {}, command, "admin", "r1")))
        answers: list[bytes] = []
        deadline = time.monotonic() + 10

        def running() -> bool:
            if select.select([sound], [], [], 0)[0]:
                answers.append(sound.recv(1 << 16))
            return not answers and time.monotonic() < deadline

        writer_process._Writer(ledger, listener).serve(running)
        garbled.settimeout(10)
        assert garbled.recv(1) == b""  # closed
    [(number, ok, (status, *_))] = unframe(bytearray(answers[0]))
    assert (number, ok, status) == (1, True, 201)


Refusal = Callable[[], errors.LedgerError]


@pytest.mark.parametrize(
    "make",
    [
        lambda: errors.BudgetExceeded("over the line"),
        lambda: errors.ValidationFailed("instalments.count", "too many", "body"),
        lambda: errors.StatementRejected(3, "amount", "not a number"),
        lambda: errors.NotReached(42),
    ],
)
def test_a_refusal_crosses_processes_whole(make: Refusal) -> None:
    refusal = make()
    again = pickle.loads(pickle.dumps(refusal))
    assert type(again) is type(refusal)
    assert again.args == refusal.args
    assert vars(again) == vars(refusal)
    assert again.code == refusal.code
