"""Real `ledger` processes: the command line and the server, as an operator runs them."""

from __future__ import annotations

import os
import pty
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_MASTER_KEY, TEST_SIGNING_KEY

ROOT = Path(__file__).resolve().parents[2]
LEDGER = str(ROOT / ".venv" / "bin" / "ledger")


class HeldPort:
    """A free port on 127.0.0.1, held for a server until released: bound with
    SO_REUSEADDR and never listening, so the server binds it (uvicorn and PostgreSQL
    set SO_REUSEADDR too) while no other process is given it, or can bind it without
    SO_REUSEADDR. A port only found free and let go could go to another test's server
    before this one's bound it, and that server would answer this test's requests
    (what best explains a CI run whose README walk-through got only problems)."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.number = int(self._socket.getsockname()[1])

    def release(self) -> None:
        self._socket.close()


class Server:
    """One `ledger serve` process on its own port."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self._held = HeldPort()
        self.port = self._held.number
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [LEDGER, "serve", "--port", str(self.port), *args],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_until_answering()
        except BaseException:  # the fixture never gets it to stop: stopped here
            self.stop()
            raise

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ledger serve exited:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"ledger serve did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
        finally:
            self._held.release()


def environment(database_url: str, data_dir: Path) -> dict[str, str]:
    """The environment of a `ledger` process on that database: this one's, but for
    its LEDGER_ settings, with the test keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env.update(
        LEDGER_DATABASE_URL=database_url,
        LEDGER_DATA_DIR=str(data_dir),
        LEDGER_MASTER_KEY=TEST_MASTER_KEY,
        LEDGER_SIGNING_KEY=TEST_SIGNING_KEY,
    )
    return env


@pytest.fixture
def ledger_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a `ledger` process on this test's database."""
    return environment(db_url, tmp_path / "var")


def run_ledger(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`ledger ARGS` with `env`, its output captured."""
    return subprocess.run(
        [LEDGER, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def run_on_terminal(env: dict[str, str], *args: str, typed: str = "") -> tuple[int, str, str]:
    """`ledger ARGS` with a terminal for its stdin and stderr (where a person would
    watch and answer), `typed` typed at it: its exit status, stdout and what the
    terminal showed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [LEDGER, *args], env=env, cwd=ROOT, stdin=slave, stdout=subprocess.PIPE, stderr=slave
    )
    os.close(slave)
    if typed:
        os.write(master, typed.encode())
    shown = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        try:
            chunk = os.read(master, 65536) if ready else b"."
        except OSError:  # the other side closed: the process is gone
            break
        if not chunk:
            break
        shown += chunk if ready else b""
    os.close(master)
    stdout, _ = proc.communicate(timeout=10)
    return proc.returncode, stdout.decode(), shown.decode(errors="replace")


@pytest.fixture
def cli(ledger_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    return partial(run_ledger, ledger_env)


@pytest.fixture
def make_key(cli: Callable[..., subprocess.CompletedProcess[str]]) -> Callable[..., str]:
    def make(name: str, *roles: str) -> str:
        args = ["keys", "create", "--actor", "test-admin", "--name", name]
        for role in roles:
            args += ["--role", role]
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    return make


@pytest.fixture
def serve(ledger_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(*args: str) -> Server:
        server = Server(ledger_env, tmp_path / f"server-{len(servers)}.log", *args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
