"""`POST /v1/batch` (docs/api.md, "Batches" and its reference): each operation answers
exactly what its single call would (checked against the same single calls on a second,
fresh database); `atomic` batches are all or nothing; roles are checked per operation;
bad batches are 422."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ledger.adapters.postgres import datastore_of
from tests.conftest import install_key, new_database, settings_for
from tests.integration.scenario import (
    YEAR,
    Actors,
    Api,
    appropriation_body,
    assert_problem,
    assert_validation_error,
    clawback_body,
    created,
    expect,
    fund_year_body,
    funded,
    grant_body,
    open_year,
    payment_body,
    recovery_body,
    talent_body,
    waiver_body,
)

Counter = Callable[[], int]
Json = dict[str, Any]

# Where each operation's single call goes, and which body fields are its path ids.
SINGLE: dict[str, tuple[str, tuple[str, ...]]] = {
    "fund_year.open": ("/v1/fund-years", ()),
    "appropriation.add": ("/v1/fund-years/{year}/appropriations", ("year",)),
    "fund_year.close": ("/v1/fund-years/{year}/close", ("year",)),
    "talent.register": ("/v1/talents", ()),
    "talent.depart": ("/v1/talents/{talent_id}/departure", ("talent_id",)),
    "grant.propose": ("/v1/grants", ()),
    "grant.approve": ("/v1/grants/{grant_id}/approve", ("grant_id",)),
    "grant.reject": ("/v1/grants/{grant_id}/reject", ("grant_id",)),
    "grant.revoke": ("/v1/grants/{grant_id}/revoke", ("grant_id",)),
    "waiver.grant": ("/v1/rent-waivers", ()),
    "waiver.end": ("/v1/rent-waivers/{waiver_id}/end", ("waiver_id",)),
    "payment.record": ("/v1/payments", ()),
    "payment.return": ("/v1/payments/{payment_id}/return", ("payment_id",)),
    "clawback.assess": ("/v1/clawbacks", ()),
    "clawback.recover": ("/v1/clawbacks/{clawback_id}/recoveries", ("clawback_id",)),
}
CONTRACT_OPS = {
    "fund_year.open",
    "appropriation.add",
    "talent.register",
    "talent.depart",
    "grant.propose",
    "grant.approve",
    "grant.reject",
    "grant.revoke",
    "waiver.grant",
    "waiver.end",
    "payment.record",
    "payment.return",
    "clawback.assess",
    "clawback.recover",
}
ROLE_OF = {
    "fund_year.open": "admin",
    "appropriation.add": "admin",
    "fund_year.close": "admin",
    "talent.register": "clerk",
    "talent.depart": "clerk",
    "grant.propose": "clerk",
    "grant.approve": "approver",
    "grant.reject": "approver",
    "grant.revoke": "approver",
    "waiver.grant": "clerk",
    "waiver.end": "clerk",
    "payment.record": "treasury",
    "payment.return": "treasury",
    "clawback.assess": "clerk",
    "clawback.recover": "treasury",
}
TWIN_KEYS = {
    "admin": ["admin"],
    "clerk": ["clerk"],
    "approver": ["approver"],
    "treasury": ["treasury"],
    "auditor": ["auditor"],
}


def op(name: str, body: Json) -> Json:
    return {"op": name, "body": body}


def single(client: TestClient, operation: Json) -> tuple[int, Json]:
    """What the single call of `operation` answers."""
    path, ids = SINGLE[operation["op"]]
    body = dict(operation["body"])
    path = path.format(**{name: body.pop(name) for name in ids})
    response = client.post(path, json=body)
    return response.status_code, response.json()


def batch(client: TestClient, atomic: bool, *operations: Json) -> Any:
    return client.post("/v1/batch", json={"atomic": atomic, "operations": list(operations)})


@pytest.fixture
def twin(server_url: str) -> Iterator[Api]:
    """`twin(role)`: a client of a second app on another fresh database, whose keys
    have the same names and roles as the `api` fixture's."""
    clients: list[TestClient] = []
    with new_database(server_url) as url:
        app = create_app(settings_for(url))
        with TestClient(app, raise_server_exceptions=False):
            datastore = datastore_of(app.state.ledger)
            keys = {n: install_key(datastore, n, roles) for n, roles in TWIN_KEYS.items()}

            def client(role: str | None) -> TestClient:
                assert role is not None
                c = TestClient(app, raise_server_exceptions=False)
                c.headers["Authorization"] = f"Bearer {keys[role]}"
                clients.append(c)
                return c

            yield client
            for c in clients:
                c.close()


