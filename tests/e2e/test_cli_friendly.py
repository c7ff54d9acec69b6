"""The `ledger` command as people and scripts meet it (docs/cli.md): `--json` for
scripts, progress bars only on a terminal, a question before what cannot be undone."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from ledger.usecases.ledger import Ledger
from projections.worker import ProjectionWorker
from tests.e2e.conftest import run_on_terminal
from tests.e2e.test_audit_cli import record_some_events

pytestmark = pytest.mark.db

Cli = Callable[..., subprocess.CompletedProcess[str]]


def _json(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert done.returncode == 0, done.stderr
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def test_every_command_that_reports_answers_one_json_object(
    ledger: Ledger, cli: Cli, tmp_path: Path
) -> None:
    events = record_some_events(ledger)
    made = _json(
        cli("keys", "create", "--actor", "zhou", "--name", "wu", "--role", "clerk", "--json")
    )
    assert made["name"] == "wu" and made["roles"] == ["clerk"]
    assert str(made["key"]).startswith("tl_")
    listed = _json(cli("keys", "list", "--json"))
    assert [k["name"] for k in listed["keys"]] == ["wu"]  # type: ignore[attr-defined]
    assert "key" not in listed["keys"][0]  # type: ignore[index]
    revoked = _json(cli("keys", "revoke", "wu", "--actor", "zhou", "--json"))
    assert revoked["revoked_at"] is not None

    signed = _json(cli("audit", "checkpoint", "--json"))
    assert signed["head_position"] == events + 2  # the key's two events
    assert str(signed["note"]).startswith("talent-ledger")
    public = _json(cli("audit", "public-key", "--json"))
    assert len(base64.b64decode(str(public["public_key"]))) == 32  # an Ed25519 key
    verified = _json(cli("audit", "verify", "--json"))
    assert verified["ok"] is True and verified["events_checked"] == events + 2
    bundle = tmp_path / "bundle.zip"
    bundled = _json(cli("audit", "bundle", "--out", str(bundle), "--json"))
    assert bundled["events"] == events + 2 and bundle.stat().st_size > 0

    rebuilt = _json(cli("projections", "rebuild", "--yes", "--json"))
    assert rebuilt == {"events": events + 2}
    assert _json(cli("db", "init", "--json"))["schema"] == "up to date"
    forgotten = _json(cli("talents", "forget", "T1", "--actor", "dpo", "--yes", "--json"))
    assert forgotten["talent_id"] == "T1" and forgotten["erased"] is True


def _erased(db_url: str) -> bool:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM ledger_events WHERE topic LIKE %s", ("%PersonalDataErased",)
        )
        return bool(row.fetchone()[0])  # type: ignore[index]


def _generation(db_url: str) -> list[int]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT generation FROM projection_tracking ORDER BY name")
        return [r[0] for r in rows.fetchall()]


def test_forget_and_rebuild_ask_first_at_a_terminal_and_do_nothing_unless_told_yes(
    ledger: Ledger, cli: Cli, ledger_env: dict[str, str], db_url: str
) -> None:
    record_some_events(ledger)
    ProjectionWorker(ledger).catch_up()
    generation = _generation(db_url)
    # asked at a terminal, and answered no
    status, _, shown = run_on_terminal(
        ledger_env, "talents", "forget", "T1", "--actor", "dpo", typed="n\n"
    )
    assert status == 2 and "[y/N]" in shown and "nothing was done" in shown
    status, _, shown = run_on_terminal(ledger_env, "projections", "rebuild", typed="\n")
    assert status == 2 and "[y/N]" in shown
    assert not _erased(db_url) and _generation(db_url) == generation
    # and yes
    status, out, _ = run_on_terminal(
        ledger_env, "talents", "forget", "T1", "--actor", "dpo", typed="y\n"
    )
    assert status == 0 and "erased the personal data of talent T1" in out
    assert _erased(db_url)
    status, _, _ = run_on_terminal(ledger_env, "projections", "rebuild", typed="yes\n")
    assert status == 0 and _generation(db_url) == [g + 1 for g in generation]
    # --yes asks nothing; a script (no terminal) is not asked either (CONTRACT §8)
    status, _, shown = run_on_terminal(ledger_env, "projections", "rebuild", "--yes")
    assert status == 0 and "[y/N]" not in shown
    assert cli("projections", "rebuild").returncode == 0
    assert _generation(db_url) == [g + 3 for g in generation]


def test_progress_bars_are_drawn_on_a_terminal_only(
    ledger: Ledger, cli: Cli, ledger_env: dict[str, str]
) -> None:
    events = record_some_events(ledger)
    for args, label, unit in [
        (("projections", "rebuild", "--yes"), "rebuilding", "positions"),
        (("audit", "verify"), "verifying", "positions"),
    ]:
        status, _, shown = run_on_terminal(ledger_env, *args)
        assert status == 0, shown
        assert re.search(rf"{label} \[#{{30}}\] {events:,}/{events:,} {unit}", shown), shown
        piped = cli(*args)
        assert piped.returncode == 0 and label not in piped.stderr, piped.stderr
        assert run_on_terminal(ledger_env, *args, "--json")[2].count(label) == 0
