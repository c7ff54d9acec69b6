"""Lists and filters (docs/api.md, "Lists"): every list pages oldest first by keyset
cursor, its items equal the single reads, its filters combine with AND (dates
inclusive), and an unknown filter or a malformed value is a 422 that changes nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration.scenario import (
    YEAR,
    Actors,
    Api,
    Json,
    approved_grant,
    assert_validation_error,
    clawback_body,
    created,
    depart,
    expect,
    funded,
    grant_body,
    open_year,
    pay,
    position,
    recovery_body,
    talent_body,
    waiver_body,
)

STATEMENT = (
    "value_date,bank_reference,amount,direction,counterparty\n"
    "2024-03-01,BR-1,20000.00,debit,市第一人民医院\n"
    "2024-11-02,BR-404,5.00,debit,某公司\n"
)


def world(api: Api) -> tuple[Actors, int]:
    """Two fund years; T-1..T-3 of two categories and employers, T-2 departed; grants
    in every status over two programmes and two talents; payments on two dates, one
    returned; two waivers, one ended; two clawbacks, one recovered; a reconciliation.
    The last write's position."""
    a = funded(api, (("settling_in", "cash", "500000"), ("housing", "in_kind", "90000")))
    open_year(a, 2025, (("settling_in", "cash", "100000"),))
    c = a.clerk
    created(c.post("/v1/talents", json=talent_body("T-2", name="李娜", arrived_on="2024-02-01")))
    body = talent_body("T-3", name="王芳", category="master", employer="市科技局")
    created(c.post("/v1/talents", json=body | {"arrived_on": "2024-07-01"}))
    approved_grant(a, "G-1", amount="30000")
    approved_grant(a, "G-2", amount="20000", talent_id="T-2")
    created(c.post("/v1/grants", json=grant_body("G-3", talent_id="T-3", amount="1000")))
    created(c.post("/v1/grants", json=grant_body("G-4", amount="500")))
    expect(a.approver.post("/v1/grants/G-4/reject", json={"reason": "材料不全"}), 200)
    approved_grant(a, "G-5", amount="800", fund_year=2025)
    pay(a, "P-1", amount="20000", value_date="2024-03-01", bank_reference="BR-1")
    pay(a, "P-2", grant_id="G-2", amount="5000", value_date="2024-04-30", bank_reference="BR-2")
    pay(a, "P-3", grant_id="G-2", amount="1000", value_date="2024-05-01", bank_reference="BR-3")
    body = {"returned_on": "2024-05-03", "reason": "账户已注销"}
    expect(a.treasury.post("/v1/payments/P-3/return", json=body), 200)
    expect(a.approver.post("/v1/grants/G-2/revoke", json={"reason": "不符合条件"}), 200)
    created(c.post("/v1/rent-waivers", json=waiver_body("W-1")))
    created(c.post("/v1/rent-waivers", json=waiver_body("W-2", talent_id="T-2")))
    expect(c.post("/v1/rent-waivers/W-1/end", json={"ended_on": "2024-02-10"}), 200)
    depart(a, "T-1")
    depart(a, "T-2")
    created(c.post("/v1/clawbacks", json=clawback_body("C-1", amount="12000")))
    created(c.post("/v1/clawbacks", json=clawback_body("C-2", "G-2", amount="1000")))
    for n, amount in enumerate(("600", "400"), 1):
        body = recovery_body(f"R-{n}", amount=amount, bank_reference=f"RB-{n}")
        created(a.treasury.post("/v1/clawbacks/C-2/recoveries", json=body))
    response = a.treasury.post(
        "/v1/reconciliations", content=STATEMENT.encode(), headers={"Content-Type": "text/csv"}
    )
    created(response)
    return a, position(response)


def walk(client: TestClient, path: str, limit: int = 2, **filters: Any) -> list[Json]:
    """Every item of a list, a page of `limit` at a time, following `next`."""
    items: list[Json] = []
    params: dict[str, Any] = {"limit": limit, **filters}
    while True:
        page = expect(client.get(path, params=params), 200)
        assert page.keys() == {"items", "next"}
        assert len(page["items"]) <= limit
        items += page["items"]
        if page["next"] is None:
            return items
        assert len(page["items"]) == limit
        params["after"] = page["next"]


def ids(items: list[Json], key: str) -> list[str]:
    return [item[key] for item in items]


@pytest.fixture
def lists(api: Api) -> Actors:
    a, head = world(api)
    expect(a.auditor.get("/v1/grants", params={"min_position": head}), 200)
    return a


# (list path, id field, single-read path)
RESOURCES = [
    ("/v1/grants", "grant_id", "/v1/grants/{}"),
    ("/v1/payments", "payment_id", "/v1/payments/{}"),
    ("/v1/rent-waivers", "waiver_id", "/v1/rent-waivers/{}"),
    ("/v1/clawbacks", "clawback_id", "/v1/clawbacks/{}"),
    ("/v1/talents", "talent_id", "/v1/talents/{}"),
    ("/v1/fund-years", "year", "/v1/fund-years/{}"),
]


