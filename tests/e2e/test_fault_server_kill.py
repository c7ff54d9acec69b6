"""A `ledger serve` killed with SIGKILL while clients write, and its replacement.

Clients keep every request they have not seen answered and send it again, with the
same id and body, to a second server on the same database (docs/api.md, "Conventions": a create
repeated with the same body answers 200 `Idempotent-Replayed`, or 201 if the first
attempt never landed). Whatever the kill interrupted, each acknowledged write must
be stored exactly once, nothing half-stored, and the books must read exactly as the
commands, applied once each in order, would leave them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.conftest import Server
from tests.integration.test_projections import assert_same_tables, dump

pytestmark = pytest.mark.db

CLIENTS = 6
ROUNDS = 12  # each client proposes and pays this many times, alternating
LINE_ROOM = 10  # proposals of 1000.00 that fit each client's own 10000.00 line
PAYABLE = 10  # payments of 500.00 that fit each client's own 5000.00 grant
KILL_AFTER = 40  # acknowledged requests before the first server is killed
# the events an accepted proposal or payment records, and the id each one names
ID_OF = {
    "Grant.Proposed": "grant_id",
    "FundYear.Reserved": "benefit_id",  # a grant's reservation names it so
    "Payment.Recorded": "payment_id",
    "Grant.Paid": "payment_id",
    "BankReference.Claimed": "bank_reference",
}

Cli = Callable[..., subprocess.CompletedProcess[str]]


@dataclass
class Request:
    role: str
    path: str
    body: dict[str, Any]
    attempts: int = 0
    cut_off: int = 0  # attempts that got no answer: connection refused, reset, closed
    response: httpx.Response | None = None
    answered_by: int = -1  # the generation of the server that answered


@dataclass
class Cluster:
    """The server clients talk to now; replaced once, when the first one is killed."""

    server: Server
    generation: int = 0
    acknowledged: int = 0
    errors: list[BaseException] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def current(self) -> tuple[int, str]:
        with self.cond:
            return self.generation, self.server.url

    def replace(self, server: Server) -> None:
        with self.cond:
            self.server = server
            self.generation += 1
            self.cond.notify_all()

    def wait_for_replacement(self, generation: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.generation > generation, timeout=60), (
                f"server {generation} failed and was never replaced"
            )

    def acknowledge(self) -> None:
        with self.cond:
            self.acknowledged += 1
            self.cond.notify_all()

    def wait_acknowledged(self, n: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.acknowledged >= n, timeout=60), (
                self.acknowledged,
                self.errors,
            )


def send_until_answered(cluster: Cluster, keys: dict[str, str], requests: list[Request]) -> None:
    """One client: each request in turn, re-sent unchanged until some server answers.
    A 503 asks for a retry; any other status is the answer."""
    try:
        with httpx.Client(timeout=30) as http:
            for req in requests:
                while req.response is None:
                    generation, url = cluster.current()
                    req.attempts += 1
                    try:
                        r = http.post(
                            url + req.path,
                            json=req.body,
                            headers={"Authorization": f"Bearer {keys[req.role]}"},
                        )
                    except httpx.TransportError:
                        req.cut_off += 1
                        cluster.wait_for_replacement(generation)
                        continue
                    if r.status_code == 503:
                        time.sleep(min(float(r.headers.get("Retry-After", "1")), 2.0))
                        continue
                    req.response, req.answered_by = r, generation
                    cluster.acknowledge()
    except BaseException as e:  # reported by the test, not lost in the thread
        cluster.errors.append(e)


def grant_id(client: int, i: int) -> str:
    return f"GK-{client}-{i}"


def payment_id(client: int, i: int) -> str:
    return f"PK-{client}-{i}"


def client_requests(client: int) -> list[Request]:
    """Proposals on the client's own line and payments on its own approved grant,
    alternating: the last proposals exceed the line, the last payments the grant."""
    requests = []
    for i in range(ROUNDS):
        requests.append(
            Request(
                "clerk",
                "/v1/grants",
                {
                    "grant_id": grant_id(client, i),
                    "talent_id": f"T-{client}",
                    "fund_year": 2024,
                    "programme": f"support_{client}",
                    "amount": "1000.00",
                    "policy_reference": "人才项目扶持办法",
                    "reason": f"第{i + 1}期项目扶持",
                },
            )
        )
        requests.append(
            Request(
                "treasury",
                "/v1/payments",
                {
                    "payment_id": payment_id(client, i),
                    "grant_id": f"GP-{client}",
                    "amount": "500.00",
                    "value_date": f"2024-03-{i + 1:02d}",
                    "bank_reference": f"BRK-{client}-{i}",
                },
            )
        )
    return requests


def set_up(server: Server, keys: dict[str, str]) -> None:
    """Fund year 2024 with a settling-in line and one project line per client; per
    client a talent and an approved 5000.00 settling-in grant to pay from."""

    def post(role: str, path: str, body: dict[str, Any], status: int = 201) -> None:
        r = httpx.post(
            server.url + path, json=body, headers={"Authorization": f"Bearer {keys[role]}"}
        )
        assert r.status_code == status, r.text

    post("admin", "/v1/fund-years", {"year": 2024, "currency": "CNY"})
    lines = [("settling_in", "1000000")] + [(f"support_{c}", "10000") for c in range(CLIENTS)]
    for n, (programme, amount) in enumerate(lines):
        post(
            "admin",
            "/v1/fund-years/2024/appropriations",
            {
                "appropriation_id": f"A-{n}",
                "programme": programme,
                "kind": "cash",
                "amount": amount,
                "reference": f"嘉财预〔2024〕{n + 1}号",
            },
        )
    for c in range(CLIENTS):
        post(
            "clerk",
            "/v1/talents",
            {
                "talent_id": f"T-{c}",
                "name": f"人才{c}",
                "category": "doctorate",
                "employer": "某研究院",
                "arrived_on": "2023-07-01",
                "service_commitment_until": "2028-06-30",
            },
        )
        post(
            "clerk",
            "/v1/grants",
            {
                "grant_id": f"GP-{c}",
                "talent_id": f"T-{c}",
                "fund_year": 2024,
                "programme": "settling_in",
                "amount": "5000.00",
                "policy_reference": "安家补贴办法",
                "reason": "安家补贴",
            },
        )
        post("approver", f"/v1/grants/GP-{c}/approve", {}, status=200)


def stored_events(db_url: str, after: int) -> list[tuple[str, dict[str, Any]]]:
    """(event type, payload) of every event after position `after`, from the raw table."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT topic, state FROM ledger_events WHERE notification_id > %s "
            "ORDER BY notification_id",
            (after,),
        ).fetchall()
    return [(topic.split(":", 1)[1], json.loads(bytes(state))) for topic, state in rows]


