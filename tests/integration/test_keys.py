"""Keys with a life cycle and duties kept apart (CONTRACT §13), over HTTP on PostgreSQL:
unique names never reused, expiry, revocation seen by every process within 2 s,
issuing and revoking as events with their actor, no key with approver and treasury."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from eventsourcing.postgres import PostgresDatastore
from fastapi.testclient import TestClient

import ledger.entrypoints.runtime
from api.app import create_app
from ledger.adapters import api_keys
from ledger.adapters.api_keys import KeyCache
from ledger.adapters.postgres import MIGRATIONS, datastore_of
from ledger.domain.roles import Principal
from ledger.entrypoints.runtime import Settings, open_ledger
from ledger.usecases.ledger import Ledger
from tests.conftest import install_key
from tests.integration.scenario import (
    Actors,
    Api,
    approved_grant,
    assert_problem,
    created,
    expect,
    funded,
    payment_body,
)

pytestmark = [pytest.mark.db]


def key_events(db_url: str) -> list[tuple[str, str]]:
    """(event type, actor) of every key event, in order."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT topic, convert_from(state, 'UTF8')::jsonb ->> 'actor' FROM ledger_events "
            "WHERE topic LIKE '%%:ApiKey.%%' ORDER BY notification_id"
        ).fetchall()
    return [(topic.rpartition(":")[2], actor) for topic, actor in rows]


def bearer(client: TestClient, key: str) -> TestClient:
    client.headers["Authorization"] = f"Bearer {key}"
    return client


@pytest.fixture
def second_process(test_settings: Settings) -> Iterator[Callable[[str], TestClient]]:
    """Another API process on the same database: its own key cache."""
    app = create_app(test_settings)
    with TestClient(app, raise_server_exceptions=False):
        yield lambda key: bearer(TestClient(app, raise_server_exceptions=False), key)


def issue(a: Actors, name: str, *roles: str, **more: object) -> dict[str, object]:
    return created(a.admin.post("/v1/keys", json={"name": name, "roles": list(roles), **more}))


def test_an_issued_key_works_at_once_and_is_listed_without_its_secret(
    api: Api, db_url: str
) -> None:
    a = Actors.of(api)
    issued = issue(a, "auditor-wu", "auditor", expires_in_days=30)
    assert issued["name"] == "auditor-wu" and issued["roles"] == ["auditor"]
    assert isinstance(issued["key"], str) and issued["key"].startswith("tl_")
    assert issued["expires_at"] is not None

    wu = bearer(api(None), str(issued["key"]))
    expect(wu.get("/v1/events"), 200)

    listed = expect(a.admin.get("/v1/keys"), 200)["items"]
    assert listed_names(listed)[-1] == "auditor-wu"
    mine = expect(a.admin.get("/v1/keys/auditor-wu"), 200)
    assert set(mine) == {"name", "roles", "created_at", "expires_at", "revoked_at", "last_used_at"}
    assert mine["last_used_at"] is not None, "its use was noted"
    assert issued["key"] not in str(listed)
    assert key_events(db_url) == [("ApiKey.Issued", "admin")]


def listed_names(items: list[dict[str, object]]) -> list[object]:
    return [item["name"] for item in items]


def test_a_name_is_never_reused_even_once_revoked(
    api: Api, db_url: str, count_events: Callable[[], int]
) -> None:
    a = Actors.of(api)
    issue(a, "clerk-li", "clerk")
    before = count_events()
    body = {"name": "clerk-li", "roles": ["clerk"]}
    assert_problem(a.admin.post("/v1/keys", json=body), 409, "name_taken")
    expect(a.admin.post("/v1/keys/clerk-li/revoke"), 200)
    assert_problem(a.admin.post("/v1/keys", json=body), 409, "name_taken")
    assert count_events() == before + 1, "only the revocation was recorded"


