"""A slow reader of a large export, against the real `ledger serve`: the file is whole
under its 200 however long the client pauses, and while it pauses no database
transaction waits on it and writers go on."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable

import httpx
import psycopg

from tests.e2e.conftest import Server

BATCHES = 30  # 30,000 talents: an audit trail of some 9 MB, far more than socket buffers
PAUSE_SECONDS = 8


def _talents(batch: int) -> dict[str, object]:
    operations = [
        {
            "op": "talent.register",
            "body": {
                "talent_id": f"T-{batch}-{n}",
                "name": f"人才{batch}-{n}",
                "category": "master",
                "employer": "市第一人民医院",
                "arrived_on": "2024-01-02",
                "service_commitment_until": "2027-01-01",
            },
        }
        for n in range(1000)
    ]
    return {"atomic": True, "operations": operations}


def test_a_slow_reader_gets_the_whole_file_and_holds_nothing(
    serve: Callable[..., Server], make_key: Callable[..., str], db_url: str
) -> None:
    clerk = {"Authorization": f"Bearer {make_key('clerk', 'clerk')}"}
    auditor = {"Authorization": f"Bearer {make_key('auditor', 'auditor')}"}
    server = serve()
    with httpx.Client(base_url=server.url, timeout=120) as c:
        for batch in range(BATCHES):
            r = c.post("/v1/batch", json=_talents(batch), headers=clerk)
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
            write = c.post("/v1/batch", json=_talents(BATCHES), headers=clerk)
            assert write.status_code == 200
            assert time.monotonic() - started < 5
            body += b"".join(chunks)
    assert size > 5_000_000
    assert len(body) == size
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8"), newline="")))
    assert [int(row["Position"]) for row in rows] == list(range(1, at + 1))
    assert body.endswith(b"\r\n")