def head(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()
    assert row is not None
    return int(row[0])


def drive_through_a_kill(
    first: Server, start_second: Callable[[], Server], keys: dict[str, str]
) -> tuple[Server, dict[int, list[Request]]]:
    """Every client's requests, answered at last; the first server SIGKILLed (its
    whole process group) once KILL_AFTER were answered, the clients then retrying
    against a second one. The second server, and each client's requests."""
    cluster = Cluster(first)
    work = {c: client_requests(c) for c in range(CLIENTS)}
    threads = [
        threading.Thread(target=send_until_answered, args=(cluster, keys, work[c]))
        for c in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    try:
        cluster.wait_acknowledged(KILL_AFTER)
        os.killpg(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        cluster.replace(start_second())
    finally:
        for t in threads:
            t.join(90)
    assert not any(t.is_alive() for t in threads)
    assert not cluster.errors, cluster.errors
    return cluster.server, work


def assert_answers(work: dict[int, list[Request]]) -> None:
    """The writes that fit were accepted (201, or a 200 replay of an attempt that had
    landed unanswered); the rest refused, as if each had been sent once."""
    requests = [r for c in range(CLIENTS) for r in work[c]]
    assert sum(r.answered_by == 0 for r in requests) >= KILL_AFTER
    assert any(r.answered_by == 1 for r in requests), "every request finished before the kill"
    assert any(r.cut_off for r in requests), "the kill interrupted no request"
    for c in range(CLIENTS):
        for i in range(ROUNDS):
            proposal, payment = work[c][2 * i], work[c][2 * i + 1]
            for req, fits, code in (
                (proposal, i < LINE_ROOM, "budget_exceeded"),
                (payment, i < PAYABLE, "overpayment"),
            ):
                r = req.response
                assert r is not None
                if not fits:
                    assert (r.status_code, r.json()["code"]) == (409, code), r.text
                    continue
                assert r.status_code in (200, 201), r.text
                replayed = r.headers.get("Idempotent-Replayed") == "true"
                assert replayed == (r.status_code == 200), r.headers
                assert not replayed or req.cut_off, "a replay of nothing sent before"
                assert {k: r.json()[k] for k in req.body} == req.body, r.text


def assert_stored_once(db_url: str, after: int) -> None:
    """In the raw event table: each accepted id's events once, none of a refused id,
    and not one event more than the accepted commands record."""
    events = stored_events(db_url, after)
    per_id = Counter((kind, payload[ID_OF[kind]]) for kind, payload in events if kind in ID_OF)
    for c in range(CLIENTS):
        for i in range(ROUNDS):
            g, p = grant_id(c, i), payment_id(c, i)
            want_g, want_p = int(i < LINE_ROOM), int(i < PAYABLE)
            assert (per_id["Grant.Proposed", g], per_id["FundYear.Reserved", g]) == (
                want_g,
                want_g,
            ), g
            assert (
                per_id["Payment.Recorded", p],
                per_id["Grant.Paid", p],
                per_id["BankReference.Claimed", f"BRK-{c}-{i}"],
            ) == (want_p, want_p, want_p), p
    assert len(events) == CLIENTS * (LINE_ROOM * 2 + PAYABLE * 3), Counter(k for k, _ in events)


def assert_books(server: Server, auditor_key: str, position: int) -> None:
    """The balances read through `server` are the commands' applied once each: every
    line committed exactly the amounts of its grants, every grant paid in full and
    no more, the refused ids unknown."""
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {auditor_key}"}, timeout=30
    ) as auditor:

        def get(path: str, status: int = 200) -> Any:
            r = auditor.get(path, params={"min_position": position})
            assert r.status_code == status, r.text
            return r.json()

        lines = {line["programme"]: line for line in get("/v1/fund-years/2024")["lines"]}
        for c in range(CLIENTS):
            granted = [get(f"/v1/grants/{grant_id(c, i)}") for i in range(LINE_ROOM)]
            assert {g["status"] for g in granted} == {"proposed"}
            line = lines[f"support_{c}"]
            assert Decimal(line["committed"]) == sum(Decimal(g["amount"]) for g in granted)
            assert (line["appropriated"], line["committed"], line["available"]) == (
                "10000.00",
                "10000.00",
                "0.00",
            )
            for i in range(LINE_ROOM, ROUNDS):
                get(f"/v1/grants/{grant_id(c, i)}", status=404)
            paid = get(f"/v1/grants/GP-{c}")
            assert (paid["amount"], paid["net_paid"], paid["payable"]) == (
                "5000.00",
                "5000.00",
                "0.00",
            )
            for i in range(ROUNDS):
                get(f"/v1/payments/{payment_id(c, i)}", status=200 if i < PAYABLE else 404)
            balances = {b["programme"]: b for b in get(f"/v1/talents/T-{c}")["balances"]}
            assert {
                programme: (b["granted"], b["approved"], b["paid"], b["outstanding"])
                for programme, b in balances.items()
            } == {
                "settling_in": ("5000.00", "5000.00", "5000.00", "0.00"),
                f"support_{c}": ("10000.00", "0.00", "0.00", "0.00"),
            }
        settling = lines["settling_in"]
        total = Decimal(5000 * CLIENTS)
        assert Decimal(settling["committed"]) == Decimal(settling["net_paid"]) == total
        assert get("/v1/audit/verify")["ok"] is True


def test_a_server_killed_mid_write_loses_and_doubles_nothing_when_clients_retry(
    serve: Callable[..., Server], make_key: Callable[..., str], cli: Cli, db_url: str
) -> None:
    # two people (a proposer may not approve); one key per role costs a process each
    office = make_key("fault-office", "admin", "clerk", "treasury", "auditor")
    keys = {"admin": office, "clerk": office, "treasury": office, "auditor": office}
    keys["approver"] = make_key("fault-approver", "approver")
    first = serve()
    set_up(first, keys)
    set_up_head = head(db_url)

    second, work = drive_through_a_kill(first, serve, keys)

    assert_answers(work)
    assert_stored_once(db_url, set_up_head)
    position = max(
        int(r.response.headers["Ledger-Position"])
        for requests in work.values()
        for r in requests
        if r.response is not None and r.response.status_code < 300
    )
    assert position == head(db_url)
    assert_books(second, keys["auditor"], position)
    verified = cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # the read models the killed server's worker left, continued by the second
    # server's, are what a rebuild from the events gives
    second.stop()
    incremental = dump(db_url)
    rebuilt = cli("projections", "rebuild", "--yes")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert_same_tables(dump(db_url), incremental)
