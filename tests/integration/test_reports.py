"""Budget execution and the year-end statement (docs/api.md, "Reports") of a fund year
with payments, a return, a payment the next year, waivers (one ended early) and a
clawback, checked against figures worked out by hand below."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ledger.entrypoints.runtime import Settings
from tests.integration.scenario import (
    YEAR,
    Actors,
    Api,
    Json,
    approved_grant,
    assert_problem,
    assert_validation_error,
    clawback_body,
    created,
    depart,
    expect,
    funded,
    grant_body,
    pay,
    position,
    recovery_body,
    talent_body,
    waiver_body,
)

LINES = (("settling_in", "cash", "100000"), ("housing", "in_kind", "60000"))


def world(api: Api) -> tuple[Actors, int]:
    """settling_in (cash, 100,000): G-1 30,000 to T-1 and G-2 20,000 to T-2 approved,
    G-3 5,000 proposed, G-4 1,000 rejected. Paid: 10,000 on 31 Jan and 8,000 on 1 Mar
    (G-1), 6,000 on 31 Mar (G-2, returned 2 Apr) and 4,000 on 15 May (G-2), and 2,000
    on 10 Jan 2025 (G-1). T-2 departs; a clawback of 3,000 on G-2, 1,000 recovered.
    housing (in kind, 60,000): W-1 2,500 a month from 15 Feb to 31 Jul, ended 20 Apr
    (Feb-Apr: 7,500); W-2 3,000 a month from 1 Jun to 31 Aug (9,000)."""
    a = funded(api, LINES)
    c, t = a.clerk, a.treasury
    created(c.post("/v1/talents", json=talent_body("T-2", name="李娜")))
    approved_grant(a, "G-1", amount="30000")
    approved_grant(a, "G-2", amount="20000", talent_id="T-2")
    created(c.post("/v1/grants", json=grant_body("G-3", amount="5000")))
    created(c.post("/v1/grants", json=grant_body("G-4", talent_id="T-2", amount="1000")))
    expect(a.approver.post("/v1/grants/G-4/reject", json={"reason": "材料不全"}), 200)
    pay(a, "P-1", amount="10000", value_date="2024-01-31", bank_reference="BR-1")
    pay(a, "P-2", amount="8000", value_date="2024-03-01", bank_reference="BR-2")
    pay(a, "P-3", grant_id="G-2", amount="6000", value_date="2024-03-31", bank_reference="BR-3")
    body = {"returned_on": "2024-04-02", "reason": "账户已注销"}
    expect(t.post("/v1/payments/P-3/return", json=body), 200)
    pay(a, "P-4", grant_id="G-2", amount="4000", value_date="2024-05-15", bank_reference="BR-4")
    pay(a, "P-5", amount="2000", value_date="2025-01-10", bank_reference="BR-5")
    body = waiver_body("W-1", start_on="2024-02-15", end_on="2024-07-31", monthly_rent="2500")
    created(c.post("/v1/rent-waivers", json=body))
    expect(c.post("/v1/rent-waivers/W-1/end", json={"ended_on": "2024-04-20"}), 200)
    body = waiver_body(
        "W-2", "T-2", start_on="2024-06-01", end_on="2024-08-31", monthly_rent="3000"
    )
    created(c.post("/v1/rent-waivers", json=body))
    depart(a, "T-2")
    created(c.post("/v1/clawbacks", json=clawback_body("C-1", "G-2", amount="3000")))
    r = t.post("/v1/clawbacks/C-1/recoveries", json=recovery_body("R-1", amount="1000"))
    created(r)
    return a, position(r)


@pytest.fixture
def reports(api: Api) -> Actors:
    a, head = world(api)
    expect(a.auditor.get(f"/v1/fund-years/{YEAR}/year-end", params={"min_position": head}), 200)
    return a


def execution(a: Actors, on: str) -> Json:
    return expect(a.auditor.get(f"/v1/fund-years/{YEAR}/execution", params={"on": on}), 200)


def months(line: Json, field: str) -> dict[str, str]:
    """A line's non-zero months of one amount, by month number."""
    return {m["month"][5:]: m[field] for m in line["months"] if m[field] != "0.00"}