# Every operation, in batches of one role each, in an order where each batch only
# builds on earlier batches.
LIFE: list[tuple[str, list[Json]]] = [
    (
        "admin",
        [
            op("fund_year.open", fund_year_body(YEAR)),
            op("appropriation.add", {"year": YEAR, **appropriation_body("AP-1")}),
            op(
                "appropriation.add",
                {"year": YEAR, **appropriation_body("AP-2", "housing", "in_kind", "50000")},
            ),
            op("fund_year.open", fund_year_body(2023)),
        ],
    ),
    (
        "clerk",
        [
            op("talent.register", talent_body("T-1")),
            op("talent.register", talent_body("T-2", name="李娜")),
            op("grant.propose", grant_body("G-1", "T-1", amount="30000")),
            op("grant.propose", grant_body("G-2", "T-1", amount="5000")),
            op("grant.propose", grant_body("G-3", "T-2", amount="10000")),
            op("waiver.grant", waiver_body("W-1", "T-1")),
        ],
    ),
    (
        "approver",
        [
            op("grant.approve", {"grant_id": "G-1", "note": "同意"}),
            op("grant.reject", {"grant_id": "G-2", "reason": "材料不全"}),
            op("grant.approve", {"grant_id": "G-3"}),
        ],
    ),
    (
        "treasury",
        [
            op("payment.record", payment_body("P-1", "G-1", amount="20000")),
            op("payment.record", payment_body("P-2", "G-3", amount="4000", bank_reference="BR-2")),
        ],
    ),
    (
        "clerk",
        [
            op("waiver.end", {"waiver_id": "W-1", "ended_on": "2024-02-10"}),
            op(
                "talent.depart",
                {"talent_id": "T-1", "departed_on": "2024-09-30", "reason": "调离本市"},
            ),
            op("clawback.assess", clawback_body("C-1", "G-1", amount="12000")),
        ],
    ),
    (
        "treasury",
        [
            op(
                "payment.return",
                {"payment_id": "P-2", "returned_on": "2024-03-05", "reason": "户名不符"},
            ),
            op("clawback.recover", {"clawback_id": "C-1", **recovery_body("R-1")}),
        ],
    ),
    ("approver", [op("grant.revoke", {"grant_id": "G-3", "reason": "政策调整"})]),
    ("admin", [op("fund_year.close", {"year": 2023, "reason": "年度结束"})]),
]


def test_the_life_covers_every_operation_of_the_contract() -> None:
    names = {operation["op"] for _, operations in LIFE for operation in operations}
    assert names == set(SINGLE)
    assert names >= CONTRACT_OPS


@pytest.mark.parametrize("atomic", [False, True], ids=["independent", "atomic"])
def test_every_operation_answers_what_its_single_call_answers(
    api: Api, twin: Api, count_events: Counter, atomic: bool
) -> None:
    for role, operations in LIFE:
        response = batch(api(role), atomic, *operations)
        results = expect(response, 200)["results"]
        singles = [single(twin(role), operation) for operation in operations]
        assert len(results) == len(operations)
        for operation, result, (status, body) in zip(operations, results, singles, strict=True):
            assert status in (200, 201), (operation, body)
            assert (result["status"], result["body"]) == (status, body), operation["op"]
        assert int(response.headers["Ledger-Position"]) == max(r["position"] for r in results)

    # the whole life again: every create and action is a replay, as single calls are
    # (but approving G-3, which was revoked since: that is a conflict, not a replay)
    events = count_events()
    for role, operations in LIFE:
        again = [o for o in operations if o != op("grant.approve", {"grant_id": "G-3"})]
        results = expect(batch(api(role), atomic, *again), 200)["results"]
        singles = [single(twin(role), operation) for operation in again]
        for operation, result, (status, body) in zip(again, results, singles, strict=True):
            assert status == 200, (operation, body)
            assert (result["status"], result["body"]) == (status, body), operation["op"]
    assert count_events() == events


