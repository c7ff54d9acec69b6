"""`ledger keys create` and `ledger serve`, run as real processes over real HTTP."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from projections.waits import WAITING_AT_ONCE
from tests.e2e.conftest import LEDGER, HeldPort, Server


def test_keys_create_prints_the_key_last_and_stores_only_its_hash(
    cli: Callable[..., subprocess.CompletedProcess[str]], db_url: str
) -> None:
    done = cli(
        "keys",
        "create",
        "--actor",
        "test-admin",
        "--name",
        "wu",
        "--role",
        "clerk",
        "--role",
        "approver",
    )

    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    assert len(key) >= 40 and " " not in key
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT key_hash, name, roles FROM api_keys").fetchall()
    assert [(name, sorted(roles)) for _, name, roles in rows] == [("wu", ["approver", "clerk"])]
    assert key not in rows[0][0]
    dump = subprocess.run(
        ["pg_dump", "--data-only", db_url], capture_output=True, text=True, check=False
    )
    assert dump.returncode != 0 or key not in dump.stdout


def test_keys_create_refuses_an_unknown_role(
    cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    done = cli("keys", "create", "--actor", "test-admin", "--name", "x", "--role", "root")
    assert done.returncode != 0
    assert "root" in done.stderr


def test_a_grant_is_proposed_approved_and_paid_through_the_real_server(
    serve: Callable[..., Server], make_key: Callable[..., str]
) -> None:
    keys = {
        r: make_key(f"e2e-{r}", r) for r in ("admin", "clerk", "approver", "treasury", "auditor")
    }
    server = serve()

    def post(role: str, path: str, body: dict[str, object]) -> httpx.Response:
        return httpx.post(
            server.url + path,
            json=body,
            headers={"Authorization": f"Bearer {keys[role]}", "X-Request-Id": "e2e-req-1"},
        )

    assert post("admin", "/v1/fund-years", {"year": 2025, "currency": "CNY"}).status_code == 201
    assert (
        post(
            "admin",
            "/v1/fund-years/2025/appropriations",
            {
                "appropriation_id": "A1",
                "programme": "rent_subsidy",
                "kind": "cash",
                "amount": "36000",
                "reference": "嘉财预〔2025〕1号",
            },
        ).status_code
        == 201
    )
    assert (
        post(
            "clerk",
            "/v1/talents",
            {
                "talent_id": "T1",
                "name": "李四",
                "category": "doctorate",
                "employer": "某研究院",
                "arrived_on": "2025-01-05",
                "service_commitment_until": "2030-01-04",
            },
        ).status_code
        == 201
    )
    assert (
        post(
            "clerk",
            "/v1/grants",
            {
                "grant_id": "G1",
                "talent_id": "T1",
                "fund_year": 2025,
                "programme": "rent_subsidy",
                "amount": "18000.00",
                "policy_reference": "租房补贴实施细则",
                "reason": "12个月租房补贴",
            },
        ).status_code
        == 201
    )
    assert post("approver", "/v1/grants/G1/approve", {"note": "符合条件"}).status_code == 200
    paid = post(
        "treasury",
        "/v1/payments",
        {
            "payment_id": "P1",
            "grant_id": "G1",
            "amount": "1500.00",
            "value_date": "2025-02-01",
            "bank_reference": "BR-1",
        },
    )
    assert paid.status_code == 201, paid.text
    assert paid.headers["X-Request-Id"] == "e2e-req-1"

    talent = httpx.get(
        f"{server.url}/v1/talents/T1",
        params={"min_position": paid.headers["Ledger-Position"]},
        headers={"Authorization": f"Bearer {keys['auditor']}"},
    )
    assert talent.status_code == 200, talent.text
    (balance,) = talent.json()["balances"]
    assert (balance["approved"], balance["paid"], balance["outstanding"]) == (
        "18000.00",
        "1500.00",
        "16500.00",
    )
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["status"] == "ready" and ready["head_position"] >= int(
        paid.headers["Ledger-Position"]
    )
    # decided by the writing process, which stamped each event with who asked, and how
    history = httpx.get(
        f"{server.url}/v1/talents/T1/history",
        params={"min_position": paid.headers["Ledger-Position"]},
        headers={"Authorization": f"Bearer {keys['auditor']}"},
    )
    assert history.status_code == 200, history.text
    stamped = {(e["event_type"], e["actor"], e["request_id"]) for e in history.json()["items"]}
    assert ("Payment.Recorded", "e2e-treasury", "e2e-req-1") in stamped
    assert ("Grant.Approved", "e2e-approver", "e2e-req-1") in stamped

    server.stop()
    assert server.proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    assert "Application shutdown complete" in server.log.read_text()
    lines = [
        json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")
    ]
    requests = [line for line in lines if line.get("event") == "request"]
    # one line per request: the API's own, not uvicorn's access line as well
    assert not [line for line in lines if line.get("logger") == "uvicorn.access"]
    assert {"method", "route", "status", "duration_ms", "actor", "request_id"} <= set(requests[-1])
    assert any(
        r["route"] == "/v1/grants/{grant_id}/approve" and r["actor"] == "e2e-approver"
        for r in requests
    )
    # its writer and its projection worker, once each, in processes of their own: the
    # API processes run no projection worker
    children = [line["event"] for line in lines if line.get("logger") == "api.children"]
    assert sorted(children) == ["projections_started", "writer_started"]
    workers = [line for line in lines if line.get("logger") == "projections.worker"]
    assert [line["event"] for line in workers][:2] == [
        "projection_worker_started",
        "projection_worker_leading",
    ]
    assert [line["event"] for line in workers].count("projection_worker_started") == 1
    text = server.log.read_text()
    assert "李四" not in text
    assert not any(key in text for key in keys.values())


def test_keys_list_shows_no_secret_and_revoke_reaches_both_server_processes_within_2_s(
    cli: Callable[..., subprocess.CompletedProcess[str]],
    serve: Callable[..., Server],
    make_key: Callable[..., str],
) -> None:
    key = make_key("auditor-sun", "auditor")
    server = serve("--workers", "2")
    headers = {"Authorization": f"Bearer {key}"}
    for _ in range(8):  # known, and cached, in both worker processes
        assert httpx.get(f"{server.url}/v1/events", headers=headers).status_code == 200

    listed = cli("keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert "auditor-sun\tauditor\t" in listed.stdout and key not in listed.stdout

    revoked = cli("keys", "revoke", "auditor-sun", "--actor", "test-admin")
    assert revoked.returncode == 0, revoked.stderr
    deadline = time.monotonic() + 2.0
    answers = []
    while time.monotonic() < deadline + 0.5:
        answers.append(httpx.get(f"{server.url}/v1/events", headers=headers).status_code)
        if answers[-4:] == [401] * 4:  # several answers: both processes refuse it
            break
        time.sleep(0.05)
    assert answers[-4:] == [401] * 4, answers
    assert time.monotonic() < deadline + 0.5
    assert cli("keys", "revoke", "nobody", "--actor", "test-admin").returncode == 1


def test_keys_create_refuses_a_name_taken_and_approver_with_treasury(
    cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    assert (
        cli(
            "keys", "create", "--actor", "test-admin", "--name", "zhao", "--role", "treasury"
        ).returncode
        == 0
    )
    taken = cli("keys", "create", "--actor", "test-admin", "--name", "zhao", "--role", "clerk")
    assert taken.returncode == 2 and "zhao exists" in taken.stderr
    both = cli(
        "keys",
        "create",
        "--actor",
        "test-admin",
        "--name",
        "chen",
        "--role",
        "approver",
        "--role",
        "treasury",
    )
    assert both.returncode == 2 and "approver and treasury" in both.stderr


def test_serve_demo_mints_demo_keys_only_into_an_empty_ledger(
    cli: Callable[..., subprocess.CompletedProcess[str]],
    serve: Callable[..., Server],
    ledger_env: dict[str, str],
    db_url: str,
) -> None:
    assert (
        cli(
            "keys", "create", "--actor", "test-admin", "--name", "zhou", "--role", "admin"
        ).returncode
        == 0
    )
    server = serve("--demo")
    server.stop()
    assert "holds events already" in server.log.read_text()
    assert not (Path(ledger_env["LEDGER_DATA_DIR"]) / "demo-keys.sh").exists()
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT name FROM api_keys").fetchall() == [("zhou",)]
        assert conn.execute("SELECT count(*) FROM ledger_events").fetchone() == (1,)


def _announce_a_large_body(port: int, authorization: str | None) -> bytes:
    """Send the head of a 20 MiB statement upload and 1 KiB of it, then wait (at most
    3 s) for what the server answers before the rest."""
    head = [
        "POST /v1/reconciliations HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: text/csv",
        f"Content-Length: {20 * 1024 * 1024}",
    ]
    if authorization:
        head.append(f"Authorization: {authorization}")
    with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + b"x" * 1024)
        try:
            return conn.recv(4096)
        except TimeoutError:
            return b""


def test_an_anonymous_client_is_refused_before_its_body_is_read(
    serve: Callable[..., Server], make_key: Callable[..., str]
) -> None:
    server = serve()
    for authorization in (None, "Bearer tl_not_a_key"):
        started = time.monotonic()
        answer = _announce_a_large_body(server.port, authorization)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert time.monotonic() - started < 2
    # a key holder's upload is read (so the server waits for the rest of it)
    treasury = make_key("treasury", "treasury")
    assert _announce_a_large_body(server.port, f"Bearer {treasury}") == b""


def test_past_its_concurrency_limit_the_server_answers_503_at_once_and_drops_idle_connections(
    serve: Callable[..., Server], make_key: Callable[..., str]
) -> None:
    server = serve("--limit-concurrency", "3", "--timeout-keep-alive", "1")
    treasury = f"Bearer {make_key('treasury', 'treasury')}"
    held = []
    for _ in range(3):  # three uploads the server waits on, as a slow client's would
        conn = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        head = (
            "POST /v1/reconciliations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
            f"Authorization: {treasury}\r\nContent-Length: 100000\r\n\r\n"
        )
        conn.sendall(head.encode())
        held.append(conn)
    time.sleep(0.5)
    started = time.monotonic()
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 503
    assert time.monotonic() - started < 1
    for conn in held:
        conn.close()
    time.sleep(0.5)
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    # an idle keep-alive connection is closed after --timeout-keep-alive
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as idle:
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b'{"status":"ok"}'):
            answer += idle.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        time.sleep(2)
        assert idle.recv(4096) == b""  # closed by the server


def _healthz_count(server: Server, key: str) -> float:
    answer = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name == "ledger_http_requests_total" and sample.labels["route"] == "/healthz"
    )


def test_metrics_add_up_every_worker_process(
    serve: Callable[..., Server], make_key: Callable[..., str]
) -> None:
    server = serve("--workers", "2")
    auditor = make_key("auditor", "auditor")
    before = _healthz_count(server, auditor)
    for _ in range(40):  # a connection each: the two processes share them
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert _healthz_count(server, auditor) - before == 40


def test_forty_reads_waiting_for_a_position_leave_the_server_answering(
    serve: Callable[..., Server],
    make_key: Callable[..., str],
    ledger_env: dict[str, str],
    db_url: str,
    tmp_path: Path,
) -> None:
    """At most `WAITING_AT_ONCE` reads of a process wait for `min_position`, each woken
    by the projection worker's notification (here from another process); the rest are
    refused at once, and `/healthz` and other reads keep being answered meanwhile."""
    ledger_env["LEDGER_PROJECTIONS"] = "separate"
    server = serve("--workers", "1")
    admin = {"Authorization": f"Bearer {make_key('admin', 'admin')}"}
    with (tmp_path / "projections.log").open("wb") as out:
        projections = subprocess.Popen(
            [LEDGER, "projections", "run"], env=ledger_env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _until_projected(db_url, _head(db_url))
        projections.send_signal(signal.SIGSTOP)  # a worker that has fallen behind
        r = httpx.post(
            f"{server.url}/v1/fund-years", json={"year": 2025, "currency": "CNY"}, headers=admin
        )
        assert r.status_code == 201, r.text
        read = f"{server.url}/v1/fund-years/2025?min_position={r.headers['Ledger-Position']}"
        with ThreadPoolExecutor(40) as pool:
            answers = [pool.submit(httpx.get, read, headers=admin, timeout=30) for _ in range(40)]
            deadline = time.monotonic() + 10  # the refusals come at once, on a busy machine too
            while sum(a.done() for a in answers) < 40 - WAITING_AT_ONCE:
                assert time.monotonic() < deadline, [a.done() for a in answers]
                time.sleep(0.05)
            time.sleep(0.5)  # time enough for a read that did not wait to be answered
            refused = [a.result() for a in answers if a.done()]
            assert len(refused) == 40 - WAITING_AT_ONCE, [a.text for a in refused]
            for answer in refused:
                assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
                assert "waiting for the read models" in answer.json()["detail"]
            for path in ("/healthz", "/v1/fund-years"):
                started = time.monotonic()
                assert httpx.get(server.url + path, headers=admin).status_code == 200
                assert time.monotonic() - started < 1, path
            projections.send_signal(signal.SIGCONT)
            woken = time.monotonic()
            waited = [a.result() for a in answers if a.result() not in refused]
        assert time.monotonic() - woken < 2
        assert [a.status_code for a in waited] == [200] * WAITING_AT_ONCE
    finally:
        projections.send_signal(signal.SIGCONT)
        projections.terminate()
        projections.wait(10)


def _head(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()
        assert row is not None
        return int(row[0])


def _until_projected(db_url: str, position: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(db_url) as conn:
                row = conn.execute("SELECT min(position) FROM projection_tracking").fetchone()
            if row and row[0] is not None and row[0] >= position:
                return
        except psycopg.errors.UndefinedTable:
            pass
        assert time.monotonic() < deadline, "the projection worker never caught up"
        time.sleep(0.1)


class Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that keeps what it is sent."""

    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Collector.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def test_with_an_otlp_endpoint_the_server_sends_its_traces_there(
    serve: Callable[..., Server], make_key: Callable[..., str], ledger_env: dict[str, str]
) -> None:
    collector = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    try:
        ledger_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{collector.server_port}"
        ledger_env["OTEL_BSP_SCHEDULE_DELAY"] = "100"  # ms between batches
        server = serve()
        key = make_key("auditor", "auditor")
        r = httpx.get(
            f"{server.url}/v1/fund-years",
            headers={"Authorization": f"Bearer {key}", "X-Request-Id": "traced-request-1"},
        )
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 10
        while not any(b"traced-request-1" in body for _, body in Collector.received):
            assert time.monotonic() < deadline, Collector.received
            time.sleep(0.1)
        assert {path for path, _ in Collector.received} == {"/v1/traces"}
    finally:
        collector.shutdown()
        collector.server_close()