def test_execution_mid_year_counts_only_business_dates_up_to_the_day(reports: Actors) -> None:
    report = execution(reports, "2024-04-15")
    assert report["year"] == YEAR
    assert report["on"] == "2024-04-15"
    # 31 + 29 + 31 + 15 = 106 days of 366: 0.28961...
    assert report["elapsed_share"] == "0.2896"
    cash, in_kind = report["lines"]  # ordered by programme: housing first
    cash, in_kind = (in_kind, cash) if cash["programme"] == "housing" else (cash, in_kind)
    assert [m["month"] for m in cash["months"]] == [f"2024-{m:02d}" for m in range(1, 13)]
    assert months(cash, "paid") == {"01": "10000.00", "03": "14000.00"}  # May is after the day
    assert months(cash, "returned") == {"04": "6000.00"}  # in its return's month
    assert months(cash, "net_paid") == {"01": "10000.00", "03": "14000.00", "04": "-6000.00"}
    assert cash == cash | {
        "programme": "settling_in",
        "kind": "cash",
        "appropriated": "100000.00",
        "committed": "55000.00",  # as recorded now: G-1, G-2 and the proposed G-3
        "net_paid": "18000.00",
        "in_kind_value": "0.00",
        "execution_rate": "0.1800",
        "lag": "0.1096",  # 0.28961 - 0.18
        "outside_year": {"paid": "0.00", "returned": "0.00", "net_paid": "0.00"},
    }
    # W-1's February, March and April count from their first days; W-2's June not yet
    assert months(in_kind, "in_kind_value") == {"02": "2500.00", "03": "2500.00", "04": "2500.00"}
    assert in_kind == in_kind | {
        "kind": "in_kind",
        "appropriated": "60000.00",
        "committed": "16500.00",
        "in_kind_value": "7500.00",
        "execution_rate": "0.1250",
        "lag": "0.1646",
    }
    assert report["totals"] == {
        "appropriated": "160000.00",
        "committed": "71500.00",
        "net_paid": "18000.00",
        "in_kind_value": "7500.00",
        "execution_rate": "0.1594",  # 25,500 / 160,000 = 0.159375
        "lag": "0.1302",  # 0.289617 - 0.159375 = 0.130242
        "outside_year": {"paid": "0.00", "returned": "0.00", "net_paid": "0.00"},
    }


def test_execution_after_the_year_counts_the_payment_made_the_next_year(
    reports: Actors,
) -> None:
    report = execution(reports, "2025-02-01")
    assert report["elapsed_share"] == "1.0000"
    lines = {line["programme"]: line for line in report["lines"]}
    cash = lines["settling_in"]
    assert months(cash, "paid") == {"01": "10000.00", "03": "14000.00", "05": "4000.00"}
    assert cash["outside_year"] == {"paid": "2000.00", "returned": "0.00", "net_paid": "2000.00"}
    assert (cash["net_paid"], cash["execution_rate"], cash["lag"]) == (
        "24000.00",
        "0.2400",
        "0.7600",
    )
    housing = lines["housing"]
    assert months(housing, "in_kind_value") == {
        **dict.fromkeys(("02", "03", "04"), "2500.00"),
        **dict.fromkeys(("06", "07", "08"), "3000.00"),
    }
    assert (housing["in_kind_value"], housing["execution_rate"]) == ("16500.00", "0.2750")
    # 40,500 / 160,000 = 0.253125; 1 - 0.253125 = 0.746875, half to even: 0.7469
    assert (report["totals"]["execution_rate"], report["totals"]["lag"]) == ("0.2531", "0.7469")


def test_execution_before_the_year_has_nothing_and_no_time_elapsed(reports: Actors) -> None:
    report = execution(reports, "2023-12-31")
    assert report["elapsed_share"] == "0.0000"
    assert report["totals"]["net_paid"] == report["totals"]["in_kind_value"] == "0.00"
    assert report["totals"]["execution_rate"] == report["totals"]["lag"] == "0.0000"
    first_day = execution(reports, "2024-01-01")
    assert first_day["elapsed_share"] == "0.0027"  # 1/366