# --- replays ------------------------------------------------------------------------


def test_a_replayed_create_in_a_batch_answers_200_and_the_original(
    api: Api, count_events: Counter
) -> None:
    a = funded(api)
    first = created(a.clerk.post("/v1/grants", json=grant_body("G-1")))
    events = count_events()

    for atomic in (False, True):
        results = expect(batch(a.clerk, atomic, op("grant.propose", grant_body("G-1"))), 200)[
            "results"
        ]
        assert results[0]["status"] == 200
        assert results[0]["body"] == first
    assert count_events() == events

    changed = grant_body("G-1", amount="30001")
    [result] = expect(batch(a.clerk, False, op("grant.propose", changed)), 200)["results"]
    assert result["status"] == 409
    assert result["body"]["code"] == "idempotency_conflict"
    assert_problem(batch(a.clerk, True, op("grant.propose", changed)), 409, "idempotency_conflict")
    assert count_events() == events


def test_the_same_create_twice_in_one_atomic_batch_is_a_create_then_a_replay(
    api: Api,
) -> None:
    a = funded(api)
    twice = op("talent.register", talent_body("T-9", name="王芳"))

    results = expect(batch(a.clerk, True, twice, twice), 200)["results"]

    assert [r["status"] for r in results] == [201, 200]
    assert results[0]["body"] == results[1]["body"]


def test_an_atomic_result_is_the_state_right_after_its_own_operation(api: Api) -> None:
    a = funded(api)
    register = op("talent.register", talent_body("T-9", name="王芳"))
    leave = {"talent_id": "T-9", "departed_on": "2024-09-30", "reason": "调离本市"}

    results = expect(batch(a.clerk, True, register, op("talent.depart", leave)), 200)["results"]

    assert results[0]["status"] == 201
    assert results[0]["body"]["status"] == "active"
    assert results[0]["body"]["departed_on"] is None
    assert results[1]["body"]["status"] == "departed"


# --- all or nothing ---------------------------------------------------------------------


SMALL_BUDGET = (("settling_in", "cash", "1000"),)


def _small_budget(api: Api) -> Actors:
    a = Actors.of(api)
    open_year(a, YEAR, SMALL_BUDGET)
    return a


BUDGET_BUSTER = [
    op("talent.register", talent_body("T-9", name="王芳")),
    op("grant.propose", grant_body("G-1", "T-9", amount="600")),
    op("grant.propose", grant_body("G-2", "T-9", amount="600")),
    op("grant.propose", grant_body("G-3", "T-9", amount="100")),
]


def test_an_atomic_batch_with_a_refused_operation_records_nothing(
    api: Api, count_events: Counter
) -> None:
    a = Actors.of(api)
    budgeted = open_year(a, YEAR, SMALL_BUDGET)
    events = count_events()

    body = assert_problem(batch(a.clerk, True, *BUDGET_BUSTER), 409, "budget_exceeded")

    assert body["failed_operation"] == 2
    assert "operation 2" in body["detail"]
    assert count_events() == events
    assert_problem(a.auditor.get("/v1/talents/T-9"), 404, "not_found")
    assert_problem(a.auditor.get("/v1/grants/G-1"), 404, "not_found")
    year = expect(a.auditor.get(f"/v1/fund-years/{YEAR}?min_position={budgeted}"), 200)
    line = year["lines"][0]
    assert line["committed"] == "0.00"


@pytest.mark.parametrize("refused_first", [True, False], ids=["its refusal", "an earlier one"])
def test_an_atomic_batch_names_a_registration_refused_before_its_decision(
    api: Api, count_events: Counter, refused_first: bool
) -> None:
    """A registration is checked (and its name sealed) before any decision is made; its
    refusal still names its own operation, and an earlier operation's refusal still
    comes first."""
    a = _small_budget(api)
    events = count_events()
    backwards = talent_body("T-8", arrived_on="2024-05-01", service_commitment_until="2024-04-30")
    before = [] if refused_first else [op("grant.propose", grant_body("G-1", "T-404"))]
    operations = [*before, op("talent.register", talent_body("T-9"))]
    operations.append(op("talent.register", backwards))

    field = "service_commitment_until" if refused_first else "talent_id"
    body = assert_validation_error(batch(a.clerk, True, *operations), field)
    assert body["failed_operation"] == (1 if refused_first else 0)
    assert body["errors"][0]["loc"][:2] == ["operations", body["failed_operation"]]
    assert count_events() == events


