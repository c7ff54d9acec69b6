"""Retries are safe (docs/api.md, "Conventions"): a create re-sent with the same body is answered
again without recording anything; the same id with another body is a conflict;
an action repeated on a resource already in that state records nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration.scenario import (
    YEAR,
    Actors,
    Api,
    appropriation_body,
    approved_grant,
    assert_problem,
    clawback_body,
    created,
    depart,
    expect,
    fund_year_body,
    funded,
    grant_body,
    head_position,
    pay,
    payment_body,
    position,
    recovery_body,
    talent_body,
    waiver_body,
)

Counter = Callable[[], int]


def _world(api: Api) -> Actors:
    """Fund year 2024; T-1 (departed 2024-09-30) and T-2; G-1 (30000) approved and
    paid 20000 by P-1; clawback C-1 (12000) on G-1."""
    a = funded(api)
    created(a.clerk.post("/v1/talents", json=talent_body("T-2", name="李娜")))
    approved_grant(a, "G-1", amount="30000")
    pay(a, "P-1", amount="20000")
    depart(a, "T-1", "2024-09-30")
    created(a.clerk.post("/v1/clawbacks", json=clawback_body("C-1", amount="12000")))
    return a


# role, path, body, the same body with one field changed (None: no other valid body)
CREATES: dict[str, tuple[str, str, dict[str, Any], dict[str, Any] | None]] = {
    "fund year": ("admin", "/v1/fund-years", fund_year_body(2025), None),
    "appropriation": (
        "admin",
        f"/v1/fund-years/{YEAR}/appropriations",
        appropriation_body("AP-9", amount="5000"),
        appropriation_body("AP-9", amount="5001"),
    ),
    "talent": (
        "clerk",
        "/v1/talents",
        talent_body("T-9", name="王芳"),
        talent_body("T-9", name="王芳", employer="市第二中学"),
    ),
    "grant": (
        "clerk",
        "/v1/grants",
        grant_body("G-9", talent_id="T-2", amount="1000"),
        grant_body("G-9", talent_id="T-2", amount="1001"),
    ),
    "rent waiver": (
        "clerk",
        "/v1/rent-waivers",
        waiver_body("W-9", talent_id="T-2", monthly_rent="2500"),
        waiver_body("W-9", talent_id="T-2", monthly_rent="2600"),
    ),
    "payment": (
        "treasury",
        "/v1/payments",
        payment_body("P-9", amount="1000", value_date="2024-04-01", bank_reference="BR-9"),
        payment_body("P-9", amount="1000", value_date="2024-04-02", bank_reference="BR-9"),
    ),
    "clawback": (
        "clerk",
        "/v1/clawbacks",
        clawback_body("C-9", amount="1000"),
        clawback_body("C-9", amount="1001"),
    ),
    "recovery": (
        "treasury",
        "/v1/clawbacks/C-1/recoveries",
        recovery_body("R-9", amount="1000", bank_reference="RB-9"),
        recovery_body("R-9", amount="1000", bank_reference="RB-10"),
    ),
}


def test_every_create_resent_with_the_same_body_answers_the_original_and_records_nothing(
    api: Api, db_url: str, count_events: Counter, subtests: pytest.Subtests
) -> None:
    a = _world(api)
    for name, (role, path, body, _) in CREATES.items():
        with subtests.test(name):
            client: TestClient = getattr(a, role)
            first = client.post(path, json=body)
            original = created(first)
            assert "Idempotent-Replayed" not in first.headers
            first_position = position(first)
            assert first_position == head_position(db_url)

            events = count_events()
            again = client.post(path, json=body)
            assert again.status_code == 200, again.text
            assert again.headers["Idempotent-Replayed"] == "true"
            assert again.json() == original
            # read-your-writes: a retry's position covers all that the original recorded
            assert first_position <= position(again) <= head_position(db_url)
            assert count_events() == events


def test_every_create_reusing_an_id_with_another_body_is_an_idempotency_conflict(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    a = _world(api)
    for name, (role, path, body, changed) in CREATES.items():
        if changed is None:
            continue  # a fund year's only other valid body is another year, i.e. another id
        with subtests.test(name):
            client: TestClient = getattr(a, role)
            original = created(client.post(path, json=body))
            events = count_events()
            assert_problem(client.post(path, json=changed), 409, "idempotency_conflict")
            assert count_events() == events
            # the stored resource is still the original
            assert expect(client.post(path, json=body), 200) == original


def test_a_create_written_differently_but_meaning_the_same_is_a_replay(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    """Amounts are compared as amounts ("12.5" is "12.50"), fields by name, texts trimmed."""
    a = funded(api, lines=(("settling_in", "cash", "999999"),))
    cases = {
        "12.5 then 12.50": ("12.5", "12.50"),
        "200000 then 200000.00": ("200000", "200000.00"),
        "7 then 007.0": ("7", "007.0"),
        "0.1 then 0.10": ("0.1", "0.10"),
    }
    for n, (case, (first, again)) in enumerate(cases.items()):
        with subtests.test(case):
            original = created(a.clerk.post("/v1/grants", json=grant_body(f"G-{n}", amount=first)))
            events = count_events()
            replay = a.clerk.post("/v1/grants", json=grant_body(f"G-{n}", amount=again))
            assert replay.status_code == 200, replay.text
            assert replay.headers["Idempotent-Replayed"] == "true"
            assert replay.json() == original
            assert count_events() == events
    with subtests.test("fields in another order, text with surrounding spaces"):
        body = grant_body("G-x")
        original = created(a.clerk.post("/v1/grants", json=body))
        events = count_events()
        reordered = dict(reversed(list(body.items())))
        replay = a.clerk.post("/v1/grants", json={**reordered, "reason": f"  {body['reason']} "})
        assert replay.status_code == 200, replay.text
        assert replay.json() == original
        assert count_events() == events


def test_a_replay_answers_the_original_even_after_the_resource_moved_on_or_the_rules_changed(
    api: Api, count_events: Counter
) -> None:
    """The proposal was approved since, G-1 is fully paid (a new payment would be an
    overpayment), the fund year is closed (a new proposal or waiver would be refused):
    a retry still gets the original answer, and records nothing."""
    a = funded(api)
    approved_grant(a, "G-1", amount="30000")
    payment = pay(a, "P-1", amount="30000")
    grant = created(a.clerk.post("/v1/grants", json=grant_body("G-2", amount="70000")))
    assert grant["status"] == "proposed"
    expect(a.approver.post("/v1/grants/G-2/approve", json={}), 200)
    waiver = created(a.clerk.post("/v1/rent-waivers", json=waiver_body()))
    expect(a.admin.post(f"/v1/fund-years/{YEAR}/close", json={"reason": "年度结账"}), 200)
    events = count_events()
    for client, path, body, original in (
        (a.treasury, "/v1/payments", payment_body("P-1", amount="30000"), payment),
        (a.clerk, "/v1/grants", grant_body("G-2", amount="70000"), grant),
        (a.clerk, "/v1/rent-waivers", waiver_body(), waiver),
    ):
        replay = client.post(path, json=body)
        assert replay.status_code == 200, replay.text
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == original
    assert count_events() == events
    assert expect(a.auditor.get("/v1/grants/G-2"), 200)["status"] == "approved"


# --- actions ----------------------------------------------------------------------


def _action_world(api: Api) -> Actors:
    """G-A and G-R proposed, G-V approved, G-1 approved and paid by P-1, waiver W-1
    (2024-01-15..2024-03-01), talent T-2 active, fund year 2024 open."""
    a = funded(api)
    created(a.clerk.post("/v1/talents", json=talent_body("T-2", name="李娜")))
    created(a.clerk.post("/v1/grants", json=grant_body("G-A", amount="10000")))
    created(a.clerk.post("/v1/grants", json=grant_body("G-R", amount="10000")))
    approved_grant(a, "G-V", amount="10000")
    approved_grant(a, "G-1", amount="30000")
    pay(a, "P-1", amount="10000", value_date="2024-03-01")
    created(a.clerk.post("/v1/rent-waivers", json=waiver_body()))
    return a


# role, path, body, another body; in an order that keeps each action possible
ACTIONS: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {
    "approve": ("approver", "/v1/grants/G-A/approve", {"note": "同意"}, {"note": "另议"}),
    "reject": ("approver", "/v1/grants/G-R/reject", {"reason": "材料不全"}, {"reason": "超标"}),
    "revoke": ("approver", "/v1/grants/G-V/revoke", {"reason": "政策调整"}, {"reason": "误批"}),
    "return": (
        "treasury",
        "/v1/payments/P-1/return",
        {"returned_on": "2024-03-05", "reason": "户名不符"},
        {"returned_on": "2024-03-06", "reason": "户名不符"},
    ),
    "end": (
        "clerk",
        "/v1/rent-waivers/W-1/end",
        {"ended_on": "2024-02-10"},
        {"ended_on": "2024-02-20"},
    ),
    "depart": (
        "clerk",
        "/v1/talents/T-2/departure",
        {"departed_on": "2024-10-01", "reason": "调离本市"},
        {"departed_on": "2024-10-01", "reason": "出国"},
    ),
    "close": (
        "admin",
        f"/v1/fund-years/{YEAR}/close",
        {"reason": "年度结账"},
        {"reason": "提前结账"},
    ),
}


def test_every_action_repeated_with_the_same_body_answers_200_and_records_nothing(
    api: Api, db_url: str, count_events: Counter, subtests: pytest.Subtests
) -> None:
    a = _action_world(api)
    for name, (role, path, body, _) in ACTIONS.items():
        with subtests.test(name):
            client: TestClient = getattr(a, role)
            events = count_events()
            first = client.post(path, json=body)
            answer = expect(first, 200)
            assert count_events() > events, "the first call records the action"
            assert position(first) == head_position(db_url)

            events = count_events()
            again = client.post(path, json=body)
            assert expect(again, 200) == answer
            assert position(first) <= position(again) <= head_position(db_url)
            assert count_events() == events


def test_every_action_repeated_with_another_body_is_invalid_state(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    a = _action_world(api)
    for name, (role, path, body, changed) in ACTIONS.items():
        with subtests.test(name):
            client: TestClient = getattr(a, role)
            answer = expect(client.post(path, json=body), 200)
            events = count_events()
            assert_problem(client.post(path, json=changed), 409, "invalid_state")
            assert count_events() == events
            assert expect(client.post(path, json=body), 200) == answer


def test_an_approval_without_a_body_can_be_repeated_but_not_changed(
    api: Api, count_events: Counter
) -> None:
    a = funded(api)
    created(a.clerk.post("/v1/grants", json=grant_body()))
    first = expect(a.approver.post("/v1/grants/G-1/approve"), 200)
    assert first["decision_note"] is None
    events = count_events()
    assert expect(a.approver.post("/v1/grants/G-1/approve"), 200) == first
    assert expect(a.approver.post("/v1/grants/G-1/approve", json={}), 200) == first
    assert count_events() == events
    assert_problem(
        a.approver.post("/v1/grants/G-1/approve", json={"note": "补充意见"}), 409, "invalid_state"
    )
    assert count_events() == events
