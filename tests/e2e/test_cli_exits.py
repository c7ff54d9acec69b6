"""How `ledger` ends when it cannot do its work (CONTRACT §15): one line on stderr and
an exit status a script or a service manager can test, never a traceback."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version

from tests.e2e.conftest import run_ledger

UNREACHABLE = "postgresql://ledger:s3cret@127.0.0.1:1/ledger"


def test_version() -> None:
    done = run_ledger({}, "--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"ledger {version('talent-ledger')}"


def test_a_database_it_cannot_reach_is_one_line_and_69(ledger_env: dict[str, str]) -> None:
    env = {**ledger_env, "LEDGER_DATABASE_URL": UNREACHABLE}
    commands = [("keys", "list"), ("audit", "verify"), ("serve", "--port", "1")]
    # at once: each gives up on the database after the pool's wait (5 s)
    with ThreadPoolExecutor(len(commands)) as pool:
        ended = list(pool.map(lambda command: run_ledger(env, *command), commands))
    for command, done in zip(commands, ended, strict=True):
        assert done.returncode == 69, (command, done.stderr)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, done.stderr
        assert "cannot reach the database at 127.0.0.1:1/ledger" in errors[0]
        assert "Traceback" not in done.stderr and "s3cret" not in done.stderr


def test_a_setting_wrong_is_one_line_and_78(ledger_env: dict[str, str]) -> None:
    for setting, value, said in (
        ("LEDGER_TIMEZONE", "Mars/Olympus", "LEDGER_TIMEZONE"),
        ("LEDGER_SIGNING_KEY", "", "LEDGER_SIGNING_KEY is not set"),
    ):
        done = run_ledger({**ledger_env, setting: value}, "audit", "checkpoint")
        assert done.returncode == 78, (setting, done.stderr)
        assert said in done.stderr and "Traceback" not in done.stderr