def test_an_independent_batch_records_each_operation_that_succeeds(
    api: Api, count_events: Counter
) -> None:
    a = _small_budget(api)
    events = count_events()

    response = batch(a.clerk, False, *BUDGET_BUSTER)

    results = expect(response, 200)["results"]
    assert [r["status"] for r in results] == [201, 201, 409, 201]
    assert results[2]["body"]["code"] == "budget_exceeded"
    assert count_events() > events
    min_position = {"min_position": response.headers["Ledger-Position"]}
    for grant_id in ("G-1", "G-3"):
        got = expect(a.auditor.get(f"/v1/grants/{grant_id}", params=min_position), 200)
        assert got["status"] == "proposed"
    assert_problem(a.auditor.get("/v1/grants/G-2"), 404, "not_found")
    line = expect(a.auditor.get(f"/v1/fund-years/{YEAR}", params=min_position), 200)["lines"][0]
    assert line["committed"] == "700.00"


def test_later_operations_of_an_atomic_batch_see_the_earlier_ones(
    api: Api, count_events: Counter
) -> None:
    a = _small_budget(api)
    events = count_events()

    response = batch(a.clerk, True, *BUDGET_BUSTER[:2])

    results = expect(response, 200)["results"]
    assert [r["status"] for r in results] == [201, 201]
    assert results[1]["body"]["talent_id"] == "T-9"
    assert results[1]["body"]["status"] == "proposed"
    assert {r["position"] for r in results} == {int(response.headers["Ledger-Position"])}
    assert count_events() > events
    params = {"min_position": response.headers["Ledger-Position"]}
    assert expect(a.auditor.get("/v1/grants/G-1", params=params), 200)["talent_id"] == "T-9"
    assert expect(a.auditor.get("/v1/talents/T-9", params=params), 200)["status"] == "active"


# --- roles, per operation ---------------------------------------------------------------


def test_roles_are_checked_per_operation(api: Api, count_events: Counter) -> None:
    a = funded(api)
    events = count_events()
    operations = [
        op("talent.register", talent_body("T-9", name="王芳")),
        op("fund_year.open", fund_year_body(2030)),
        op("fund_year.open", {"year": "not even valid"}),  # forbidden before invalid
    ]

    body = assert_problem(batch(a.clerk, True, *operations), 403, "forbidden")
    assert body["failed_operation"] == 1
    assert count_events() == events
    assert_problem(a.auditor.get("/v1/talents/T-9"), 404, "not_found")

    results = expect(batch(a.clerk, False, *operations), 200)["results"]
    assert [r["status"] for r in results] == [201, 403, 403]
    assert [r["body"].get("code") for r in results[1:]] == ["forbidden", "forbidden"]
    assert count_events() > events
    assert_problem(a.auditor.get("/v1/fund-years/2030"), 404, "not_found")


def test_a_batch_needs_a_key(api: Api) -> None:
    response = batch(api(None), False, op("fund_year.open", fund_year_body()))
    assert_problem(response, 401, "unauthenticated")


# --- malformed batches and operations --------------------------------------------------


def test_more_than_1000_operations_is_refused_and_1000_is_not(
    api: Api, count_events: Counter
) -> None:
    a = Actors.of(api)
    bad = op("fund_year.open", {})  # refused per operation, without touching the ledger
    events = count_events()

    assert_validation_error(batch(a.admin, False, *[bad] * 1001))
    results = expect(batch(a.admin, False, *[bad] * 1000), 200)["results"]
    assert len(results) == 1000
    assert {r["status"] for r in results} == {422}
    assert count_events() == events