def test_the_year_end_statement_balances_on_every_line_and_in_total(reports: Actors) -> None:
    response = reports.auditor.get(f"/v1/fund-years/{YEAR}/year-end")
    statement = expect(response, 200)
    assert int(response.headers["Ledger-Position"]) > 0
    assert (statement["year"], statement["status"]) == (YEAR, "open")
    assert statement["closed_at"] is None
    assert statement["checkpoint_id"] is None
    lines = {line["programme"]: line for line in statement["lines"]}
    assert lines["settling_in"] == {
        "programme": "settling_in",
        "kind": "cash",
        "appropriated": "100000.00",
        "committed": "55000.00",
        "net_paid": "24000.00",  # 30,000 paid less 6,000 returned
        "in_kind_value": "0.00",
        "carried_forward": "26000.00",  # G-1: 30,000 - 20,000; G-2: 20,000 - 4,000
        "pending": "5000.00",  # G-3
        "lapsed": "45000.00",
        "clawback_recovered": "1000.00",
    }
    assert lines["housing"] == {
        "programme": "housing",
        "kind": "in_kind",
        "appropriated": "60000.00",
        "committed": "16500.00",
        "net_paid": "0.00",
        "in_kind_value": "16500.00",
        "carried_forward": "0.00",
        "pending": "0.00",
        "lapsed": "43500.00",
        "clawback_recovered": "0.00",
    }
    assert statement["totals"] == {
        "appropriated": "160000.00",
        "committed": "71500.00",
        "net_paid": "24000.00",
        "in_kind_value": "16500.00",
        "carried_forward": "26000.00",
        "pending": "5000.00",
        "lapsed": "88500.00",
        "clawback_recovered": "1000.00",
    }
    # it agrees with the fund year's own read
    fund_year = expect(reports.auditor.get(f"/v1/fund-years/{YEAR}"), 200)
    assert fund_year["totals"]["available"] == statement["totals"]["lapsed"]
    assert fund_year["totals"]["net_paid"] == statement["totals"]["net_paid"]


def test_a_closed_year_states_when_it_closed(reports: Actors) -> None:
    r = reports.admin.post(f"/v1/fund-years/{YEAR}/close", json={"reason": "年度决算"})
    expect(r, 200)
    path = f"/v1/fund-years/{YEAR}/year-end"
    statement = expect(reports.auditor.get(path, params={"min_position": position(r)}), 200)
    assert statement["status"] == "closed"
    closed_at = datetime.fromisoformat(statement["closed_at"])
    assert closed_at.utcoffset() is not None
    assert statement["totals"]["lapsed"] == "88500.00"


@pytest.mark.parametrize("report", ["execution", "year-end"])
def test_reports_of_an_unknown_or_malformed_year(api: Api, report: str) -> None:
    a = funded(api)
    assert_problem(a.auditor.get(f"/v1/fund-years/2023/{report}"), 404, "not_found")
    assert_validation_error(a.auditor.get(f"/v1/fund-years/1800/{report}"), "year")
    assert_validation_error(a.auditor.get(f"/v1/fund-years/{YEAR}/{report}?lang=zh"), "lang")


@pytest.mark.parametrize("on", ["2024-13-01", "20240401", "today", "2024-04-01T00:00:00Z", ""])
def test_a_malformed_day_is_refused(api: Api, on: str) -> None:
    a = funded(api)
    response = a.auditor.get(f"/v1/fund-years/{YEAR}/execution", params={"on": on})
    assert_validation_error(response, "on")


def test_today_is_the_date_in_the_ledger_time_zone(api: Api, test_settings: Settings) -> None:
    """Kiritimati (UTC+14) and Baker Island (UTC-12) never share a date; the UTC date
    is at most one of them. The execution and exceptions reports default `on` to the
    date in LEDGER_TIMEZONE."""
    a = funded(api)
    key = a.auditor.headers["Authorization"]
    days = set()
    for name in ("Pacific/Kiritimati", "Etc/GMT+12"):
        settings = dataclasses.replace(test_settings, timezone=ZoneInfo(name))
        with TestClient(create_app(settings), headers={"Authorization": key}) as c:
            before = datetime.now(ZoneInfo(name)).date().isoformat()
            execution_on = expect(c.get(f"/v1/fund-years/{YEAR}/execution"), 200)["on"]
            exceptions_on = expect(c.get("/v1/reports/exceptions"), 200)["on"]
            after = datetime.now(ZoneInfo(name)).date().isoformat()
            assert before <= execution_on == exceptions_on <= after
            days.add(execution_on)
    assert len(days) == 2
