"""Shared set-up over HTTP: bodies with sensible defaults, and a funded fund year.

Everything here goes through the API as a client would; nothing touches the
application objects. Bodies are plain dicts so that a test can break one field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from fastapi.testclient import TestClient

YEAR = 2024
PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}
MONEY_RE = re.compile(r"^[0-9]+\.[0-9]{2}$")

Api = Callable[[str | None], TestClient]
Json = dict[str, Any]


@dataclass(frozen=True)
class Actors:
    """One client per role; `clerk_approver` holds both clerk and approver."""

    admin: TestClient
    clerk: TestClient
    approver: TestClient
    treasury: TestClient
    auditor: TestClient
    clerk_approver: TestClient

    @classmethod
    def of(cls, api: Api) -> Actors:
        return cls(
            admin=api("admin"),
            clerk=api("clerk"),
            approver=api("approver"),
            treasury=api("treasury"),
            auditor=api("auditor"),
            clerk_approver=api("clerk_approver"),
        )


# --- answers ----------------------------------------------------------------------


def expect(response: httpx.Response, status: int) -> Json:
    """The JSON body of a response that must have `status`."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    body: Json = response.json()
    return body


def created(response: httpx.Response) -> Json:
    return expect(response, 201)


def position(response: httpx.Response) -> int:
    """The `Ledger-Position` header of a write: digits only."""
    value = response.headers.get("Ledger-Position")
    assert value is not None, f"no Ledger-Position on {response.request.url}"
    assert re.fullmatch(r"[0-9]+", value), value
    return int(value)


def assert_problem(response: httpx.Response, status: int, code: str) -> Json:
    """An RFC 9457 problem with the API's fields, `status` and stable `code`."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].split(";")[0] == "application/problem+json"
    body: Json = response.json()
    assert body.keys() >= PROBLEM_FIELDS, body
    assert body["status"] == status
    assert body["code"] == code, body
    assert isinstance(body["type"], str)
    assert body["type"]
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


def assert_validation_error(response: httpx.Response, field: str | None = None) -> Json:
    """A 422 `validation_error` whose `errors` entries have `loc` and `msg`; when
    `field` is given, one entry's `loc` ends with it."""
    body = assert_problem(response, 422, "validation_error")
    errors = body.get("errors")
    assert isinstance(errors, list)
    assert errors, body
    for error in errors:
        assert isinstance(error["loc"], list)
        assert error["loc"]
        assert isinstance(error["msg"], str)
        assert error["msg"]
    if field is not None:
        assert any(error["loc"][-1] == field for error in errors), errors
    return body