def test_no_key_holds_approver_and_treasury(api: Api, count_events: Callable[[], int]) -> None:
    a = Actors.of(api)
    before = count_events()
    body = {"name": "both", "roles": ["approver", "treasury", "clerk"]}
    assert_problem(a.admin.post("/v1/keys", json=body), 409, "separation_of_duties")
    assert count_events() == before
    assert_problem(a.admin.get("/v1/keys/both"), 404, "not_found")


def test_a_key_made_before_the_rule_with_both_duties_is_refused_and_can_be_revoked(
    api: Api, db_url: str
) -> None:
    a = Actors.of(api)
    datastore = datastore_of(a.admin.app.state.ledger)  # type: ignore[attr-defined]
    legacy = install_key(datastore, "old-both", ["approver", "treasury"])
    assert_problem(bearer(api(None), legacy).get("/v1/events"), 401, "unauthenticated")
    assert expect(a.admin.post("/v1/keys/old-both/revoke"), 200)["revoked_at"] is not None
    assert key_events(db_url) == [("ApiKey.Issued", "admin"), ("ApiKey.Revoked", "admin")]


def test_the_approver_of_a_grant_cannot_also_pay_it(
    api: Api, db_url: str, count_events: Callable[[], int]
) -> None:
    """The duty is kept by the payment's own rule too, whatever keys exist: here a
    treasury key now bears the name that approved the grant."""
    a = funded(api)
    approved_grant(a, "G-1", amount="30000")  # approved by the key named "approver"
    datastore = datastore_of(a.admin.app.state.ledger)  # type: ignore[attr-defined]
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE api_keys SET name = 'approver-old' WHERE name = 'approver'")
    twin = bearer(api(None), install_key(datastore, "approver", ["treasury"]))
    before = count_events()
    refused = twin.post("/v1/payments", json=payment_body("P-1", amount="100"))
    assert_problem(refused, 409, "separation_of_duties")
    assert count_events() == before
    created(a.treasury.post("/v1/payments", json=payment_body("P-1", amount="100")))


def test_a_revoked_key_is_refused_by_every_process_within_two_seconds(
    api: Api, db_url: str, second_process: Callable[[str], TestClient]
) -> None:
    a = Actors.of(api)
    key = str(issue(a, "treasury-zhao", "treasury")["key"])
    elsewhere = second_process(key)
    expect(elsewhere.get("/v1/events"), 200)  # known there, and cached

    revoked = expect(a.admin.post("/v1/keys/treasury-zhao/revoke"), 200)
    assert revoked["revoked_at"] is not None
    deadline = time.monotonic() + 2.0
    while elsewhere.get("/v1/events").status_code != 401:
        assert time.monotonic() < deadline, "still accepted 2 s after its revocation"
        time.sleep(0.05)
    assert_problem(bearer(api(None), key).get("/v1/events"), 401, "unauthenticated")

    again = expect(a.admin.post("/v1/keys/treasury-zhao/revoke"), 200)
    assert again["revoked_at"] == revoked["revoked_at"]
    assert key_events(db_url) == [("ApiKey.Issued", "admin"), ("ApiKey.Revoked", "admin")]
    assert_problem(a.admin.post("/v1/keys/nobody/revoke"), 404, "not_found")


def test_an_expired_key_is_refused(api: Api, db_url: str) -> None:
    a = Actors.of(api)
    key = str(issue(a, "short", "auditor", expires_in_days=1)["key"])
    client = bearer(api(None), key)
    expect(client.get("/v1/events"), 200)
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE api_keys SET expires_at = now() - interval '1 s' WHERE name = 'short'")
    time.sleep(1.1)  # the cache's second
    assert_problem(client.get("/v1/events"), 401, "unauthenticated")