def test_a_request_head_sent_too_slowly_is_answered_408_and_closed(
    serve: Callable[..., Server],
) -> None:
    server = serve("--timeout-header", "1")
    address = ("127.0.0.1", server.port)
    with socket.create_connection(address, timeout=5) as silent:  # connects, says nothing
        started = time.monotonic()
        assert silent.recv(4096).startswith(b"HTTP/1.1 408")
        assert silent.recv(4096) == b""
        assert 0.9 < time.monotonic() - started < 3
    with socket.create_connection(address, timeout=5) as slow:  # a header a second
        slow.sendall(b"GET /healthz HTTP/1.1\r\n")
        for _ in range(3):
            time.sleep(0.5)
            try:
                slow.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
        assert slow.recv(4096).startswith(b"HTTP/1.1 408")
    with socket.create_connection(address, timeout=5) as kept:  # the second request's head
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b'{"status":"ok"}'):
            answer += kept.recv(4096)
        kept.sendall(b"GET /healthz HTTP/1.1\r\n")
        assert kept.recv(4096).startswith(b"HTTP/1.1 408")
    # a head sent whole and at once is served as ever
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


def test_a_held_port_is_bound_by_its_server_alone() -> None:
    """Between choosing a port and listening on it, a test's server loads its data
    (seconds, with `--demo`): the port is held all that time (`HeldPort`), so no other
    process is given it or can bind it without SO_REUSEADDR, while the server, which
    sets SO_REUSEADDR as uvicorn and PostgreSQL do, can."""
    held = HeldPort()
    try:
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", held.number))
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", held.number))
            server.listen()
    finally:
        held.release()
