"""`GET /v1/reports/exceptions` (docs/api.md, "Exceptions") over HTTP on a real database: each red
flag an auditor must see, seen firing and not firing, with its stable `code`; `on=`
moves "today" to judge the 90- and 180-day ages, `fund_year=` keeps one year."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest

from ledger.entrypoints.runtime import BUSINESS_TIMEZONE
from tests.bank_statements import ACCOUNT, Entry, camt053, mt940
from tests.integration.scenario import (
    YEAR,
    Actors,
    Api,
    appropriation_body,
    approved_grant,
    assert_problem,
    assert_validation_error,
    clawback_body,
    clawback_world,
    created,
    depart,
    expect,
    funded,
    grant_body,
    head_position,
    open_year,
    pay,
    recovery_body,
    talent_body,
)

CODES = {
    "departed_without_clawback",
    "clawback_overdue",
    "duplicate_payment_suspected",
    "approved_unpaid",
    "reconciliation_unmatched",
    "clawback_exceeds_net_paid",
    "statement_discontinuity",
}
HEAD = "value_date,bank_reference,amount,direction,counterparty\n"


def report(a: Actors, db_url: str, **params: Any) -> list[dict[str, Any]]:
    """The exceptions items, read after every write so far (as the auditor)."""
    query = {"min_position": head_position(db_url), **params}
    body = expect(a.auditor.get("/v1/reports/exceptions", params=query), 200)
    assert body["fund_year"] == params.get("fund_year")
    if "on" in params:
        assert body["on"] == params["on"]
    for item in body["items"]:
        assert item["code"] in CODES, item
        assert isinstance(item["detail"], str)
        assert item["detail"]
    items: list[dict[str, Any]] = body["items"]
    return items


def of(items: list[dict[str, Any]], code: str, **ids: Any) -> list[dict[str, Any]]:
    return [i for i in items if i["code"] == code and all(i.get(k) == v for k, v in ids.items())]


def recorded_on(a: Actors, db_url: str, event_type: str, **ids: str) -> date:
    """The business day an event was recorded on (in the ledger's time zone, as the
    report dates it: from 16:00 UTC Shanghai is a day ahead), from the event stream."""
    params = {"min_position": head_position(db_url), "limit": 1000}
    items = expect(a.auditor.get("/v1/events", params=params), 200)["items"]
    [entry] = [
        e for e in items if e["event_type"] == event_type and all(e[k] == v for k, v in ids.items())
    ]
    recorded_at = datetime.fromisoformat(entry["recorded_at"].replace("Z", "+00:00"))
    return recorded_at.astimezone(BUSINESS_TIMEZONE).date()


def iso(day: date) -> str:
    return day.isoformat()


# --- departed before the commitment end, paid, no clawback ---------------------------


def test_a_talent_who_left_early_with_a_paid_grant_and_no_clawback_is_flagged(
    api: Api, db_url: str
) -> None:
    a = funded(api)  # T-1 arrived 2023-06-01, committed until 2028-05-31
    approved_grant(a, "G-1", amount="30000")
    pay(a, "P-1", amount="20000", value_date="2024-03-01")
    # T-2 served the whole commitment and left afterwards: not flagged
    t2 = talent_body("T-2", arrived_on="2019-01-01", service_commitment_until="2023-12-31")
    created(a.clerk.post("/v1/talents", json=t2))
    approved_grant(a, "G-2", amount="10000", talent_id="T-2")
    pay(a, "P-2", grant_id="G-2", amount="10000", value_date="2024-03-01", bank_reference="BR-2")
    depart(a, "T-2", "2024-06-30")
    # T-3 left early but was never paid: not flagged
    created(a.clerk.post("/v1/talents", json=talent_body("T-3", name="王芳")))
    approved_grant(a, "G-3", amount="10000", talent_id="T-3")
    depart(a, "T-3", "2024-06-30")
    assert of(report(a, db_url), "departed_without_clawback") == []

    depart(a, "T-1", "2024-09-30")

    [flag] = of(report(a, db_url), "departed_without_clawback")
    assert (flag["talent_id"], flag["grant_id"]) == ("T-1", "G-1")
    # served 2023-06-01..2024-09-30: 16 of 60 months; 20000 - 30000 * 16/60 = 12000
    assert flag["proposed_clawback"] == "12000.00"
    assert flag["inputs"]["net_paid"] == "20000.00"
    assert flag["inputs"]["amount"] == "30000.00"
    assert flag["inputs"]["months_served"] == 16
    assert flag["inputs"]["commitment_months"] == 60


def test_assessing_a_clawback_clears_the_departure_flag(api: Api, db_url: str) -> None:
    a = funded(api)
    approved_grant(a, "G-1", amount="30000")
    pay(a, "P-1", amount="20000", value_date="2024-03-01")
    depart(a, "T-1", "2024-09-30")
    assert of(report(a, db_url), "departed_without_clawback", grant_id="G-1")

    created(a.clerk.post("/v1/clawbacks", json=clawback_body("C-1", "G-1", amount="12000")))

    assert of(report(a, db_url), "departed_without_clawback") == []


def test_a_returned_payment_does_not_count_as_net_paid_for_the_departure_flag(
    api: Api, db_url: str
) -> None:
    a = funded(api)
    approved_grant(a, "G-1", amount="30000")
    pay(a, "P-1", amount="20000", value_date="2024-03-01")
    returned = {"returned_on": "2024-03-05", "reason": "账户错误"}
    expect(a.treasury.post("/v1/payments/P-1/return", json=returned), 200)
    depart(a, "T-1", "2024-09-30")

    assert of(report(a, db_url), "departed_without_clawback") == []


# --- clawbacks overdue ----------------------------------------------------------------


def test_a_clawback_not_fully_recovered_more_than_90_days_after_assessment_is_overdue(
    api: Api, db_url: str
) -> None:
    a = clawback_world(api)  # C-1: 12000 assessed today
    assessed = recorded_on(a, db_url, "Clawback.Assessed", clawback_id="C-1")

    assert of(report(a, db_url, on=iso(assessed)), "clawback_overdue") == []
    assert of(report(a, db_url, on=iso(assessed + timedelta(90))), "clawback_overdue") == []
    [flag] = of(report(a, db_url, on=iso(assessed + timedelta(91))), "clawback_overdue")
    assert (flag["clawback_id"], flag["grant_id"], flag["talent_id"]) == ("C-1", "G-1", "T-1")

    recovery = recovery_body("R-1", amount="11999.99", bank_reference="RB-1")
    created(a.treasury.post("/v1/clawbacks/C-1/recoveries", json=recovery))
    assert of(report(a, db_url, on=iso(assessed + timedelta(91))), "clawback_overdue")

    recovery = recovery_body("R-2", amount="0.01", bank_reference="RB-2")
    created(a.treasury.post("/v1/clawbacks/C-1/recoveries", json=recovery))
    assert of(report(a, db_url, on=iso(assessed + timedelta(400))), "clawback_overdue") == []


# --- suspected duplicate payments -----------------------------------------------------


def test_two_payments_of_one_amount_to_one_talent_line_within_7_days_are_suspected(
    api: Api, db_url: str
) -> None:
    a = funded(api)
    for n in (1, 2, 3, 4):
        if n > 1:
            created(a.clerk.post("/v1/talents", json=talent_body(f"T-{n}", name=f"人才{n}")))
        approved_grant(a, f"G-{n}", amount="20000", talent_id=f"T-{n}")

    def payment(n: int, grant: int, amount: str, day: str) -> None:
        pay(
            a,
            f"P-{n}",
            grant_id=f"G-{grant}",
            amount=amount,
            value_date=day,
            bank_reference=f"BR-{n}",
        )

    payment(1, 1, "5000", "2024-03-01")  # T-1: 7 days apart: suspected
    payment(2, 1, "5000", "2024-03-08")
    payment(3, 2, "5000", "2024-03-01")  # T-2: 8 days apart
    payment(4, 2, "5000", "2024-03-09")
    payment(5, 3, "5000", "2024-03-01")  # T-3: another amount
    payment(6, 3, "5000.01", "2024-03-02")
    payment(7, 4, "5000", "2024-03-01")  # T-4: returned, then paid again
    returned = {"returned_on": "2024-03-03", "reason": "户名不符"}
    expect(a.treasury.post("/v1/payments/P-7/return", json=returned), 200)
    payment(8, 4, "5000", "2024-03-04")

    flags = of(report(a, db_url), "duplicate_payment_suspected")

    assert [(f["talent_id"], sorted(f["payment_ids"])) for f in flags] == [("T-1", ["P-1", "P-2"])]
    assert flags[0]["fund_year"] == YEAR
    assert flags[0]["programme"] == "settling_in"


# --- approved and unpaid ---------------------------------------------------------------


def test_an_approved_grant_unpaid_more_than_180_days_is_flagged(api: Api, db_url: str) -> None:
    a = funded(api)
    approved_grant(a, "G-1", amount="10000")  # approved, never paid
    approved_grant(a, "G-2", amount="10000")  # approved and paid
    pay(a, "P-1", grant_id="G-2", amount="100", value_date="2024-03-01")
    created(a.clerk.post("/v1/grants", json=grant_body("G-3", amount="10000")))  # proposed
    approved = recorded_on(a, db_url, "Grant.Approved", grant_id="G-1")

    assert of(report(a, db_url, on=iso(approved + timedelta(180))), "approved_unpaid") == []
    flags = of(report(a, db_url, on=iso(approved + timedelta(181))), "approved_unpaid")
    assert [(f["grant_id"], f["talent_id"], f["fund_year"]) for f in flags] == [
        ("G-1", "T-1", YEAR)
    ]

    pay(a, "P-2", grant_id="G-1", amount="10000", value_date="2024-03-01", bank_reference="BR-2")
    assert of(report(a, db_url, on=iso(approved + timedelta(181))), "approved_unpaid") == []


# --- statement lines not matched ------------------------------------------------------


def test_the_lines_of_an_imported_statement_that_did_not_match_are_flagged(
    api: Api, db_url: str
) -> None:
    a = funded(api)
    approved_grant(a, "G-1", amount="30000")
    pay(a, "P-1", amount="1000", value_date="2024-03-01", bank_reference="BR-1")
    pay(a, "P-2", amount="2000", value_date="2024-03-02", bank_reference="BR-2")
    statement = (
        HEAD
        + "2024-03-01,BR-1,1000.00,debit,张伟\n"
        + "2024-03-02,BR-2,2500.00,debit,张伟\n"
        + "2024-03-03,BR-X,9.99,credit,某公司\n"
    )
    assert of(report(a, db_url), "reconciliation_unmatched") == []

    response = a.treasury.post(
        "/v1/reconciliations", content=statement.encode(), headers={"Content-Type": "text/csv"}
    )
    rid = created(response)["reconciliation_id"]

    flags = of(report(a, db_url), "reconciliation_unmatched")
    assert sorted(f["bank_reference"] for f in flags) == ["BR-2", "BR-X"]
    assert all(f["reconciliation_id"] == rid for f in flags)
    assert {f["bank_reference"]: f["bucket"] for f in flags} == {
        "BR-2": "amount_mismatch",
        "BR-X": "unknown_in_ledger",
    }


# --- one fund year ------------------------------------------------------------------


def test_fund_year_keeps_the_flags_of_that_year_only(api: Api, db_url: str) -> None:
    a = funded(api)
    open_year(a, 2025)
    approved_grant(a, "G-24", amount="10000")
    approved_grant(a, "G-25", amount="10000", fund_year=2025)
    statement = HEAD + "2024-12-31,BR-X24,1.00,debit,x\n" + "2025-01-01,BR-X25,1.00,debit,x\n"
    created(
        a.treasury.post(
            "/v1/reconciliations", content=statement.encode(), headers={"Content-Type": "text/csv"}
        )
    )
    later = iso(recorded_on(a, db_url, "Grant.Approved", grant_id="G-25") + timedelta(365))

    every = report(a, db_url, on=later)
    in_2024 = report(a, db_url, on=later, fund_year=2024)
    in_2025 = report(a, db_url, on=later, fund_year=2025)

    assert {f["grant_id"] for f in of(every, "approved_unpaid")} == {"G-24", "G-25"}
    assert [f["grant_id"] for f in of(in_2024, "approved_unpaid")] == ["G-24"]
    assert [f["grant_id"] for f in of(in_2025, "approved_unpaid")] == ["G-25"]
    assert {f["bank_reference"] for f in of(every, "reconciliation_unmatched")} == {
        "BR-X24",
        "BR-X25",
    }
    assert [f["bank_reference"] for f in of(in_2024, "reconciliation_unmatched")] == ["BR-X24"]
    assert [f["bank_reference"] for f in of(in_2025, "reconciliation_unmatched")] == ["BR-X25"]
    assert all(f.get("fund_year", 2024) == 2024 for f in in_2024)
    assert all(f.get("fund_year", 2025) == 2025 for f in in_2025)
    assert report(a, db_url, on=later, fund_year=2030) == []


def test_a_discontinuity_belongs_to_the_year_its_statement_closes_in(api: Api, db_url: str) -> None:
    a = funded(api)
    december = camt053(
        [Entry("2023-12-05", "BR-D", "1.00", "credit")],
        opening="100.00",
        opened_on="2023-12-01",
        closed_on="2023-12-31",
    )
    january = mt940(  # opens at 200.00 where December closed at 101.00
        [Entry("2024-01-05", "BR-J", "1.00", "credit")],
        opening="200.00",
        opened_on="2024-01-01",
        closed_on="2024-01-31",
    )
    imported = [
        created(
            a.treasury.post(
                "/v1/reconciliations", content=data, headers={"Content-Type": media_type}
            )
        )["reconciliation_id"]
        for data, media_type in ((december, "application/xml"), (january, "text/plain"))
    ]

    def gaps(**params: Any) -> list[tuple[str, str, str]]:
        flags = of(report(a, db_url, **params), "statement_discontinuity")
        return [
            (f["reconciliation_id"], f["previous_reconciliation_id"], f["account"]) for f in flags
        ]

    assert gaps() == [(imported[1], imported[0], ACCOUNT)]
    assert gaps(fund_year=2024) == gaps(), "judged against the year before's last statement"
    assert gaps(fund_year=2023) == []


def test_the_departure_flag_of_another_year_is_not_in_this_year(api: Api, db_url: str) -> None:
    a = funded(api)
    open_year(a, 2025)
    approved_grant(a, "G-25", amount="10000", fund_year=2025)
    pay(a, "P-1", grant_id="G-25", amount="10000", value_date="2025-03-01")
    depart(a, "T-1", "2025-09-30")

    assert of(report(a, db_url, fund_year=2024), "departed_without_clawback") == []
    [flag] = of(report(a, db_url, fund_year=2025), "departed_without_clawback")
    assert flag["grant_id"] == "G-25"


# --- who may read, and bad queries ---------------------------------------------------


def test_every_role_may_read_the_report_but_not_anonymously(api: Api) -> None:
    a = Actors.of(api)
    for client in (a.auditor, a.clerk, a.approver, a.treasury, a.admin):
        assert expect(client.get("/v1/reports/exceptions"), 200)["items"] == []
    assert_problem(api(None).get("/v1/reports/exceptions"), 401, "unauthenticated")


@pytest.mark.parametrize(
    "params",
    [
        {"on": "2024-02-30"},
        {"on": "yesterday"},
        {"on": "0.0"},  # a number is not a day (pydantic would read it as Unix time)
        {"on": "2024-05-01T00:00:00"},
        {"fund_year": "MMXXIV"},
    ],
)
def test_a_bad_query_is_a_validation_error(api: Api, params: dict[str, str]) -> None:
    a = Actors.of(api)
    assert_validation_error(a.auditor.get("/v1/reports/exceptions", params=params))


def test_an_appropriation_alone_raises_no_flag(api: Api, db_url: str) -> None:
    a = funded(api)
    created(
        a.admin.post(
            f"/v1/fund-years/{YEAR}/appropriations",
            json=appropriation_body("AP-9", "rent_subsidy", amount="5000"),
        )
    )
    assert report(a, db_url, on="2099-12-31") == []
