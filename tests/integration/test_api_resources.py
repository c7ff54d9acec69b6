"""Reads (docs/api.md, "What the reads answer") after a full scenario, positions and the
OpenAPI document."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from ledger.entrypoints.runtime import Settings
from tests.integration.scenario import (
    YEAR,
    Actors,
    Api,
    appropriation_body,
    approved_grant,
    assert_problem,
    assert_validation_error,
    clawback_body,
    created,
    expect,
    fund_year_body,
    funded,
    grant_body,
    head_position,
    open_year,
    pay,
    position,
    recovery_body,
    talent_body,
    waiver_body,
)

LINE_FIELDS = (
    "appropriated",
    "committed",
    "available",
    "paid",
    "returned",
    "net_paid",
    "in_kind_value",
    "clawback_assessed",
    "clawback_recovered",
)
BALANCE_FIELDS = (
    "granted",
    "approved",
    "paid",
    "returned",
    "outstanding",
    "in_kind_value",
    "clawback_assessed",
    "clawback_recovered",
    "clawback_due",
)


def _amounts(fields: tuple[str, ...], **given: str) -> dict[str, str]:
    """Every field "0.00" except those given."""
    return {name: given.get(name, "0.00") for name in fields}


def _pick(answer: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: answer[name] for name in fields}


# --- the scenario -----------------------------------------------------------------


def _scenario(api: Api) -> tuple[Actors, int]:
    """Every kind of write of §4; returns the actors and the last write's position.

    settling_in (cash, 60000 + 40000): G-1 of T-1, 30000, paid 20000 + 10000, the 10000
    returned, then 5000 more paid; G-2 of T-2, 20000, paid 8000 then revoked; T-1
    departs, clawback C-1 of 12000 on G-1, 4000 recovered.
    project_support (cash, 50000): G-3 of T-1, 15000, rejected.
    housing (in_kind, 30000): W-1 of T-1, 2024-01-15..2024-03-01 at 2500 (3 months);
    W-2 of T-2, 2024-02-10..2024-11-20 at 1000 (10 months) ended on 2024-05-31 (4 months).
    """
    a = Actors.of(api)
    created(a.admin.post("/v1/fund-years", json=fund_year_body()))
    for body in (
        appropriation_body("AP-1", "settling_in", "cash", "60000"),
        appropriation_body("AP-2", "settling_in", "cash", "40000"),
        appropriation_body("AP-3", "housing", "in_kind", "30000"),
        appropriation_body("AP-4", "project_support", "cash", "50000"),
    ):
        created(a.admin.post(f"/v1/fund-years/{YEAR}/appropriations", json=body))
    created(a.clerk.post("/v1/talents", json=talent_body("T-1", name="张伟")))
    created(a.clerk.post("/v1/talents", json=talent_body("T-2", name="李娜")))

    w1 = created(a.clerk.post("/v1/rent-waivers", json=waiver_body("W-1", "T-1")))
    assert (w1["months"], w1["value"]) == (3, "7500.00")
    w2 = waiver_body("W-2", "T-2", "2024-02-10", "2024-11-20", "1000")
    assert created(a.clerk.post("/v1/rent-waivers", json=w2))["value"] == "10000.00"
    ended = expect(a.clerk.post("/v1/rent-waivers/W-2/end", json={"ended_on": "2024-05-31"}), 200)
    assert (ended["months"], ended["value"], ended["status"]) == (4, "4000.00", "ended")

    approved_grant(a, "G-1", amount="30000", talent_id="T-1")
    pay(a, "P-1", grant_id="G-1", amount="20000", value_date="2024-03-01", bank_reference="BR-1")
    pay(a, "P-2", grant_id="G-1", amount="10000", value_date="2024-03-15", bank_reference="BR-2")
    assert expect(a.auditor.get("/v1/grants/G-1"), 200)["payable"] == "0.00"
    returned = {"returned_on": "2024-03-20", "reason": "收款账户已销户"}
    expect(a.treasury.post("/v1/payments/P-2/return", json=returned), 200)
    assert expect(a.auditor.get("/v1/grants/G-1"), 200)["payable"] == "10000.00"
    pay(a, "P-3", grant_id="G-1", amount="5000", value_date="2024-04-01", bank_reference="BR-3")

    approved_grant(a, "G-2", amount="20000", talent_id="T-2")
    pay(a, "P-4", grant_id="G-2", amount="8000", value_date="2024-04-10", bank_reference="BR-4")
    expect(a.approver.post("/v1/grants/G-2/revoke", json={"reason": "不再符合条件"}), 200)

    g3 = grant_body("G-3", talent_id="T-1", amount="15000", programme="project_support")
    created(a.clerk.post("/v1/grants", json=g3))
    expect(a.approver.post("/v1/grants/G-3/reject", json={"reason": "项目未立项"}), 200)

    departure = {"departed_on": "2024-09-30", "reason": "调离本市"}
    expect(a.clerk.post("/v1/talents/T-1/departure", json=departure), 200)
    created(a.clerk.post("/v1/clawbacks", json=clawback_body("C-1", "G-1", "12000")))
    last = a.treasury.post(
        "/v1/clawbacks/C-1/recoveries",
        json=recovery_body("R-1", "4000", "2024-10-15", "RB-1"),
    )
    created(last)
    return a, position(last)


def _check_fund_year(a: Actors, last: int) -> None:
    year = expect(a.auditor.get(f"/v1/fund-years/{YEAR}?min_position={last}"), 200)
    assert (year["year"], year["currency"], year["status"]) == (YEAR, "CNY", "open")
    lines = {line["programme"]: line for line in year["lines"]}
    assert set(lines) == {"housing", "project_support", "settling_in"}
    assert {p: line["kind"] for p, line in lines.items()} == {
        "housing": "in_kind",
        "project_support": "cash",
        "settling_in": "cash",
    }
    assert _pick(lines["housing"], LINE_FIELDS) == _amounts(
        LINE_FIELDS,
        appropriated="30000.00",
        committed="11500.00",  # 7500 + 4000: the ended waiver released 6000
        available="18500.00",
        in_kind_value="11500.00",
    )
    assert _pick(lines["project_support"], LINE_FIELDS) == _amounts(
        LINE_FIELDS,
        appropriated="50000.00",  # the rejected G-3 released everything
        available="50000.00",
    )
    assert _pick(lines["settling_in"], LINE_FIELDS) == _amounts(
        LINE_FIELDS,
        appropriated="100000.00",  # two appropriations add to one line
        committed="38000.00",  # G-1 30000 + revoked G-2 at its net paid 8000
        available="62000.00",
        paid="43000.00",  # 20000 + 10000 + 5000 + 8000
        returned="10000.00",
        net_paid="33000.00",
        clawback_assessed="12000.00",
        clawback_recovered="4000.00",
    )
    assert _pick(year["totals"], LINE_FIELDS) == _amounts(
        LINE_FIELDS,
        appropriated="180000.00",
        committed="49500.00",
        available="130500.00",
        paid="43000.00",
        returned="10000.00",
        net_paid="33000.00",
        in_kind_value="11500.00",
        clawback_assessed="12000.00",
        clawback_recovered="4000.00",
    )


def _balances(talent: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    return {(b["fund_year"], b["programme"]): _pick(b, BALANCE_FIELDS) for b in talent["balances"]}


def _check_talents(a: Actors, last: int) -> None:
    t1 = expect(a.auditor.get(f"/v1/talents/T-1?min_position={last}"), 200)
    assert _pick(
        t1,
        ("talent_id", "name", "category", "employer", "arrived_on", "service_commitment_until"),
    ) == {
        "talent_id": "T-1",
        "name": "张伟",
        "category": "doctorate",
        "employer": "市第一人民医院",
        "arrived_on": "2023-06-01",
        "service_commitment_until": "2028-05-31",
    }
    assert t1["status"] == "departed"
    balances = _balances(t1)
    assert balances[(YEAR, "settling_in")] == _amounts(
        BALANCE_FIELDS,
        granted="30000.00",
        approved="30000.00",
        paid="35000.00",
        returned="10000.00",
        outstanding="5000.00",
        clawback_assessed="12000.00",
        clawback_recovered="4000.00",
        clawback_due="8000.00",
    )
    assert balances[(YEAR, "housing")] == _amounts(BALANCE_FIELDS, in_kind_value="7500.00")
    # the rejected G-3 leaves nothing (a row of zeros, or no row at all)
    assert balances.get((YEAR, "project_support"), _amounts(BALANCE_FIELDS)) == _amounts(
        BALANCE_FIELDS
    )
    assert set(balances) <= {(YEAR, "settling_in"), (YEAR, "housing"), (YEAR, "project_support")}

    t2 = expect(a.auditor.get(f"/v1/talents/T-2?min_position={last}"), 200)
    assert t2["status"] == "active"
    balances = _balances(t2)
    assert balances[(YEAR, "settling_in")] == _amounts(
        BALANCE_FIELDS,
        granted="8000.00",  # revoked: its effective amount is its net paid
        approved="8000.00",
        paid="8000.00",
    )
    assert balances[(YEAR, "housing")] == _amounts(BALANCE_FIELDS, in_kind_value="4000.00")


def _check_grants(a: Actors, last: int) -> None:
    g1 = expect(a.auditor.get("/v1/grants/G-1"), 200)
    assert (
        g1
        | {
            "grant_id": "G-1",
            "talent_id": "T-1",
            "fund_year": YEAR,
            "programme": "settling_in",
            "amount": "30000.00",
            "status": "approved",
            "proposed_by": "clerk",
            "decision_by": "approver",
            "effective_amount": "30000.00",
            "paid": "35000.00",
            "returned": "10000.00",
            "net_paid": "25000.00",
            "payable": "5000.00",
        }
        == g1
    )
    g2 = expect(a.auditor.get("/v1/grants/G-2"), 200)
    assert _pick(g2, ("status", "amount", "effective_amount", "net_paid", "payable")) == {
        "status": "revoked",
        "amount": "20000.00",
        "effective_amount": "8000.00",
        "net_paid": "8000.00",
        "payable": "0.00",
    }
    g3 = expect(a.auditor.get("/v1/grants/G-3"), 200)
    assert _pick(g3, ("status", "amount", "effective_amount", "payable", "decision_by")) == {
        "status": "rejected",
        "amount": "15000.00",
        "effective_amount": "0.00",
        "payable": "0.00",
        "decision_by": "approver",
    }


def _check_payments_waivers_and_clawbacks(a: Actors, last: int) -> None:
    p2 = expect(a.auditor.get("/v1/payments/P-2"), 200)
    assert (
        p2
        | {
            "payment_id": "P-2",
            "grant_id": "G-1",
            "talent_id": "T-1",
            "fund_year": YEAR,
            "programme": "settling_in",
            "amount": "10000.00",
            "value_date": "2024-03-15",
            "bank_reference": "BR-2",
            "status": "returned",
            "returned_on": "2024-03-20",
        }
        == p2
    )
    p1 = expect(a.auditor.get("/v1/payments/P-1"), 200)
    assert (p1["status"], p1["amount"], p1["returned_on"]) == ("paid", "20000.00", None)

    w1 = expect(a.auditor.get("/v1/rent-waivers/W-1"), 200)
    assert (
        w1
        | {
            "waiver_id": "W-1",
            "talent_id": "T-1",
            "fund_year": YEAR,
            "programme": "housing",
            "start_on": "2024-01-15",
            "end_on": "2024-03-01",
            "monthly_rent": "2500.00",
            "months": 3,
            "value": "7500.00",
            "status": "active",
        }
        == w1
    )
    w2 = expect(a.auditor.get("/v1/rent-waivers/W-2"), 200)
    assert _pick(w2, ("months", "value", "status", "ended_on")) == {
        "months": 4,
        "value": "4000.00",
        "status": "ended",
        "ended_on": "2024-05-31",
    }

    c1 = expect(a.auditor.get("/v1/clawbacks/C-1"), 200)
    assert (
        c1
        | {
            "clawback_id": "C-1",
            "grant_id": "G-1",
            "talent_id": "T-1",
            "fund_year": YEAR,
            "programme": "settling_in",
            "amount": "12000.00",
            "recovered": "4000.00",
            "due": "8000.00",
            "status": "open",
        }
        == c1
    )
    assert [(r["recovery_id"], r["amount"], r["bank_reference"]) for r in c1["recoveries"]] == [
        ("R-1", "4000.00", "RB-1")
    ]


def _check_every_role_reads_the_same(a: Actors, last: int) -> None:
    paths = [
        f"/v1/fund-years/{YEAR}?min_position={last}",
        f"/v1/talents/T-1?min_position={last}",
        "/v1/grants/G-1",
        "/v1/payments/P-1",
        "/v1/rent-waivers/W-1",
        "/v1/clawbacks/C-1",
    ]
    expected = {path: expect(a.auditor.get(path), 200) for path in paths}
    for role in ("admin", "clerk", "approver", "treasury", "auditor", "clerk_approver"):
        client: TestClient = getattr(a, role)
        for path in paths:
            assert expect(client.get(path), 200) == expected[path], (role, path)


def test_reads_after_a_scenario_of_every_write(api: Api, subtests: pytest.Subtests) -> None:
    a, last = _scenario(api)
    for name, check in (
        ("fund year lines and totals", _check_fund_year),
        ("talent profiles and balances", _check_talents),
        ("grants", _check_grants),
        ("payments, waivers and clawbacks", _check_payments_waivers_and_clawbacks),
        ("every role reads the same", _check_every_role_reads_the_same),
    ):
        with subtests.test(name):
            check(a, last)


# --- rent waiver months -----------------------------------------------------------

RENT = Decimal("1000.50")
MONTHS = [
    ("2024-01-15", "2024-03-01", 3),
    ("2024-01-01", "2024-01-31", 1),
    ("2024-06-15", "2024-06-15", 1),
    ("2024-01-31", "2024-02-01", 2),
    ("2024-02-29", "2024-03-01", 2),
    ("2024-01-01", "2024-12-31", 12),
    ("2024-12-31", "2024-12-31", 1),
]


def test_waiver_months_count_calendar_months_both_ends_included(api: Api) -> None:
    a = funded(api, lines=(("housing", "in_kind", "1000000"),))
    total = 0
    last = 0
    for n, (start, end, months) in enumerate(MONTHS):
        response = a.clerk.post(
            "/v1/rent-waivers", json=waiver_body(f"W-{n}", "T-1", start, end, str(RENT))
        )
        waiver = created(response)
        assert (waiver["months"], waiver["value"]) == (months, str(RENT * months)), (
            start,
            end,
        )
        assert expect(a.auditor.get(f"/v1/rent-waivers/W-{n}"), 200)["months"] == months
        total += months
        last = position(response)
    year = expect(a.auditor.get(f"/v1/fund-years/{YEAR}?min_position={last}"), 200)
    assert year["lines"][0]["committed"] == str(RENT * total)
    assert year["lines"][0]["in_kind_value"] == str(RENT * total)


ENDINGS = {
    "2024-01-20": (1, "1000.00"),  # the part month is kept whole
    "2024-06-01": (6, "6000.00"),
    "2024-12-20": (12, "12000.00"),  # ending on end_on releases nothing
}


def test_ending_a_waiver_early_keeps_the_months_up_to_its_month_and_releases_the_rest(
    api: Api, subtests: pytest.Subtests
) -> None:
    a = funded(api, lines=(("housing", "in_kind", "100000"),))
    kept = 0
    for n, (ended_on, (months, value)) in enumerate(ENDINGS.items()):
        with subtests.test(ended_on=ended_on):
            body = waiver_body(f"W-{n}", "T-1", "2024-01-15", "2024-12-20", "1000")
            assert created(a.clerk.post("/v1/rent-waivers", json=body))["value"] == "12000.00"
            response = a.clerk.post(f"/v1/rent-waivers/W-{n}/end", json={"ended_on": ended_on})
            waiver = expect(response, 200)
            assert (waiver["months"], waiver["value"], waiver["ended_on"]) == (
                months,
                value,
                ended_on,
            )
            kept += months * 1000
            line = expect(
                a.auditor.get(f"/v1/fund-years/{YEAR}?min_position={position(response)}"), 200
            )["lines"][0]
            assert (line["committed"], line["available"], line["in_kind_value"]) == (
                f"{kept}.00",
                f"{100000 - kept}.00",
                f"{kept}.00",
            )


def test_a_return_on_a_revoked_grant_releases_the_budget_instead_of_reopening_it(
    api: Api,
) -> None:
    a = funded(api)
    approved_grant(a, "G-1", amount="30000")
    pay(a, "P-1", amount="10000")
    expect(a.approver.post("/v1/grants/G-1/revoke", json={"reason": "政策调整"}), 200)
    response = a.treasury.post(
        "/v1/payments/P-1/return", json={"returned_on": "2024-03-05", "reason": "退票"}
    )
    expect(response, 200)
    grant = expect(a.auditor.get("/v1/grants/G-1"), 200)
    assert _pick(grant, ("status", "effective_amount", "net_paid", "payable")) == {
        "status": "revoked",
        "effective_amount": "0.00",
        "net_paid": "0.00",
        "payable": "0.00",
    }
    line = expect(a.auditor.get(f"/v1/fund-years/{YEAR}?min_position={position(response)}"), 200)[
        "lines"
    ]
    settling_in = next(x for x in line if x["programme"] == "settling_in")
    assert (settling_in["committed"], settling_in["net_paid"]) == ("0.00", "0.00")


# --- positions --------------------------------------------------------------------


def test_every_write_answers_an_increasing_ledger_position(api: Api, db_url: str) -> None:
    a = Actors.of(api)
    writes = [
        (a.admin, "/v1/fund-years", fund_year_body()),
        (a.admin, f"/v1/fund-years/{YEAR}/appropriations", appropriation_body()),
        (
            a.admin,
            f"/v1/fund-years/{YEAR}/appropriations",
            appropriation_body("AP-2", "housing", "in_kind", "50000"),
        ),
        (a.clerk, "/v1/talents", talent_body()),
        (a.clerk, "/v1/grants", grant_body()),
        (a.approver, "/v1/grants/G-1/approve", {"note": "同意"}),
        (
            a.treasury,
            "/v1/payments",
            {
                "payment_id": "P-1",
                "grant_id": "G-1",
                "amount": "100",
                "value_date": "2024-03-01",
                "bank_reference": "BR-1",
            },
        ),
        (a.clerk, "/v1/clawbacks", clawback_body(amount="0.01")),
        (a.treasury, "/v1/payments/P-1/return", {"returned_on": "2024-03-02", "reason": "退票"}),
        (a.clerk, "/v1/rent-waivers", waiver_body()),
        (a.clerk, "/v1/rent-waivers/W-1/end", {"ended_on": "2024-02-01"}),
        (a.clerk, "/v1/talents/T-1/departure", {"departed_on": "2024-09-30", "reason": "调离"}),
        (a.admin, f"/v1/fund-years/{YEAR}/close", {"reason": "年度结账"}),
    ]
    positions = []
    for client, path, body in writes:
        response = client.post(path, json=body)
        assert response.status_code in {200, 201}, (path, response.text)
        positions.append(position(response))
        assert positions[-1] == head_position(db_url), path
    assert positions == sorted(set(positions)), positions


def test_a_read_at_min_position_sees_the_write(api: Api) -> None:
    a = funded(api)
    for n in range(1, 4):
        response = a.clerk.post("/v1/grants", json=grant_body(f"G-{n}", amount="1000.25"))
        created(response)
        year = expect(
            a.auditor.get(f"/v1/fund-years/{YEAR}?min_position={position(response)}"), 200
        )
        settling_in = next(x for x in year["lines"] if x["programme"] == "settling_in")
        assert settling_in["committed"] == str(n * Decimal("1000.25"))
        talent = expect(a.auditor.get(f"/v1/talents/T-1?min_position={position(response)}"), 200)
        assert _balances(talent)[(YEAR, "settling_in")]["granted"] == str(n * Decimal("1000.25"))


@pytest.mark.parametrize(
    "query", ["min_position=1000000", "as_of_position=1000000", "min_position=9223372036854775807"]
)
def test_a_position_past_the_last_event_is_refused_at_once(api: Api, query: str) -> None:
    """No write answered that position: waiting could not help (docs/api.md)."""
    a = funded(api)
    assert_validation_error(a.auditor.get(f"/v1/fund-years/{YEAR}?min_position=-1"))
    assert_validation_error(a.auditor.get(f"/v1/fund-years/{YEAR}?min_position=soon"))
    started = time.monotonic()
    response = a.auditor.get(f"/v1/talents/T-1?{query}")
    assert_validation_error(response, query.partition("=")[0])
    assert time.monotonic() - started < 2


def test_a_position_the_read_models_do_not_reach_is_503_after_the_wait(
    api: Api, db_url: str
) -> None:
    """A position a write answered, which the views do not reach within 5 s (here
    their worker is held on its tracking rows): 503 with Retry-After."""
    a = funded(api)
    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT * FROM projection_tracking FOR UPDATE")
        registered = a.clerk.post("/v1/talents", json=talent_body("T-9"))
        at = position(registered)
        created(registered)
        started = time.monotonic()
        response = a.auditor.get(f"/v1/talents/T-1?min_position={at}")
        waited = time.monotonic() - started
        assert_problem(response, 503, "unavailable")
        assert str(at) in response.json()["detail"]
        assert response.headers["Retry-After"].isdigit()
        assert 4.5 <= waited < 15, waited
        response = a.auditor.get(f"/v1/talents/T-1?as_of_position={at}")
        assert_problem(response, 503, "unavailable")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/talents/-T-1",  # a malformed path id
        "/v1/fund-years/1800",  # a year out of range
        "/v1/talents/T-1?as_of=yesterday",  # a malformed query of a dependency
        f"/v1/fund-years/{YEAR}/history?limit=0",  # a malformed query of the endpoint
        "/v1/reconciliations/-R",
    ],
)
def test_a_read_refused_for_its_parameters_is_refused_at_once_not_after_the_wait(
    api: Api, path: str
) -> None:
    """FastAPI checks path and query only after the dependencies, of which the wait
    for `min_position` is one: a 422 must not first wait 5 s and turn into a 503."""
    a = funded(api)
    started = time.monotonic()
    response = a.auditor.get(f"{path}{'&' if '?' in path else '?'}min_position=1000000")
    assert_validation_error(response)
    assert time.monotonic() - started < 2


# --- OpenAPI ----------------------------------------------------------------------

# the 409 codes each write can answer (docs/api.md)
WRITE_CONFLICTS = {
    "/v1/fund-years": {"idempotency_conflict"},
    "/v1/fund-years/{year}/appropriations": {"idempotency_conflict", "fund_year_closed"},
    "/v1/fund-years/{year}/close": {"invalid_state"},
    "/v1/talents": {"idempotency_conflict"},
    "/v1/talents/{talent_id}/departure": {"invalid_state"},
    "/v1/grants": {
        "idempotency_conflict",
        "budget_exceeded",
        "fund_year_closed",
        "talent_departed",
    },
    "/v1/grants/{grant_id}/approve": {"invalid_state", "self_approval"},
    "/v1/grants/{grant_id}/reject": {"invalid_state"},
    "/v1/grants/{grant_id}/revoke": {"invalid_state"},
    "/v1/rent-waivers": {
        "idempotency_conflict",
        "budget_exceeded",
        "fund_year_closed",
        "talent_departed",
    },
    "/v1/rent-waivers/{waiver_id}/end": {"invalid_state"},
    "/v1/payments": {
        "idempotency_conflict",
        "invalid_state",
        "overpayment",
        "duplicate_bank_reference",
        "talent_departed",
    },
    "/v1/payments/{payment_id}/return": {"invalid_state"},
    "/v1/clawbacks": {"idempotency_conflict", "clawback_exceeds_paid"},
    "/v1/clawbacks/{clawback_id}/recoveries": {
        "idempotency_conflict",
        "overpayment",
        "duplicate_bank_reference",
    },
}
SINGLE_READS = {
    "/v1/fund-years/{year}",
    "/v1/talents/{talent_id}",
    "/v1/grants/{grant_id}",
    "/v1/payments/{payment_id}",
    "/v1/rent-waivers/{waiver_id}",
    "/v1/clawbacks/{clawback_id}",
}


@pytest.fixture(scope="module")
def app_without_database() -> FastAPI:
    """The app as built, its lifespan never run: the docs need no database."""
    return create_app(
        Settings(database_url="postgresql://unused@127.0.0.1:1/unused", data_dir=Path("var"))
    )


@pytest.fixture(scope="module")
def spec(app_without_database: FastAPI) -> dict[str, Any]:
    return expect(TestClient(app_without_database).get("/openapi.json"), 200)


def _problem_statuses(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        status: response
        for status, response in operation["responses"].items()
        if "application/problem+json" in response.get("content", {})
    }


def test_openapi_lists_every_write_and_read_of_the_contract(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    for path in WRITE_CONFLICTS:
        assert "post" in paths.get(path, {}), path
    for path in SINGLE_READS:
        assert "get" in paths.get(path, {}), path


def test_openapi_lists_the_problems_of_every_write(
    spec: dict[str, Any], subtests: pytest.Subtests
) -> None:
    for path, conflicts in WRITE_CONFLICTS.items():
        with subtests.test(path=path):
            operation = spec["paths"][path]["post"]
            problems = _problem_statuses(operation)
            assert {"401", "403", "413", "415", "422", "409"} <= problems.keys(), problems.keys()
            if "{" in path:
                assert "404" in problems
            described = problems["409"]["description"]
            missing = {code for code in conflicts if f"`{code}`" not in described}
            assert not missing, f"409 of {path} does not list {missing}: {described}"


def test_openapi_lists_the_problems_of_every_v1_route(
    spec: dict[str, Any], subtests: pytest.Subtests
) -> None:
    v1 = {path: item for path, item in spec["paths"].items() if path.startswith("/v1/")}
    assert len(v1) >= len(WRITE_CONFLICTS) + len(SINGLE_READS)
    for path, item in v1.items():
        for method, operation in item.items():
            with subtests.test(method=method, path=path):
                problems = _problem_statuses(operation)
                assert {"401", "422"} <= problems.keys(), problems.keys()
                if method == "post":
                    assert "403" in problems
                if "{" in path:
                    assert "404" in problems
                assert operation.get("security"), "the bearer key is documented"


def test_openapi_documents_the_problem_schema_under_application_problem_json(
    spec: dict[str, Any],
) -> None:
    operation = spec["paths"]["/v1/grants"]["post"]
    for status in ("401", "403", "409", "422"):
        content = operation["responses"][status]["content"]
        schema = content["application/problem+json"]["schema"]
        problem, codes = schema["allOf"]
        assert problem == {"$ref": "#/components/schemas/Problem"}
        assert codes["properties"]["code"]["enum"], "the codes this status answers"
        assert "application/json" not in content


def test_the_interactive_docs_answer(app_without_database: FastAPI) -> None:
    docs = TestClient(app_without_database).get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in docs.text


def test_a_closed_fund_year_without_lines_reads_closed_with_zero_totals(api: Api) -> None:
    a = Actors.of(api)
    open_year(a, 2030, lines=())
    response = a.admin.post("/v1/fund-years/2030/close", json={"reason": "测试"})
    year = expect(a.auditor.get(f"/v1/fund-years/2030?min_position={position(response)}"), 200)
    assert (year["status"], year["lines"]) == ("closed", [])
    assert _pick(year["totals"], LINE_FIELDS) == _amounts(LINE_FIELDS)
