"""Rules that cannot be raced: many clients, two server processes, one database."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal

import httpx

from tests.e2e.conftest import Server

CLIENTS = 20


def _race(
    servers: list[Server], key: str, path: str, bodies: list[dict[str, object]]
) -> list[httpx.Response]:
    """POST every body at once, alternating between the servers."""
    barrier = threading.Barrier(len(bodies))
    responses: list[httpx.Response | None] = [None] * len(bodies)

    def post(i: int) -> None:
        server = servers[i % len(servers)]
        with httpx.Client(base_url=server.url, timeout=60) as client:
            client.headers["Authorization"] = f"Bearer {key}"
            barrier.wait()
            responses[i] = client.post(path, json=bodies[i])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None for r in responses)
    return [r for r in responses if r is not None]


def _setup(servers: list[Server], keys: dict[str, str], appropriated: str) -> None:
    url = servers[0].url

    def post(role: str, path: str, body: dict[str, object]) -> None:
        r = httpx.post(url + path, json=body, headers={"Authorization": f"Bearer {keys[role]}"})
        assert r.status_code == 201, r.text

    post("admin", "/v1/fund-years", {"year": 2024, "currency": "CNY"})
    post(
        "admin",
        "/v1/fund-years/2024/appropriations",
        {
            "appropriation_id": "A1",
            "programme": "settling_in",
            "kind": "cash",
            "amount": appropriated,
            "reference": "嘉财预〔2024〕1号",
        },
    )
    post(
        "clerk",
        "/v1/talents",
        {
            "talent_id": "T1",
            "name": "测试",
            "category": "master",
            "employer": "某单位",
            "arrived_on": "2024-01-02",
            "service_commitment_until": "2029-01-01",
        },
    )


def _keys(make_key: Callable[..., str]) -> dict[str, str]:
    return {
        role: make_key(f"race-{role}", role)
        for role in ("admin", "clerk", "approver", "treasury", "auditor")
    }


def _fund_year(server: Server, key: str, position: int) -> dict[str, str]:
    r = httpx.get(
        f"{server.url}/v1/fund-years/2024",
        params={"min_position": position},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200, r.text
    (line,) = r.json()["lines"]
    return line


def _grant_body(grant_id: str, amount: str, reason: str = "race") -> dict[str, object]:
    return {
        "grant_id": grant_id,
        "talent_id": "T1",
        "fund_year": 2024,
        "programme": "settling_in",
        "amount": amount,
        "policy_reference": "安家补贴办法",
        "reason": reason,
    }


def _approved_grant(servers: list[Server], keys: dict[str, str], grant_id: str) -> None:
    """Proposed on one server, approved on the other, by two different people."""
    proposed = httpx.post(
        f"{servers[0].url}/v1/grants",
        json=_grant_body(grant_id, "5000.00"),
        headers={"Authorization": f"Bearer {keys['clerk']}"},
    )
    assert proposed.status_code == 201, proposed.text
    approved = httpx.post(
        f"{servers[1].url}/v1/grants/{grant_id}/approve",
        json={},
        headers={"Authorization": f"Bearer {keys['approver']}"},
    )
    assert approved.status_code == 200, approved.text


def _split(responses: list[httpx.Response], accepted: int, code: str) -> int:
    """Assert exactly `accepted` went through and the rest were refused with `code`;
    the position of the last accepted write."""
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * accepted + [409] * (len(responses) - accepted), [
        r.text for r in responses
    ]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {code}
    return max(int(r.headers["Ledger-Position"]) for r in responses if r.status_code == 201)


def test_twenty_concurrent_proposals_on_two_servers_fill_the_line_exactly(
    serve: Callable[..., Server], make_key: Callable[..., str]
) -> None:
    keys = _keys(make_key)
    servers = [serve(), serve()]
    _setup(servers, keys, appropriated="10000.00")
    bodies = [_grant_body(f"G{i}", "1000.00", f"race {i}") for i in range(CLIENTS)]

    responses = _race(servers, keys["clerk"], "/v1/grants", bodies)

    position = _split(responses, 10, "budget_exceeded")
    line = _fund_year(servers[1], keys["auditor"], position)
    assert Decimal(line["committed"]) == Decimal(line["appropriated"]) == Decimal("10000.00")
    assert Decimal(line["available"]) == 0


def test_twenty_concurrent_payments_on_two_servers_never_overpay(
    serve: Callable[..., Server], make_key: Callable[..., str]
) -> None:
    keys = _keys(make_key)
    servers = [serve(), serve()]
    _setup(servers, keys, appropriated="100000.00")
    _approved_grant(servers, keys, "G1")
    bodies = [
        {
            "payment_id": f"P{i}",
            "grant_id": "G1",
            "amount": "500.00",
            "value_date": "2024-03-01",
            "bank_reference": f"BR{i}",
        }
        for i in range(CLIENTS)
    ]

    responses = _race(servers, keys["treasury"], "/v1/payments", bodies)

    position = _split(responses, 10, "overpayment")
    line = _fund_year(servers[0], keys["auditor"], position)
    assert Decimal(line["paid"]) == Decimal("5000.00")
    grant_now = httpx.get(
        f"{servers[1].url}/v1/grants/G1", headers={"Authorization": f"Bearer {keys['auditor']}"}
    ).json()
    assert grant_now["net_paid"] == "5000.00" and grant_now["payable"] == "0.00"


def test_twenty_concurrent_payments_with_one_bank_reference_record_one(
    serve: Callable[..., Server], make_key: Callable[..., str]
) -> None:
    keys = _keys(make_key)
    servers = [serve(), serve()]
    _setup(servers, keys, appropriated="100000.00")
    for grant_id in ("G0", "G1"):
        _approved_grant(servers, keys, grant_id)
    bodies = [
        {
            "payment_id": f"P{i}",
            "grant_id": f"G{i % 2}",
            "amount": "100.00",
            "value_date": "2024-03-01",
            "bank_reference": "BR-SAME",
        }
        for i in range(CLIENTS)
    ]

    responses = _race(servers, keys["treasury"], "/v1/payments", bodies)

    _split(responses, 1, "duplicate_bank_reference")
