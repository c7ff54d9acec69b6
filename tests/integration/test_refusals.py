"""Refused attempts kept as evidence (CONTRACT §13, docs/api.md "Keys and duties"):
every write refused `403`, or `409` by a business rule other than an idempotent
retry's, is a row auditors page and filter; ids and codes only, never a body's
amounts, texts or personal data; and still no event in the ledger."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import psycopg
import pytest

from tests.integration.scenario import (
    YEAR,
    Actors,
    Api,
    approved_grant,
    assert_problem,
    expect,
    funded,
    pay,
    payment_body,
    talent_body,
)

pytestmark = [pytest.mark.db]


def refusals(a: Actors, **params: object) -> list[dict[str, object]]:
    items: list[dict[str, object]] = expect(
        a.auditor.get("/v1/audit/refusals", params=params), 200
    )["items"]
    return items


def test_a_forbidden_write_is_kept_with_its_ids_and_no_personal_data(
    api: Api, db_url: str, count_events: Callable[[], int]
) -> None:
    a = funded(api)
    before = count_events()
    body = {**talent_body("T-9"), "name": "欧阳娜娜"}
    assert_problem(a.approver.post("/v1/talents", json=body), 403, "forbidden")
    assert count_events() == before, "a refusal records no event"

    (kept,) = refusals(a)
    assert kept["actor"] == "approver" and kept["code"] == "forbidden"
    assert (kept["method"], kept["path"], kept["ids"]) == (
        "POST",
        "/v1/talents",
        {"talent_id": "T-9"},
    )
    assert kept["request_id"]
    with psycopg.connect(db_url) as conn:
        dump = str(conn.execute("SELECT * FROM ledger_refusals").fetchall())
    assert "欧阳娜娜" not in dump and "某单位" not in dump


def test_a_business_refusal_is_kept_but_never_its_amount(api: Api) -> None:
    a = funded(api)
    approved_grant(a, "G-1", amount="30000")
    refused = a.treasury.post(
        "/v1/payments", json=payment_body("P-1", amount="99999.99", bank_reference="BR-9")
    )
    assert_problem(refused, 409, "overpayment")

    (kept,) = refusals(a, code="overpayment")
    assert kept["ids"] == {"payment_id": "P-1", "grant_id": "G-1", "bank_reference": "BR-9"}
    assert "99999" not in str(kept)


def test_what_is_not_evidence_is_not_kept(api: Api) -> None:
    """An idempotent retry's conflict, a malformed request, an unknown key, a read."""
    a = funded(api)
    approved_grant(a, "G-1", amount="30000")
    pay(a, "P-1", amount="100", bank_reference="BR-1")
    other = payment_body("P-1", amount="200", bank_reference="BR-1")
    assert_problem(a.treasury.post("/v1/payments", json=other), 409, "idempotency_conflict")
    assert_problem(a.treasury.post("/v1/payments", json={"x": 1}), 422, "validation_error")
    assert_problem(api(None).post("/v1/payments", json=other), 401, "unauthenticated")
    assert_problem(a.clerk.get("/v1/keys"), 403, "forbidden")
    assert refusals(a) == []


def test_refusals_are_paged_and_filtered_by_code_actor_and_business_dates(api: Api) -> None:
    a = funded(api)
    for who in (a.clerk, a.treasury, a.clerk):
        assert_problem(
            who.post(f"/v1/fund-years/{YEAR}/close", json={"reason": "x"}), 403, "forbidden"
        )
    assert_problem(
        a.clerk.post("/v1/talents", json={**talent_body("T-1"), "employer": "另一单位"}),
        409,
        "idempotency_conflict",
    )
    every = refusals(a)
    assert [r["actor"] for r in every] == ["clerk", "treasury", "clerk"]
    assert [r["actor"] for r in refusals(a, actor="clerk")] == ["clerk", "clerk"]
    assert refusals(a, code="overpayment") == []
    first = expect(a.auditor.get("/v1/audit/refusals", params={"limit": 2}), 200)
    rest = expect(a.admin.get("/v1/audit/refusals", params={"after": first["next"]}), 200)
    assert [r["seq"] for r in first["items"] + rest["items"]] == [r["seq"] for r in every]

    today = date.today()
    assert (
        len(
            refusals(
                a, **{"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}
            )
        )
        == 3
    )
    assert refusals(a, **{"to": str(today - timedelta(days=2))}) == []
    assert_problem(a.clerk.get("/v1/audit/refusals"), 403, "forbidden")
    for bad in ({"code": "Not A Code"}, {"from": "yesterday"}, {"since": "2024-01-01"}):
        assert_problem(a.auditor.get("/v1/audit/refusals", params=bad), 422, "validation_error")


def test_the_evidence_cannot_be_changed(api: Api, db_url: str) -> None:
    a = funded(api)
    assert_problem(
        a.clerk.post("/v1/fund-years", json={"year": 2030, "currency": "CNY"}), 403, "forbidden"
    )
    with (
        psycopg.connect(db_url) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="immutable"),
    ):
        conn.execute("UPDATE ledger_refusals SET code = 'nothing'")


def test_an_operation_a_batch_refuses_is_kept_as_its_single_call_would_be(api: Api) -> None:
    a = funded(api)
    approved_grant(a, "G-1", amount="30000")
    operations = [
        {"op": "payment.record", "body": payment_body("P-1", amount="99999", bank_reference="B1")},
        {"op": "fund_year.close", "body": {"year": YEAR, "reason": "x"}},
    ]
    batch = {"atomic": False, "operations": operations}
    expect(a.treasury.post("/v1/batch", json=batch), 200)
    kept = refusals(a)
    assert [(r["path"], r["code"]) for r in kept] == [
        ("/v1/payments", "overpayment"),
        ("/v1/fund-years/{year}/close", "forbidden"),
    ]
    assert kept[1]["ids"] == {"year": YEAR}


def test_what_a_client_puts_where_an_id_goes_is_kept_only_if_it_is_one(api: Api) -> None:
    a = funded(api)
    body = {**talent_body("王芳 and more"), "grant_id": "x" * 65, "fund_year": "2024"}
    assert_problem(a.approver.post("/v1/talents", json=body), 403, "forbidden")
    assert_problem(a.approver.post("/v1/talents/张伟/departure", json={}), 403, "forbidden")
    first, second = refusals(a)
    assert first["ids"] == {"fund_year": 2024}
    assert (second["path"], second["ids"]) == ("/v1/talents/{talent_id}/departure", {})
    deep = a.approver.post(
        "/v1/talents",
        content=("[" * 100_000 + "]" * 100_000).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert_problem(deep, 403, "forbidden")
