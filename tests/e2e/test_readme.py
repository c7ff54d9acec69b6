"""The README's walk-through works as written: its shell block runs word for word
against a real `ledger serve --demo` on a fresh database, and every `# -> ` line is
what the command before it prints (a trailing `...` stands for the rest of a line
that differs from run to run, such as a hash).

Only where the README's reader and this test necessarily differ is the text changed:
the server's port, and where the demo's keys are kept."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import ROOT, Server

STEP = "__step_done__"


def walkthrough() -> list[tuple[str, list[str]]]:
    """The README's walk-through as (commands, the lines they print), in order."""
    readme = (ROOT / "README.md").read_text()
    section = readme.partition("## A walk-through on the demo data")[2]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "the README has no walk-through block"
    steps: list[tuple[str, list[str]]] = []
    code: list[str] = []
    for line in block.group(1).splitlines():
        if line.startswith("# -> "):
            if code:
                steps.append(("\n".join(code), []))
                code = []
            steps[-1][1].append(line.removeprefix("# -> "))
        else:
            code.append(line)
    assert not code or all(not line.strip() or line.startswith("#") for line in code)
    return steps


def _matches(printed: list[str], expected: list[str]) -> bool:
    return len(printed) == len(expected) and all(
        line.startswith(want[:-3]) if want.endswith("...") else line == want
        for line, want in zip(printed, expected, strict=True)
    )


def test_the_walk_through_prints_what_the_readme_says(
    serve: Callable[..., Server], ledger_env: dict[str, str]
) -> None:
    server = serve("--demo")
    data = Path(ledger_env["LEDGER_DATA_DIR"])
    steps = walkthrough()
    assert len(steps) >= 15
    script = "\n".join(f"{code}\necho {STEP}" for code, _ in steps)
    script = script.replace("localhost:8000", f"localhost:{server.port}")
    # the README's ./var is this server's data directory (a CI checkout has no ./var)
    script = script.replace(" var/", f" {data}/")
    done = subprocess.run(
        ["bash", "-c", script],
        env=ledger_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    printed = done.stdout.split(f"{STEP}\n")
    assert len(printed) == len(steps) + 1, done.stderr
    for (code, expected), out in zip(steps, printed, strict=False):
        lines = out.splitlines()
        assert _matches(lines, expected), (
            f"{code}\nprinted {lines}\nexpected {expected}\nstderr {done.stderr}"
            f"\nthe server's log:\n{server.log.read_text()[-4000:]}"
        )
