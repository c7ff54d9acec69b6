"""Schemathesis from outside, as the issue ran it: `st run .../openapi.json --checks all`,
40 examples per operation, every default phase (examples, coverage, fuzzing, and the
stateful phase along the document's links), a key holding admin, clerk and auditor, on
a fresh database, against the real `ledger serve`. It must find nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import ROOT, Server


def test_schemathesis_finds_nothing(
    serve: Callable[..., Server], make_key: Callable[..., str], tmp_path: Path
) -> None:
    key = make_key("fuzzer", "admin", "clerk", "auditor")
    server = serve()
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "40",
            "--seed",
            "20261206",
            "--header",
            f"Authorization: Bearer {key}",
        ],
        cwd=ROOT,  # its schemathesis.toml
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = done.stdout + done.stderr
    (tmp_path / "schemathesis.txt").write_text(report)
    assert done.returncode == 0, report[-6000:]
    assert "failures" not in report.rsplit("SUMMARY", 1)[-1], report[-3000:]
