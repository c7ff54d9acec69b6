"""`make profile`: W1 as it comes, and what each process spends on a proposal.

Runs `ledger serve --workers 2` as it comes on a fresh database of the bench's server
(embedded under var/bench-pg, or LEDGER_BENCH_DATABASE_URL), sends grant proposals
from 32 connections as `make bench` does, and prints each process's CPU a proposal
(the API processes, the writer, the projection process, PostgreSQL's, this load
generator) and how busy the machine was: the breakdown docs/performance.md reports,
repeatable. Then the framework's ceiling app at the rate the ledger reached: what
uvicorn, FastAPI and the kernel alone cost a request at that rate. The processes are
found by what the servers log (each child's start, uvicorn's workers); their CPU is
read from /proc, so this runs on Linux only.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bench.__main__ import (
    CLIENTS,
    ROOT,
    Ceiling,
    Server,
    _settings,
    fresh_database,
    percentile,
    proposals,
    server_url,
    setup_writes,
)
from bench.client import ConstantRate, Load
from ledger.adapters.api_keys import issue_key
from ledger.entrypoints.runtime import open_ledger

SECONDS = float(os.environ.get("LEDGER_PROFILE_SECONDS", "12"))
WARM_UP_SECONDS = 3.0
_UVICORN_WORKER = re.compile(r"Started server process \[(\d+)\]")
_TICK = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


def _cpu_seconds(pid: int) -> float:
    """A process's CPU so far, user and system (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after the command, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICK


def _postgres() -> dict[int, float]:
    """The CPU so far of every PostgreSQL process on the machine, by process id."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found[int(entry.name)] = _cpu_seconds(int(entry.name))
            except OSError:
                continue
    return found


def _postgres_used(before: dict[int, float], after: dict[int, float]) -> float:
    """PostgreSQL's CPU between two readings: a backend started meanwhile counts whole,
    one ended meanwhile is lost (its last figures went with it)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items() if cpu)


def _roles(log: Path) -> dict[int, str]:
    """The server's processes by what its log says of them."""
    roles = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") in ("writer_started", "projections_started"):
            roles[int(record["pid"])] = record["event"].removesuffix("_started")
        elif match := _UVICORN_WORKER.search(str(record.get("event", ""))):
            roles[int(match[1])] = "api"
    return roles


def _machine() -> tuple[int, int]:
    """All the machine's CPU ticks so far, and those idle or waiting for I/O."""
    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(ticks), ticks[3] + ticks[4]


def main() -> int:
    url = fresh_database(server_url(), "ledger_profile")
    ledger = open_ledger(url, _settings(url))
    keys = {role: issue_key(ledger, f"profile-{role}", [role]).key for role in ("admin", "clerk")}
    ledger.close()
    server = Server(url, workers=2, name="profile", projections="in-process")
    try:
        setup_writes(server.url, keys)
        warm_up = Load(server.url, CLIENTS, proposals(keys, secrets.token_hex(3)))
        asyncio.run(warm_up.run(WARM_UP_SECONDS))
        roles = _roles(ROOT / "var" / "bench-profile.log")
        apis = sorted(pid for pid, role in roles.items() if role == "api")

        def sample() -> dict[str, float]:
            by_role = {f"API process {n}": _cpu_seconds(pid) for n, pid in enumerate(apis, start=1)}
            for pid, role in roles.items():
                if role != "api":
                    by_role[f"{role} process"] = _cpu_seconds(pid)
            return by_role

        load = Load(server.url, CLIENTS, proposals(keys, secrets.token_hex(3)))
        wall, used, busy = _measured(lambda: asyncio.run(load.run(SECONDS)), sample)
    finally:
        server.stop()
    print(
        f"W1 as it comes: {load.events / wall:,.0f} proposals/s, p50 "
        f"{percentile(load.latencies, 0.5):.1f} ms, p99 {percentile(load.latencies, 0.99):.1f}"
        f" ms, {load.errors} errors; the machine {100 * busy:.1f} % busy"
    )
    _print_used("CPU a proposal", used, load.events)
    return 0 if load.errors == 0 and _framework_alone(load.events / wall, keys) else 1


def _framework_alone(rate: float, keys: dict[str, str]) -> bool:
    """The framework's ceiling app sent the same proposals at the rate the ledger
    reached (constant-rate): what uvicorn, FastAPI and the kernel cost a request at that
    rate, which is more than at their own ceiling, where each wake-up serves many."""
    ceiling = Ceiling()
    try:
        pids = [int(pid) for pid in _UVICORN_WORKER.findall(ceiling.log_path.read_text())]
        load = ConstantRate(ceiling.url, CLIENTS, rate, proposals(keys, secrets.token_hex(3)))

        def sample() -> dict[str, float]:
            return {"its two processes": sum(_cpu_seconds(pid) for pid in pids)}

        _, used, busy = _measured(lambda: asyncio.run(load.run(SECONDS)), sample)
    finally:
        ceiling.stop()
    print(
        f"the framework alone at {rate:,.0f} requests/s (bench.ceiling_app, constant rate): "
        f"the machine {100 * busy:.1f} % busy"
    )
    _print_used("CPU a request", used, len(load.latencies))
    return load.errors == 0


def _measured(
    run: Callable[[], T], sample: Callable[[], dict[str, float]]
) -> tuple[T, list[tuple[str, float]], float]:
    """What `run` answered; the CPU seconds that `sample`'s processes, PostgreSQL's and
    this load generator used meanwhile; and the machine's busy share."""
    before, postgres_before, machine_before = sample(), _postgres(), _machine()
    generator_before = time.process_time()
    answered = run()
    generator = time.process_time() - generator_before
    after, postgres_after, machine_after = sample(), _postgres(), _machine()
    total, idle = (a - b for a, b in zip(machine_after, machine_before, strict=True))
    used = [
        *((name, after[name] - was) for name, was in before.items()),
        ("PostgreSQL", _postgres_used(postgres_before, postgres_after)),
        ("load generator", generator),
    ]
    return answered, used, 1 - idle / total


def _print_used(title: str, used: list[tuple[str, float]], count: int) -> None:
    print(f"{title:<22}{'ms':>8}")
    for name, seconds in [*used, ("all", sum(seconds for _, seconds in used))]:
        print(f"{name:<22}{seconds / count * 1000:>8.3f}")


if __name__ == "__main__":
    sys.exit(main())
