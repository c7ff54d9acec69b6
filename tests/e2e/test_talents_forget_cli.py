"""`ledger talents forget` against a running `ledger serve`, and the master key's checks,
as an operator meets them."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.usecases.personal import new_master_key
from tests.e2e.conftest import Server, run_ledger

pytestmark = pytest.mark.db

Cli = Callable[..., subprocess.CompletedProcess[str]]


def test_forget_erases_a_name_on_the_running_server_and_the_chain_still_verifies(
    serve: Callable[..., Server], cli: Cli, make_key: Callable[..., str]
) -> None:
    server = serve()
    clerk = {"Authorization": f"Bearer {make_key('clerk', 'clerk', 'auditor')}"}

    def talent(**params: Any) -> dict[str, Any]:
        response = httpx.get(f"{server.url}/v1/talents/T1", headers=clerk, params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    registered = httpx.post(
        f"{server.url}/v1/talents",
        headers=clerk,
        json={
            "talent_id": "T1",
            "name": "李四",
            "category": "doctorate",
            "employer": "某研究院",
            "arrived_on": "2025-01-05",
            "service_commitment_until": "2030-01-04",
        },
    )
    assert registered.status_code == 201, registered.text
    assert talent(min_position=registered.headers["Ledger-Position"])["name"] == "李四"

    done = cli("talents", "forget", "T1", "--actor", "dpo", "--yes")
    assert done.returncode == 0, done.stderr
    assert "T1" in done.stdout
    erased = talent()
    assert (erased["name"], erased["personal_data_erased"]) == (None, True)
    history = httpx.get(f"{server.url}/v1/talents/T1/history", headers=clerk).json()["items"]
    assert [e["event_type"] for e in history][-1] == "Talent.PersonalDataErased"

    verified = cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert cli("talents", "forget", "T1", "--actor", "dpo", "--yes").returncode == 0, (
        "forgetting twice is harmless"
    )
    missing = cli("talents", "forget", "T404", "--actor", "dpo", "--yes")
    assert missing.returncode == 1
    assert "T404" in missing.stderr


def test_a_wrong_or_missing_master_key_stops_a_command_with_a_clear_error(
    cli: Cli, ledger_env: dict[str, str]
) -> None:
    assert cli("audit", "verify").returncode == 0  # seals the check with the test key

    wrong = run_ledger({**ledger_env, "LEDGER_MASTER_KEY": new_master_key()}, "audit", "verify")
    assert wrong.returncode == 78  # EX_CONFIG
    assert "LEDGER_MASTER_KEY is not the key" in wrong.stderr
    # unset with an external database: refused, never a key of this host's own made up
    missing = run_ledger(
        {k: v for k, v in ledger_env.items() if k != "LEDGER_MASTER_KEY"}, "audit", "verify"
    )
    assert missing.returncode == 78
    assert "LEDGER_MASTER_KEY is not set" in missing.stderr
    assert not (Path(ledger_env["LEDGER_DATA_DIR"]) / "master.key").exists()
    malformed = run_ledger({**ledger_env, "LEDGER_MASTER_KEY": "c2hvcnQ="}, "audit", "verify")
    assert malformed.returncode == 78
    assert "base64 of 32 bytes" in malformed.stderr
    assert "Traceback" not in wrong.stderr + missing.stderr + malformed.stderr
