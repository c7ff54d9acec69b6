"""A read replica on PostgreSQL's own streaming replication: `ledger serve` with
`LEDGER_READ_DATABASE_URL` naming a real standby (`pg_basebackup -R` of a primary this
test owns). Reads go to the standby (a paused replay shows in what they answer), writes
and the projection worker to the primary; `min_position` waits for the standby's replay
and takes the primary when it lags; while the standby is down the primary answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from projections.waits import STANDBY_WAIT_SECONDS
from tests.e2e.clusters import Cluster
from tests.e2e.conftest import Server, environment, run_ledger

YEAR = 2025


class Setup:
    def __init__(self, primary: Cluster, standby: Cluster, server: Server, key: str) -> None:
        self.primary, self.standby, self.server = primary, standby, server
        self.headers = {"Authorization": f"Bearer {key}"}
        self.appropriated = 0

    def appropriate(self, amount: int) -> int:
        """A write, to the primary; its position once the primary's views include it."""
        n = self.appropriated = self.appropriated + 1
        r = httpx.post(
            f"{self.server.url}/v1/fund-years/{YEAR}/appropriations",
            json={
                "appropriation_id": f"AP-{n}",
                "programme": "settling_in",
                "kind": "cash",
                "amount": str(amount),
                "reference": f"财预〔{YEAR}〕{n}号",
            },
            headers=self.headers,
            timeout=30,
        )
        assert r.status_code == 201, r.text
        position = int(r.headers["Ledger-Position"])
        deadline = time.monotonic() + 10
        while _tracked(self.primary.url) < position:  # so a stale answer is the standby's
            assert time.monotonic() < deadline, "the primary's projection worker is stuck"
            time.sleep(0.02)
        return position

    def appropriated_total(self, **params: Any) -> tuple[str, float]:
        """The fund year's appropriated total as read, and how long the read took."""
        started = time.monotonic()
        r = httpx.get(
            f"{self.server.url}/v1/fund-years/{YEAR}",
            params=params,
            headers=self.headers,
            timeout=30,
        )
        assert r.status_code == 200, r.text
        return r.json()["totals"]["appropriated"], time.monotonic() - started


def _tracked(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT min(position) FROM projection_tracking").fetchone()
        return int(row[0]) if row and row[0] is not None else 0


def _replay(standby: Cluster, paused: bool) -> None:
    with psycopg.connect(standby.url, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    primary, standby = Cluster(), Cluster()
    server = None
    try:
        primary.init()
        primary.start()
        with psycopg.connect(primary.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute('CREATE DATABASE "ledger"')
        standby.standby_of(primary)
        standby.start()
        tmp: Path = tmp_path_factory.mktemp("replica")
        env = environment(primary.url, tmp / "var")
        done = run_ledger(
            env, "keys", "create", "--actor", "test-admin", "--name", "admin", "--role", "admin"
        )
        assert done.returncode == 0, done.stderr
        key = done.stdout.strip().splitlines()[-1]
        env["LEDGER_READ_DATABASE_URL"] = standby.url
        server = Server(env, tmp / "server.log")
        r = httpx.post(
            f"{server.url}/v1/fund-years",
            json={"year": YEAR, "currency": "CNY"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        yield Setup(primary, standby, server, key)
    finally:
        if server is not None:
            server.stop()
        standby.remove()
        primary.remove()


def test_reads_go_to_the_standby_and_wait_for_its_replay(setup: Setup) -> None:
    first = setup.appropriate(1000)
    assert setup.appropriated_total(min_position=first)[0] == "1000.00"

    _replay(setup.standby, paused=True)
    try:
        second = setup.appropriate(500)  # the write goes to the primary all the same
        # Without a position the read is the standby's as it stands: before the write.
        assert setup.appropriated_total()[0] == "1000.00"
        # With one, the read waits for the standby, then takes the primary.
        total, took = setup.appropriated_total(min_position=second)
        assert total == "1500.00"
        assert STANDBY_WAIT_SECONDS <= took < STANDBY_WAIT_SECONDS + 2
        # As of an instant: every event recorded by then, which the standby lacks.
        now = datetime.now(UTC).isoformat()
        assert setup.appropriated_total(as_of=now)[0] == "1500.00"
    finally:
        _replay(setup.standby, paused=False)

    # Replayed, the standby answers a position at once.
    total, took = setup.appropriated_total(min_position=second)
    assert total == "1500.00" and took < STANDBY_WAIT_SECONDS


def test_reads_are_the_primary_s_while_the_standby_is_down(setup: Setup) -> None:
    setup.standby.stop()
    try:
        position = setup.appropriate(250)
        answers: list[int] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = httpx.get(
                f"{setup.server.url}/v1/fund-years/{YEAR}", headers=setup.headers, timeout=30
            )
            answers.append(r.status_code)
            if r.status_code == 503:  # a read under way as the standby went: retryable
                assert r.headers["Retry-After"] == "1", r.text
                assert r.json()["code"] == "unavailable"
            else:
                assert r.status_code == 200, r.text
                if len(answers) >= 5 and answers[-5:] == [200] * 5:
                    break
            time.sleep(0.1)
        assert answers[-5:] == [200] * 5, answers
        assert setup.appropriated_total(min_position=position)[0] == "1750.00"
        assert httpx.get(f"{setup.server.url}/readyz", timeout=10).status_code == 200
    finally:
        setup.standby.start()

    # Back, the standby serves the reads again (a paused replay shows it).
    deadline = time.monotonic() + 10
    while setup.appropriated_total(min_position=position)[1] >= STANDBY_WAIT_SECONDS:
        assert time.monotonic() < deadline, "the standby never caught up"
    _replay(setup.standby, paused=True)
    try:
        setup.appropriate(1)
        deadline = time.monotonic() + 10
        while setup.appropriated_total()[0] != "1750.00":  # the standby's, stale
            assert time.monotonic() < deadline, "the reads never went back to the standby"
            time.sleep(0.2)
    finally:
        _replay(setup.standby, paused=False)
