"""The exceptions of instalments and runs (§7, second edition) over HTTP, each seen
firing and not firing: `double_housing_benefit` (a rent-subsidy instalment in a month
a rent waiver of the same talent covers) and `run_item_overdue` (a run's item the bank
has answered neither way 10 days after the value date)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.scenario import (
    Actors,
    Api,
    created,
    expect,
    grant_body,
    head_position,
    open_year,
    talent_body,
    waiver_body,
)

pytestmark = pytest.mark.db

LINES = (("rent_subsidy", "cash", "100000"), ("housing", "in_kind", "100000"))


def _flags(a: Actors, db_url: str, code: str, **params: Any) -> list[dict[str, Any]]:
    query = {"min_position": head_position(db_url), **params}
    body = expect(a.auditor.get("/v1/reports/exceptions", params=query), 200)
    return [item for item in body["items"] if item["code"] == code]


def _world(api: Api) -> Actors:
    a = Actors.of(api)
    open_year(a, 2024, LINES)
    for t in ("T-1", "T-2"):
        created(a.clerk.post("/v1/talents", json={**talent_body(t), "bank_account": "62220001"}))
    return a


def _rent_subsidy(a: Actors, grant_id: str, talent_id: str, first_due_on: str) -> None:
    plan = {"count": 3, "first_due_on": first_due_on, "interval_months": 1}
    body = {**grant_body(grant_id, talent_id, "3000", "rent_subsidy"), "instalments": plan}
    created(a.clerk.post("/v1/grants", json=body))
    expect(a.approver.post(f"/v1/grants/{grant_id}/approve", json={}), 200)


def test_a_rent_subsidy_month_a_waiver_covers_is_a_double_housing_benefit(
    api: Api, db_url: str
) -> None:
    a = _world(api)
    # T-1: subsidy for January to March, a waiver from mid-March: March is paid twice
    _rent_subsidy(a, "G-1", "T-1", "2024-01-31")
    created(
        a.clerk.post("/v1/rent-waivers", json=waiver_body("W-1", "T-1", "2024-03-15", "2024-08-14"))
    )
    # T-2: subsidy for January to March, a waiver from April: no overlap
    _rent_subsidy(a, "G-2", "T-2", "2024-01-31")
    created(
        a.clerk.post("/v1/rent-waivers", json=waiver_body("W-2", "T-2", "2024-04-01", "2024-08-31"))
    )
    (flag,) = _flags(a, db_url, "double_housing_benefit", fund_year=2024)
    assert flag["months"] == ["2024-03"]
    assert (flag["talent_id"], flag["grant_id"], flag["waiver_id"]) == ("T-1", "G-1", "W-1")
    # revoked before any payment, its instalments are cancelled: no longer a double benefit
    expect(a.approver.post("/v1/grants/G-1/revoke", json={"reason": "改为免租"}), 200)
    assert _flags(a, db_url, "double_housing_benefit") == []


def test_an_item_unanswered_ten_days_after_the_value_date_is_overdue(api: Api, db_url: str) -> None:
    a = _world(api)
    _rent_subsidy(a, "G-1", "T-1", "2024-01-31")
    _rent_subsidy(a, "G-2", "T-2", "2024-01-31")
    body = {"run_id": "R-1", "due_on": "2024-01-31", "value_date": "2024-02-01"}
    created(a.treasury.post("/v1/disbursement-runs", json=body))
    assert _flags(a, db_url, "run_item_overdue", on="2024-02-11") == []
    overdue = _flags(a, db_url, "run_item_overdue", on="2024-02-12")
    assert [(f["run_id"], f["payment_id"]) for f in overdue] == [("R-1", "R-1-1"), ("R-1", "R-1-2")]
    settlement = {
        "settled": [{"payment_id": "R-1-1", "bank_reference": "BK-1"}],
        "rejected": [{"payment_id": "R-1-2", "reason": "AC04"}],
    }
    expect(a.treasury.post("/v1/disbursement-runs/R-1/settle", json=settlement), 200)
    assert _flags(a, db_url, "run_item_overdue", on="2024-12-31") == []