def test_a_key_issued_before_keys_were_events_is_recorded_when_revoked(
    api: Api, db_url: str
) -> None:
    a = Actors.of(api)
    datastore = datastore_of(a.admin.app.state.ledger)  # type: ignore[attr-defined]
    install_key(datastore, "legacy", ["clerk"])
    expect(a.admin.post("/v1/keys/legacy/revoke"), 200)
    assert key_events(db_url) == [("ApiKey.Issued", "admin"), ("ApiKey.Revoked", "admin")]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "roles": []},
        {"name": "x", "roles": ["root"]},
        {"name": "has space", "roles": ["clerk"]},
        {"name": "x", "roles": ["clerk"], "expires_in_days": 0},
        {"name": "x", "roles": ["clerk"], "key": "tl_chosen"},
    ],
)
def test_a_malformed_key_request_is_a_422_and_issues_nothing(
    api: Api, count_events: Callable[[], int], body: dict[str, object]
) -> None:
    a = Actors.of(api)
    before = count_events()
    assert_problem(a.admin.post("/v1/keys", json=body), 422, "validation_error")
    assert count_events() == before


def test_keys_are_listed_a_page_at_a_time(api: Api) -> None:
    a = Actors.of(api)
    for n in range(3):
        issue(a, f"k-{n}", "auditor")
    first = expect(a.admin.get("/v1/keys", params={"limit": 4}), 200)
    rest = expect(a.admin.get("/v1/keys", params={"after": first["next"]}), 200)
    names = listed_names(first["items"]) + listed_names(rest["items"])
    assert names[-3:] == ["k-0", "k-1", "k-2"]
    assert rest["next"] is None


def test_duplicate_names_from_before_are_told_apart_by_the_upgrade(
    db_url: str, test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = [step for step in MIGRATIONS if step[0] != "api-keys-life-cycle"]
    with monkeypatch.context() as m:
        m.setattr(ledger.entrypoints.runtime, "MIGRATIONS", steps)
        old = open_ledger(db_url, test_settings)
    for _ in range(2):
        with psycopg.connect(db_url) as conn:
            conn.execute(
                "INSERT INTO api_keys (key_hash, name, roles) VALUES (md5(random()::text), "
                "'ops', '{clerk}')"
            )
    old.close()
    upgraded = open_ledger(db_url, test_settings)
    upgraded.close()
    with psycopg.connect(db_url) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM api_keys ORDER BY seq")]
    assert names == ["ops", "ops-2"]


def test_requests_finding_a_key_expired_together_wait_for_one_lookup(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each making its own, the lookups updated the key's row in turn, each waiting for
    the row lock of the one before; and a lookup that fails fails them all, the next
    request trying again."""
    datastore = datastore_of(ledger)
    key = install_key(datastore, "clerk-li", ["clerk"])
    cache = KeyCache(datastore)
    lookups: list[str] = []
    failing = threading.Event()
    lookup = api_keys.authenticate

    def slow_lookup(store: PostgresDatastore, asked: str) -> Principal | None:
        lookups.append(asked)
        time.sleep(0.2)  # every other request asks meanwhile
        if failing.is_set():
            raise psycopg.OperationalError("the database went away")
        return lookup(store, asked)

    monkeypatch.setattr(api_keys, "authenticate", slow_lookup)
    together = threading.Barrier(16)

    def asked(_: int) -> Principal | None:
        together.wait()
        return cache.authenticate(key)

    with ThreadPoolExecutor(16) as pool:
        found = list(pool.map(asked, range(16)))
    assert len(lookups) == 1
    assert {p.name if p else None for p in found} == {"clerk-li"}

    cache._known.clear()  # expired
    failing.set()
    with ThreadPoolExecutor(16) as pool:
        outcomes = [pool.submit(asked, n) for n in range(16)]
        errors = [type(o.exception()).__name__ for o in outcomes]
    assert len(lookups) == 2
    assert errors == ["OperationalError"] * 16
    failing.clear()
    principal = cache.authenticate(key)
    assert principal is not None and principal.name == "clerk-li"
    assert len(lookups) == 3