@pytest.mark.parametrize(
    "payload",
    [
        {"atomic": False, "operations": [op("grant.pay", {})]},
        {"atomic": False, "operations": [op("Fund_Year.Open", fund_year_body())]},
        {"atomic": False, "operations": []},
        {"operations": [op("fund_year.open", fund_year_body())]},
        {"atomic": "yes", "operations": [op("fund_year.open", fund_year_body())]},
        {"atomic": False, "operations": [{"op": "fund_year.open"}]},
        {"atomic": False, "operations": [{**op("fund_year.open", fund_year_body()), "x": 1}]},
    ],
    ids=[
        "unknown op",
        "op in another case",
        "no operations",
        "no atomic",
        "atomic not a boolean",
        "op without body",
        "unknown field",
    ],
)
def test_a_malformed_batch_is_refused_whole(api: Api, count_events: Counter, payload: Json) -> None:
    a = Actors.of(api)
    events = count_events()
    assert_validation_error(a.admin.post("/v1/batch", json=payload))
    assert count_events() == events


def test_an_unknown_op_name_is_located(api: Api) -> None:
    a = Actors.of(api)
    payload = {"atomic": False, "operations": [op("fund_year.open", fund_year_body())] * 2}
    payload["operations"] = [*payload["operations"], op("grant.pay", {})]
    body = assert_validation_error(a.admin.post("/v1/batch", json=payload))
    assert any(e["loc"][:3] == ["body", "operations", 2] for e in body["errors"]), body


def test_a_malformed_operation_body_is_refused_like_its_single_call(
    api: Api, twin: Api, count_events: Counter
) -> None:
    a = funded(api)
    bad = op("grant.propose", {**grant_body("G-1"), "amount": "1e3"})
    events = count_events()

    good = op("grant.propose", grant_body("G-2"))
    results = expect(batch(a.clerk, False, bad, good), 200)["results"]

    assert [r["status"] for r in results] == [422, 201]
    status, expected = single(twin("clerk"), bad)
    assert (results[0]["status"], results[0]["body"]["code"]) == (status, expected["code"])
    assert results[0]["body"]["errors"][0]["loc"] == ["body", "amount"]
    assert results[0]["body"]["errors"][0]["loc"] == expected["errors"][0]["loc"]
    assert count_events() > events

    events = count_events()
    body = assert_validation_error(batch(a.clerk, True, good, bad), "amount")
    assert body["failed_operation"] == 1
    assert body["errors"][0]["loc"] == ["operations", 1, "body", "amount"]
    assert count_events() == events


@pytest.mark.parametrize(
    ("name", "body", "field"),
    [
        ("grant.approve", {"note": "同意"}, "grant_id"),
        ("grant.reject", {"reason": "x"}, "grant_id"),
        ("appropriation.add", appropriation_body("AP-9"), "year"),
        ("appropriation.add", {"year": "2024", **appropriation_body("AP-9")}, "year"),
        ("payment.return", {"returned_on": "2024-03-05", "reason": "x"}, "payment_id"),
        ("clawback.recover", recovery_body(), "clawback_id"),
        ("talent.depart", {"departed_on": "2024-03-05", "reason": "x"}, "talent_id"),
        ("waiver.end", {"ended_on": "2024-03-05"}, "waiver_id"),
        ("fund_year.close", {"reason": "x"}, "year"),
    ],
)
def test_a_path_id_missing_from_the_body_is_a_validation_error(
    api: Api, count_events: Counter, name: str, body: Json, field: str
) -> None:
    events = count_events()

    [result] = expect(batch(api(ROLE_OF[name]), False, op(name, body)), 200)["results"]

    assert result["status"] == 422
    assert result["body"]["code"] == "validation_error"
    assert ["body", field] in [e["loc"] for e in result["body"]["errors"]]
    assert count_events() == events


def test_an_unknown_path_id_is_not_found_like_its_single_call(api: Api) -> None:
    a = funded(api)
    results = expect(batch(a.approver, False, op("grant.approve", {"grant_id": "G-404"})), 200)[
        "results"
    ]
    assert results[0]["status"] == 404
    assert results[0]["body"]["code"] == "not_found"
    single_call = a.approver.post("/v1/grants/G-404/approve", json={})
    assert results[0]["body"] == single_call.json()