def test_every_list_holds_the_single_reads_oldest_first_a_page_at_a_time(lists: Actors) -> None:
    expected = {
        "/v1/grants": ["G-1", "G-2", "G-3", "G-4", "G-5"],
        "/v1/payments": ["P-1", "P-2", "P-3"],
        "/v1/rent-waivers": ["W-1", "W-2"],
        "/v1/clawbacks": ["C-1", "C-2"],
        "/v1/talents": ["T-1", "T-2", "T-3"],
        "/v1/fund-years": [2024, 2025],
    }
    for path, key, single in RESOURCES:
        for limit in (1, 2, 1000):
            items = walk(lists.auditor, path, limit)
            assert ids(items, key) == expected[path], (path, limit)
            for item in items:
                assert item == expect(lists.auditor.get(single.format(item[key])), 200), path


def test_list_items_carry_what_happened_to_them(lists: Actors) -> None:
    """Statuses and amounts as they stand, not as created."""
    grants = {g["grant_id"]: g for g in walk(lists.auditor, "/v1/grants", 1000)}
    assert grants["G-2"]["status"] == "revoked"
    assert grants["G-2"]["net_paid"] == "5000.00"
    assert grants["G-2"]["effective_amount"] == "5000.00"
    assert grants["G-4"]["decision_note"] == "材料不全"
    payments = {p["payment_id"]: p for p in walk(lists.auditor, "/v1/payments", 1000)}
    assert payments["P-3"]["status"] == "returned"
    assert payments["P-3"]["return_reason"] == "账户已注销"
    waivers = {w["waiver_id"]: w for w in walk(lists.auditor, "/v1/rent-waivers", 1000)}
    assert (waivers["W-1"]["status"], waivers["W-1"]["months"]) == ("ended", 2)
    assert waivers["W-1"]["value"] == "5000.00"  # January and February
    clawbacks = {c["clawback_id"]: c for c in walk(lists.auditor, "/v1/clawbacks", 1000)}
    assert clawbacks["C-2"]["status"] == "recovered"
    assert ids(clawbacks["C-2"]["recoveries"], "recovery_id") == ["R-1", "R-2"]
    talents = {t["talent_id"]: t for t in walk(lists.auditor, "/v1/talents", 1000)}
    assert talents["T-2"]["name"] == "李娜"
    assert talents["T-2"]["status"] == "departed"


@pytest.mark.parametrize(
    ("path", "key", "filters", "expected"),
    [
        ("/v1/grants", "grant_id", {"fund_year": 2025}, ["G-5"]),
        ("/v1/grants", "grant_id", {"fund_year": YEAR, "talent_id": "T-1"}, ["G-1", "G-4"]),
        ("/v1/grants", "grant_id", {"status": "approved"}, ["G-1", "G-5"]),
        ("/v1/grants", "grant_id", {"status": "proposed"}, ["G-3"]),
        ("/v1/grants", "grant_id", {"programme": "housing"}, []),
        ("/v1/grants", "grant_id", {"programme": "settling_in", "status": "rejected"}, ["G-4"]),
        ("/v1/payments", "payment_id", {"grant_id": "G-2"}, ["P-2", "P-3"]),
        ("/v1/payments", "payment_id", {"status": "returned"}, ["P-3"]),
        ("/v1/payments", "payment_id", {"status": "paid", "talent_id": "T-2"}, ["P-2"]),
        # dates are inclusive at both ends
        (
            "/v1/payments",
            "payment_id",
            {"value_date_from": "2024-03-01", "value_date_to": "2024-04-30"},
            ["P-1", "P-2"],
        ),
        ("/v1/payments", "payment_id", {"value_date_from": "2024-04-30"}, ["P-2", "P-3"]),
        ("/v1/payments", "payment_id", {"value_date_to": "2024-02-29"}, []),
        ("/v1/payments", "payment_id", {"fund_year": 2025}, []),
        ("/v1/rent-waivers", "waiver_id", {"status": "active"}, ["W-2"]),
        ("/v1/rent-waivers", "waiver_id", {"talent_id": "T-1", "fund_year": YEAR}, ["W-1"]),
        ("/v1/clawbacks", "clawback_id", {"status": "open"}, ["C-1"]),
        ("/v1/clawbacks", "clawback_id", {"talent_id": "T-2"}, ["C-2"]),
        ("/v1/clawbacks", "clawback_id", {"fund_year": 2025}, []),
        ("/v1/talents", "talent_id", {"category": "master"}, ["T-3"]),
        ("/v1/talents", "talent_id", {"employer": "市第一人民医院"}, ["T-1", "T-2"]),
        ("/v1/talents", "talent_id", {"status": "active"}, ["T-3"]),
        (
            "/v1/talents",
            "talent_id",
            {"arrived_from": "2024-02-01", "arrived_to": "2024-07-01"},
            ["T-2", "T-3"],
        ),
        ("/v1/talents", "talent_id", {"status": "departed", "arrived_to": "2023-12-31"}, ["T-1"]),
        ("/v1/fund-years", "year", {"status": "open"}, [2024, 2025]),
        ("/v1/fund-years", "year", {"status": "closed"}, []),
    ],
)
def test_filters_combine_with_and(
    lists: Actors, path: str, key: str, filters: Json, expected: list[Any]
) -> None:
    assert ids(walk(lists.auditor, path, 1, **filters), key) == expected