def head_position(db_url: str) -> int:
    """The global position of the last stored event (0 when there is none)."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()
        assert row is not None
        return int(row[0])


# --- bodies -----------------------------------------------------------------------


def fund_year_body(year: int = YEAR) -> Json:
    return {"year": year, "currency": "CNY"}


def appropriation_body(
    appropriation_id: str = "AP-1",
    programme: str = "settling_in",
    kind: str = "cash",
    amount: str = "100000",
    reference: str = "财预〔2024〕12号",
) -> Json:
    return {
        "appropriation_id": appropriation_id,
        "programme": programme,
        "kind": kind,
        "amount": amount,
        "reference": reference,
    }


def talent_body(
    talent_id: str = "T-1",
    name: str = "张伟",
    category: str = "doctorate",
    employer: str = "市第一人民医院",
    arrived_on: str = "2023-06-01",
    service_commitment_until: str = "2028-05-31",
) -> Json:
    return {
        "talent_id": talent_id,
        "name": name,
        "category": category,
        "employer": employer,
        "arrived_on": arrived_on,
        "service_commitment_until": service_commitment_until,
    }


def grant_body(
    grant_id: str = "G-1",
    talent_id: str = "T-1",
    amount: str = "30000",
    programme: str = "settling_in",
    fund_year: int = YEAR,
    policy_reference: str = "人才新政第5条",
    reason: str = "安家补贴",
) -> Json:
    return {
        "grant_id": grant_id,
        "talent_id": talent_id,
        "fund_year": fund_year,
        "programme": programme,
        "amount": amount,
        "policy_reference": policy_reference,
        "reason": reason,
    }


def waiver_body(
    waiver_id: str = "W-1",
    talent_id: str = "T-1",
    start_on: str = "2024-01-15",
    end_on: str = "2024-03-01",
    monthly_rent: str = "2500",
    programme: str = "housing",
    fund_year: int = YEAR,
    apartment: str = "人才公寓 3栋201",
) -> Json:
    return {
        "waiver_id": waiver_id,
        "talent_id": talent_id,
        "fund_year": fund_year,
        "programme": programme,
        "apartment": apartment,
        "start_on": start_on,
        "end_on": end_on,
        "monthly_rent": monthly_rent,
    }


def payment_body(
    payment_id: str = "P-1",
    grant_id: str = "G-1",
    amount: str = "10000",
    value_date: str = "2024-03-01",
    bank_reference: str = "BR-1",
) -> Json:
    return {
        "payment_id": payment_id,
        "grant_id": grant_id,
        "amount": amount,
        "value_date": value_date,
        "bank_reference": bank_reference,
    }


def clawback_body(
    clawback_id: str = "C-1",
    grant_id: str = "G-1",
    amount: str = "5000",
    reason: str = "离职早于服务期满",
) -> Json:
    return {"clawback_id": clawback_id, "grant_id": grant_id, "amount": amount, "reason": reason}


def recovery_body(
    recovery_id: str = "R-1",
    amount: str = "1000",
    value_date: str = "2024-11-01",
    bank_reference: str = "RB-1",
) -> Json:
    return {
        "recovery_id": recovery_id,
        "amount": amount,
        "value_date": value_date,
        "bank_reference": bank_reference,
    }


# --- steps ------------------------------------------------------------------------

DEFAULT_LINES = (("settling_in", "cash", "100000"), ("housing", "in_kind", "50000"))


def open_year(
    a: Actors, year: int = YEAR, lines: tuple[tuple[str, str, str], ...] = DEFAULT_LINES
) -> int:
    """Open `year` and appropriate each (programme, kind, amount) line once; the
    position of the last, for a read that must see them."""
    opened = a.admin.post("/v1/fund-years", json=fund_year_body(year))
    created(opened)
    last = position(opened)
    for n, (programme, kind, amount) in enumerate(lines, 1):
        body = appropriation_body(f"AP-{year}-{n}", programme, kind, amount)
        appropriated = a.admin.post(f"/v1/fund-years/{year}/appropriations", json=body)
        created(appropriated)
        last = position(appropriated)
    return last


def funded(api: Api, lines: tuple[tuple[str, str, str], ...] = DEFAULT_LINES) -> Actors:
    """Fund year 2024 with a cash and an in-kind line, and talent T-1 registered."""
    a = Actors.of(api)
    open_year(a, YEAR, lines)
    created(a.clerk.post("/v1/talents", json=talent_body()))
    return a


def approved_grant(a: Actors, grant_id: str = "G-1", amount: str = "30000", **kw: Any) -> Json:
    """Propose (clerk) and approve (approver) a grant; the approved representation."""
    created(a.clerk.post("/v1/grants", json=grant_body(grant_id, amount=amount, **kw)))
    return expect(a.approver.post(f"/v1/grants/{grant_id}/approve", json={"note": "同意"}), 200)


def pay(a: Actors, payment_id: str = "P-1", **kw: Any) -> Json:
    return created(a.treasury.post("/v1/payments", json=payment_body(payment_id, **kw)))


def depart(a: Actors, talent_id: str = "T-1", departed_on: str = "2024-09-30") -> Json:
    body = {"departed_on": departed_on, "reason": "调离本市"}
    return expect(a.clerk.post(f"/v1/talents/{talent_id}/departure", json=body), 200)


def clawback_world(api: Api) -> Actors:
    """G-1 (30000) approved and paid 20000 (bank ref BR-1), T-1 departed, clawback C-1
    of 12000 assessed."""
    a = funded(api)
    approved_grant(a)
    pay(a, "P-1", amount="20000")
    depart(a)
    created(a.clerk.post("/v1/clawbacks", json=clawback_body(amount="12000")))
    return a
