"""A slow reader of a large export, against the real `ledger serve`: the file is whole
under its 200 however long the client pauses, and while it pauses no database
transaction waits on it and writers go on."""

from __future__ import annotations

import csv
import io
import socket
import time
from collections.abc import Callable

import httpx
import psycopg

from tests.e2e.conftest import Server

#: 3,000 proposals, each reason 2,880 bytes: an audit trail of some 9 MB, more than the
#: server's socket buffer (4 MB at most here) and the client's (64 KB, set below) hold;
#: batches of 300, each under the 1 MiB a body may be
BATCHES, PER_BATCH = 10, 300
PAUSE_SECONDS = 8
REASON = "为引进人才发放安家补贴，依据市人才新政第十二条。" * 40


def _proposal(grant_id: str) -> dict[str, str | int]:
    return {
        "grant_id": grant_id,
        "talent_id": "T1",
        "fund_year": 2024,
        "programme": "settling_in",
        "amount": "1.00",
        "policy_reference": "市人才新政",
        "reason": REASON,
    }


def _proposals(batch: int) -> dict[str, object]:
    operations = [
        {"op": "grant.propose", "body": _proposal(f"G-{batch}-{n}")} for n in range(PER_BATCH)
    ]
    return {"atomic": True, "operations": operations}


def _fund_year_and_talent(c: httpx.Client, admin: dict[str, str], clerk: dict[str, str]) -> None:
    for path, body, auth in (
        ("/v1/fund-years", {"year": 2024, "currency": "CNY"}, admin),
        (
            "/v1/fund-years/2024/appropriations",
            {
                "appropriation_id": "AP",
                "programme": "settling_in",
                "kind": "cash",
                "amount": "1000000",
                "reference": "财预〔2024〕12号",
            },
            admin,
        ),
        (
            "/v1/talents",
            {
                "talent_id": "T1",
                "name": "人才",
                "category": "master",
                "employer": "市第一人民医院",
                "arrived_on": "2024-01-02",
                "service_commitment_until": "2027-01-01",
            },
            clerk,
        ),
    ):
        r = c.post(path, json=body, headers=auth)
        assert r.status_code == 201, r.text[:300]


def test_a_slow_reader_gets_the_whole_file_and_holds_nothing(
    serve: Callable[..., Server], make_key: Callable[..., str], db_url: str
) -> None:
    admin = {"Authorization": f"Bearer {make_key('admin', 'admin')}"}
    clerk = {"Authorization": f"Bearer {make_key('clerk', 'clerk')}"}
    auditor = {"Authorization": f"Bearer {make_key('auditor', 'auditor')}"}
    server = serve()
    small_buffer = httpx.HTTPTransport(
        socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)]
    )
    with httpx.Client(base_url=server.url, timeout=120, transport=small_buffer) as c:
        _fund_year_and_talent(c, admin, clerk)
        for batch in range(BATCHES):
            r = c.post("/v1/batch", json=_proposals(batch), headers=clerk)
            assert r.status_code == 200, r.text[:300]
        head = int(r.headers["Ledger-Position"])
        params = {"lang": "en", "min_position": head}
        with c.stream("GET", "/v1/exports/audit-trail.csv", params=params, headers=auditor) as r:
            assert r.status_code == 200
            size = int(r.headers["Content-Length"])
            at = int(r.headers["Ledger-Position"])
            chunks = r.iter_raw(64 * 1024)
            body = next(chunks)
            time.sleep(PAUSE_SECONDS)
            # meanwhile no transaction stays open (the projection worker's last a moment
            # each), and a write goes through
            with psycopg.connect(db_url) as conn:
                held = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND xact_start < now() - interval '2 seconds'"
                ).fetchone()
            assert held == (0,)
            started = time.monotonic()
            with httpx.Client(base_url=server.url, timeout=30) as other:
                write = other.post("/v1/grants", json=_proposal("G-after"), headers=clerk)
            assert write.status_code == 201, write.text[:300]
            assert time.monotonic() - started < 5
            body += b"".join(chunks)
    assert size > 8_000_000
    assert len(body) == size
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8"), newline="")))
    assert [int(row["Position"]) for row in rows] == list(range(1, at + 1))
    assert body.endswith(b"\r\n")