def test_a_closed_fund_year_is_listed_as_closed(lists: Actors) -> None:
    r = lists.admin.post("/v1/fund-years/2025/close", json={"reason": "年度决算"})
    expect(lists.auditor.get("/v1/fund-years", params={"min_position": position(r)}), 200)
    assert ids(walk(lists.auditor, "/v1/fund-years", status="closed"), "year") == [2025]
    assert ids(walk(lists.auditor, "/v1/fund-years", status="open"), "year") == [2024]


def test_reconciliations_list_their_period_and_counts(lists: Actors) -> None:
    (item,) = walk(lists.auditor, "/v1/reconciliations")
    report = expect(lists.auditor.get(f"/v1/reconciliations/{item['reconciliation_id']}"), 200)
    assert item["period"] == report["period"] == {"from": "2024-03-01", "to": "2024-11-02"}
    assert item["line_count"] == 2
    assert item["counts"] == {
        "matched": 1,
        "amount_mismatch": 0,
        "date_mismatch": 0,
        "unknown_in_ledger": 1,
        "missing_in_bank": 2,  # P-2 and P-3, paid in the period, are not on the statement
    }
    assert item["recorded_at"].endswith("Z")
    # a period meets the dates asked for when they overlap at all, ends included
    for dates, found in [
        ({"value_date_from": "2024-11-02"}, 1),
        ({"value_date_to": "2024-03-01"}, 1),
        ({"value_date_from": "2024-11-03"}, 0),
        ({"value_date_to": "2024-02-29"}, 0),
        ({"value_date_from": "2024-04-01", "value_date_to": "2024-04-02"}, 1),
    ]:
        assert len(walk(lists.auditor, "/v1/reconciliations", **dates)) == found, dates


def test_a_new_item_lands_on_the_last_page_not_on_a_page_already_read(lists: Actors) -> None:
    first = expect(lists.auditor.get("/v1/grants", params={"limit": 2}), 200)
    r = lists.clerk.post("/v1/grants", json=grant_body("G-0", talent_id="T-3", amount="1"))
    rest = walk(lists.auditor, "/v1/grants", 2, after=first["next"], min_position=position(r))
    assert ids(first["items"] + rest, "grant_id") == ["G-1", "G-2", "G-3", "G-4", "G-5", "G-0"]


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/v1/grants", "state=approved", "state"),  # not a filter of grants
        ("/v1/grants", "fund_year=2024&talentid=T-1", "talentid"),
        ("/v1/payments", "value_date_from=2024-13-01", "value_date_from"),
        ("/v1/payments", "value_date_to=01/05/2024", "value_date_to"),
        ("/v1/payments", "status=refunded", "status"),
        ("/v1/grants", "status=Approved", "status"),
        ("/v1/grants", "fund_year=twenty", "fund_year"),
        ("/v1/grants", "fund_year=1800", "fund_year"),
        ("/v1/grants", "talent_id=-T", "talent_id"),
        ("/v1/grants", "programme=Settling In", "programme"),
        ("/v1/rent-waivers", "status=closed", "status"),
        ("/v1/clawbacks", "talent_id=", "talent_id"),
        ("/v1/talents", "arrived_from=yesterday", "arrived_from"),
        ("/v1/talents", "employer=", "employer"),
        ("/v1/fund-years", "status=archived", "status"),
        ("/v1/reconciliations", "value_date_from=2024-02-30", "value_date_from"),
        ("/v1/reconciliations", "fund_year=2024", "fund_year"),
        ("/v1/grants", "after=abc", "after"),
        ("/v1/grants", "after=-1", "after"),
        ("/v1/grants", "limit=0", "limit"),
        ("/v1/grants", "limit=1001", "limit"),
        ("/v1/events", "talent_id=T-1", "talent_id"),  # the event stream takes no filters
    ],
)
def test_an_unknown_filter_or_a_malformed_value_is_a_422(
    api: Api, path: str, query: str, field: str
) -> None:
    a = funded(api)
    response = a.auditor.get(f"{path}?{query}")
    body = assert_validation_error(response, field)
    assert body["errors"][0]["loc"][0] == "query"


def test_lists_need_a_key_and_are_open_to_every_role(api: Api) -> None:
    a = funded(api)
    assert api(None).get("/v1/grants").status_code == 401
    for client in (a.admin, a.clerk, a.approver, a.treasury, a.auditor):
        for path, _, _ in RESOURCES:
            assert client.get(path).status_code == 200, path
