"""Every refusal code of docs/api.md, "Conventions", over HTTP: an RFC 9457 problem, and no event.

One test per code; its cases run as subtests on one database, each checking that the
event count did not move.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.integration.scenario import (
    YEAR,
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
    pay,
    payment_body,
    position,
    recovery_body,
    talent_body,
    waiver_body,
)

Counter = Callable[[], int]
Refuse = Callable[[str, Callable[[], httpx.Response]], None]


def refusals(subtests: pytest.Subtests, count_events: Counter, status: int, code: str) -> Refuse:
    """`refuse(case, send)`: in a subtest, `send()` must answer the problem `status`/`code`
    and record no event."""

    def refuse(case: str, send: Callable[[], httpx.Response]) -> None:
        with subtests.test(case):
            before = count_events()
            assert_problem(send(), status, code)
            assert count_events() == before, "a refused request recorded an event"

    return refuse


# --- 401 unauthenticated ----------------------------------------------------------


def test_unauthenticated_without_a_key_or_with_an_unknown_one(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    refuse = refusals(subtests, count_events, 401, "unauthenticated")
    anonymous = api(None)
    stranger = api(None)
    stranger.headers["Authorization"] = "Bearer tl_not-a-key-anyone-was-given"
    key = api("admin").headers["Authorization"].removeprefix("Bearer ")
    basic = api(None)
    basic.headers["Authorization"] = f"Basic {key}"
    bare = api(None)
    bare.headers["Authorization"] = key
    year = {"year": YEAR, "currency": "CNY"}
    refuse("no key", lambda: anonymous.post("/v1/fund-years", json=year))
    refuse("unknown key", lambda: stranger.post("/v1/fund-years", json=year))
    refuse("a key with another scheme", lambda: basic.post("/v1/fund-years", json=year))
    refuse("a key without a scheme", lambda: bare.post("/v1/fund-years", json=year))
    refuse("a read without a key", lambda: anonymous.get("/v1/grants/G-1"))
    refuse("before validating the body", lambda: anonymous.post("/v1/grants", json={"x": 5}))
    refuse(
        "before checking the media type",
        lambda: anonymous.post("/v1/grants", content=b"x", headers={"Content-Type": "text/plain"}),
    )
    challenge = anonymous.get("/v1/grants/G-1").headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer")


# --- 403 forbidden ----------------------------------------------------------------


def test_forbidden_when_the_role_may_not_write_checked_before_the_body(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    refuse = refusals(subtests, count_events, 403, "forbidden")
    a = funded(api)
    refuse("auditor proposes a grant", lambda: a.auditor.post("/v1/grants", json=grant_body()))
    refuse(
        "auditor with an invalid body gets 403, not 422",
        lambda: a.auditor.post("/v1/grants", json={"grant_id": 5, "amount": 1.5, "extra": True}),
    )
    refuse(
        "treasury with a text/plain body gets 403, not 415",
        lambda: a.treasury.post("/v1/grants", content=b"g", headers={"Content-Type": "text/plain"}),
    )
    refuse(
        "clerk approves",
        lambda: a.clerk.post("/v1/grants/G-1/approve", json={}),
    )
    assert_problem(a.auditor.get("/v1/grants/G-1"), 404, "not_found")


WRITE_ROLES = {
    "/v1/fund-years": "admin",
    f"/v1/fund-years/{YEAR}/appropriations": "admin",
    f"/v1/fund-years/{YEAR}/close": "admin",
    "/v1/talents": "clerk",
    "/v1/talents/T-1/departure": "clerk",
    "/v1/grants": "clerk",
    "/v1/grants/G-1/approve": "approver",
    "/v1/grants/G-1/reject": "approver",
    "/v1/grants/G-1/revoke": "approver",
    "/v1/rent-waivers": "clerk",
    "/v1/rent-waivers/W-1/end": "clerk",
    "/v1/payments": "treasury",
    "/v1/payments/P-1/return": "treasury",
    "/v1/clawbacks": "clerk",
    "/v1/clawbacks/C-1/recoveries": "treasury",
}
HELD = {
    "admin": {"admin"},
    "clerk": {"clerk"},
    "approver": {"approver"},
    "treasury": {"treasury"},
    "auditor": {"auditor"},
    "clerk_approver": {"clerk", "approver"},
}


def test_every_write_refuses_every_role_without_the_right(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    clients = {role: api(role) for role in HELD}
    for path, needed in WRITE_ROLES.items():
        for role, held in HELD.items():
            if needed not in held:
                with subtests.test(f"{role} POST {path}"):
                    assert_problem(clients[role].post(path, json={}), 403, "forbidden")
    assert count_events() == 0


# --- 404 not_found ----------------------------------------------------------------


def test_not_found_for_unknown_ids_on_reads_and_actions(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    refuse = refusals(subtests, count_events, 404, "not_found")
    a = funded(api)
    for path in (
        "/v1/grants/G-404",
        "/v1/payments/P-404",
        "/v1/talents/T-404",
        "/v1/fund-years/1999",
        "/v1/rent-waivers/W-404",
        "/v1/clawbacks/C-404",
        "/v1/no-such-thing",
    ):
        refuse(f"GET {path}", lambda p=path: a.auditor.get(p))
    actions: list[tuple[Any, str, dict[str, Any]]] = [
        (a.approver, "/v1/grants/G-404/approve", {"note": "ok"}),
        (a.approver, "/v1/grants/G-404/reject", {"reason": "no"}),
        (a.approver, "/v1/grants/G-404/revoke", {"reason": "no"}),
        (a.treasury, "/v1/payments/P-404/return", {"returned_on": "2024-05-01", "reason": "x"}),
        (a.clerk, "/v1/rent-waivers/W-404/end", {"ended_on": "2024-05-01"}),
        (a.clerk, "/v1/talents/T-404/departure", {"departed_on": "2024-05-01", "reason": "x"}),
        (a.admin, "/v1/fund-years/1999/close", {"reason": "x"}),
        (a.admin, "/v1/fund-years/1999/appropriations", appropriation_body()),
        (a.treasury, "/v1/clawbacks/C-404/recoveries", recovery_body()),
    ]
    for client, path, body in actions:
        refuse(f"POST {path}", lambda c=client, p=path, b=body: c.post(p, json=b))


# --- 409 idempotency_conflict -----------------------------------------------------


def test_idempotency_conflict_when_an_id_is_reused_with_another_body(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    refuse = refusals(subtests, count_events, 409, "idempotency_conflict")
    a = funded(api)
    created(a.clerk.post("/v1/grants", json=grant_body(amount="30000")))
    refuse("grant amount", lambda: a.clerk.post("/v1/grants", json=grant_body(amount="30001")))
    refuse(
        "talent name",
        lambda: a.clerk.post("/v1/talents", json=talent_body("T-1", name="张伟伟")),
    )
    assert expect(a.auditor.get("/v1/grants/G-1"), 200)["amount"] == "30000.00"


# --- 409 budget_exceeded ----------------------------------------------------------


def test_budget_exceeded_by_a_proposal_or_a_waiver(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    refuse = refusals(subtests, count_events, 409, "budget_exceeded")
    a = funded(api, lines=(("settling_in", "cash", "100000"), ("housing", "in_kind", "7500")))
    created(a.clerk.post("/v1/grants", json=grant_body("G-1", amount="60000")))
    refuse(
        "proposal one fen above the available",
        lambda: a.clerk.post("/v1/grants", json=grant_body("G-2", amount="40000.01")),
    )
    # 2024-01-15..2024-03-01 is 3 months: 3 x 2500.01 > 7500
    refuse(
        "waiver one fen a month above the available",
        lambda: a.clerk.post("/v1/rent-waivers", json=waiver_body(monthly_rent="2500.01")),
    )
    created(a.clerk.post("/v1/grants", json=grant_body("G-2", amount="40000.00")))
    created(a.clerk.post("/v1/rent-waivers", json=waiver_body(monthly_rent="2500")))
    refuse(
        "anything once the line is used up",
        lambda: a.clerk.post("/v1/grants", json=grant_body("G-3", amount="0.01")),
    )


# --- 409 overpayment --------------------------------------------------------------


def test_overpayment_of_a_grant_or_of_a_clawback(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    refuse = refusals(subtests, count_events, 409, "overpayment")
    a = clawback_world(api)  # G-1: 30000, P-1 paid 20000; C-1: 12000 due
    refuse(
        "payment above what remains payable",
        lambda: a.treasury.post(
            "/v1/payments", json=payment_body("P-2", amount="10000.01", bank_reference="BR-2")
        ),
    )
    pay(a, "P-2", amount="10000", bank_reference="BR-2")
    refuse(
        "any payment on a fully paid grant",
        lambda: a.treasury.post(
            "/v1/payments", json=payment_body("P-3", amount="0.01", bank_reference="BR-3")
        ),
    )
    created(
        a.treasury.post("/v1/clawbacks/C-1/recoveries", json=recovery_body("R-1", amount="5000"))
    )
    refuse(
        "recovery above the clawback due",
        lambda: a.treasury.post(
            "/v1/clawbacks/C-1/recoveries",
            json=recovery_body("R-2", amount="7000.01", bank_reference="RB-2"),
        ),
    )


# --- 409 invalid_state ------------------------------------------------------------


def test_invalid_state_for_actions_the_grant_status_does_not_allow(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    refuse = refusals(subtests, count_events, 409, "invalid_state")
    a = funded(api)
    created(a.clerk.post("/v1/grants", json=grant_body("G-P", amount="1000")))
    created(a.clerk.post("/v1/grants", json=grant_body("G-R", amount="1000")))
    expect(a.approver.post("/v1/grants/G-R/reject", json={"reason": "材料不全"}), 200)
    approved_grant(a, "G-V", amount="30000")
    pay(a, "P-1", grant_id="G-V", amount="10000", bank_reference="BR-1")
    expect(a.approver.post("/v1/grants/G-V/revoke", json={"reason": "政策调整"}), 200)
    approved_grant(a, "G-A", amount="1000")

    def payment(grant_id: str) -> httpx.Response:
        body = payment_body("P-9", grant_id=grant_id, amount="100", bank_reference="BR-9")
        return a.treasury.post("/v1/payments", json=body)

    refuse("pay a proposed grant", lambda: payment("G-P"))
    refuse("pay a rejected grant", lambda: payment("G-R"))
    refuse("pay a revoked grant", lambda: payment("G-V"))
    refuse(
        "approve a rejected grant",
        lambda: a.approver.post("/v1/grants/G-R/approve", json={"note": "ok"}),
    )
    refuse(
        "revoke a proposed grant",
        lambda: a.approver.post("/v1/grants/G-P/revoke", json={"reason": "x"}),
    )
    refuse(
        "reject an approved grant",
        lambda: a.approver.post("/v1/grants/G-A/reject", json={"reason": "x"}),
    )
    refuse(
        "approve a revoked grant",
        lambda: a.approver.post("/v1/grants/G-V/approve", json={}),
    )


# --- 409 self_approval ------------------------------------------------------------


def test_self_approval_when_the_proposer_approves(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    refuse = refusals(subtests, count_events, 409, "self_approval")
    a = funded(api)
    created(a.clerk_approver.post("/v1/grants", json=grant_body()))
    refuse(
        "clerk_approver approves its own proposal",
        lambda: a.clerk_approver.post("/v1/grants/G-1/approve", json={"note": "自批"}),
    )
    assert expect(a.auditor.get("/v1/grants/G-1"), 200)["status"] == "proposed"
    approved = expect(a.approver.post("/v1/grants/G-1/approve", json={}), 200)
    assert approved["status"] == "approved"
    assert approved["proposed_by"] == "clerk_approver"
    assert approved["decision_by"] == "approver"


# --- 409 duplicate_bank_reference -------------------------------------------------


def test_duplicate_bank_reference_across_payments_and_recoveries(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    refuse = refusals(subtests, count_events, 409, "duplicate_bank_reference")
    a = clawback_world(api)  # P-1 was paid with BR-1; C-1 is due
    created(
        a.treasury.post("/v1/clawbacks/C-1/recoveries", json=recovery_body(bank_reference="RB-1"))
    )
    refuse(
        "a second payment with a payment's reference",
        lambda: a.treasury.post(
            "/v1/payments", json=payment_body("P-2", amount="100", bank_reference="BR-1")
        ),
    )
    refuse(
        "a recovery with a payment's reference",
        lambda: a.treasury.post(
            "/v1/clawbacks/C-1/recoveries", json=recovery_body("R-2", bank_reference="BR-1")
        ),
    )
    refuse(
        "a payment with a recovery's reference",
        lambda: a.treasury.post(
            "/v1/payments", json=payment_body("P-2", amount="100", bank_reference="RB-1")
        ),
    )
    refuse(
        "a second recovery with a recovery's reference",
        lambda: a.treasury.post(
            "/v1/clawbacks/C-1/recoveries", json=recovery_body("R-2", bank_reference="RB-1")
        ),
    )


# --- 409 fund_year_closed ---------------------------------------------------------


def test_fund_year_closed_refuses_proposals_waivers_and_appropriations(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    refuse = refusals(subtests, count_events, 409, "fund_year_closed")
    a = funded(api)
    expect(a.admin.post(f"/v1/fund-years/{YEAR}/close", json={"reason": "年度结账"}), 200)
    refuse("proposal", lambda: a.clerk.post("/v1/grants", json=grant_body()))
    refuse("waiver", lambda: a.clerk.post("/v1/rent-waivers", json=waiver_body()))
    refuse(
        "appropriation",
        lambda: a.admin.post(
            f"/v1/fund-years/{YEAR}/appropriations", json=appropriation_body("AP-late")
        ),
    )


# --- 409 clawback_exceeds_paid ----------------------------------------------------


def test_clawback_exceeds_paid_above_the_net_paid_not_yet_clawed_back(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    refuse = refusals(subtests, count_events, 409, "clawback_exceeds_paid")
    a = funded(api)
    approved_grant(a, amount="30000")
    pay(a, "P-1", amount="20000")
    depart(a)
    refuse(
        "above the net paid",
        lambda: a.clerk.post("/v1/clawbacks", json=clawback_body(amount="20000.01")),
    )
    created(a.clerk.post("/v1/clawbacks", json=clawback_body("C-1", amount="15000")))
    refuse(
        "above what earlier clawbacks left",
        lambda: a.clerk.post("/v1/clawbacks", json=clawback_body("C-2", amount="5000.01")),
    )
    created(a.clerk.post("/v1/talents", json=talent_body("T-2", name="李娜")))
    created(a.clerk.post("/v1/grants", json=grant_body("G-2", talent_id="T-2")))
    refuse(
        "on a grant never paid",
        lambda: a.clerk.post("/v1/clawbacks", json=clawback_body("C-3", "G-2", amount="1")),
    )


# --- 409 talent_departed ----------------------------------------------------------


def test_talent_departed_refuses_late_payments_and_new_benefits(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    refuse = refusals(subtests, count_events, 409, "talent_departed")
    a = funded(api)
    approved_grant(a)
    depart(a, departed_on="2024-06-30")
    refuse(
        "payment valued the day after the departure",
        lambda: a.treasury.post("/v1/payments", json=payment_body(value_date="2024-07-01")),
    )
    refuse("proposal", lambda: a.clerk.post("/v1/grants", json=grant_body("G-2")))
    refuse("waiver", lambda: a.clerk.post("/v1/rent-waivers", json=waiver_body()))
    pay(a, "P-1", value_date="2024-06-30")  # on the day itself: still allowed


# --- 422 validation_error ---------------------------------------------------------

# (role, path, body, the field the error must name); each is refused in a world where
# waiver W-1 (2024-01-15..2024-03-01) exists and G-1 is approved and paid by P-1 on
# 2024-03-01. New resources use fresh ids, so that no case is an idempotency replay.
VALIDATION_CASES: dict[str, tuple[str, str, Any, str]] = {
    "unknown programme": (
        "clerk",
        "/v1/grants",
        grant_body("G-9", programme="no_such_line"),
        "programme",
    ),
    "cash grant on an in_kind line": (
        "clerk",
        "/v1/grants",
        grant_body("G-9", programme="housing"),
        "programme",
    ),
    "waiver on a cash line": (
        "clerk",
        "/v1/rent-waivers",
        waiver_body("W-9", programme="settling_in"),
        "programme",
    ),
    "waiver starting before the fund year": (
        "clerk",
        "/v1/rent-waivers",
        waiver_body("W-9", start_on="2023-12-01"),
        "start_on",
    ),
    "waiver end_on before start_on": (
        "clerk",
        "/v1/rent-waivers",
        waiver_body("W-9", start_on="2024-05-01", end_on="2024-04-30"),
        "end_on",
    ),
    "unknown field": (
        "clerk",
        "/v1/grants",
        {**grant_body("G-9"), "approved": True},
        "approved",
    ),
    "missing field": (
        "clerk",
        "/v1/grants",
        {k: v for k, v in grant_body("G-9").items() if k != "amount"},
        "amount",
    ),
    "bad date format": (
        "treasury",
        "/v1/payments",
        payment_body("P-9", value_date="2024/03/01", bank_reference="BR-9"),
        "value_date",
    ),
    "date without leading zeros": (
        "treasury",
        "/v1/payments",
        payment_body("P-9", value_date="2024-3-1", bank_reference="BR-9"),
        "value_date",
    ),
    "impossible date": (
        "treasury",
        "/v1/payments",
        payment_body("P-9", value_date="2024-02-30", bank_reference="BR-9"),
        "value_date",
    ),
    "date-time instead of a date": (
        "treasury",
        "/v1/payments",
        payment_body("P-9", value_date="2024-03-01T00:00:00Z", bank_reference="BR-9"),
        "value_date",
    ),
    "wrong currency": ("admin", "/v1/fund-years", {"year": 2025, "currency": "USD"}, "currency"),
    "year as a string": ("admin", "/v1/fund-years", {"year": "2025", "currency": "CNY"}, "year"),
    "identifier with a space": ("clerk", "/v1/grants", grant_body("G 9"), "grant_id"),
    "blank reason": ("clerk", "/v1/grants", grant_body("G-9", reason="   "), "reason"),
    "programme that is not a slug": (
        "admin",
        f"/v1/fund-years/{YEAR}/appropriations",
        appropriation_body("AP-9", programme="Settling In"),
        "programme",
    ),
    "unknown kind": (
        "admin",
        f"/v1/fund-years/{YEAR}/appropriations",
        appropriation_body("AP-9", kind="loan"),
        "kind",
    ),
    "appropriation of another kind to an existing line": (
        "admin",
        f"/v1/fund-years/{YEAR}/appropriations",
        appropriation_body("AP-9", programme="settling_in", kind="in_kind"),
        "kind",
    ),
    "unknown talent referred to": (
        "clerk",
        "/v1/grants",
        grant_body("G-9", talent_id="T-404"),
        "talent_id",
    ),
    "unknown fund year referred to": (
        "clerk",
        "/v1/grants",
        grant_body("G-9", fund_year=2031),
        "fund_year",
    ),
    "unknown grant referred to": (
        "treasury",
        "/v1/payments",
        payment_body("P-9", grant_id="G-404", bank_reference="BR-9"),
        "grant_id",
    ),
    "service commitment ending before arrival": (
        "clerk",
        "/v1/talents",
        talent_body("T-9", arrived_on="2024-01-01", service_commitment_until="2023-12-31"),
        "service_commitment_until",
    ),
    "return before the value date": (
        "treasury",
        "/v1/payments/P-1/return",
        {"returned_on": "2024-02-29", "reason": "账户已销户"},
        "returned_on",
    ),
    "ended_on before the waiver starts": (
        "clerk",
        "/v1/rent-waivers/W-1/end",
        {"ended_on": "2024-01-14"},
        "ended_on",
    ),
    "ended_on after the waiver ends": (
        "clerk",
        "/v1/rent-waivers/W-1/end",
        {"ended_on": "2024-03-02"},
        "ended_on",
    ),
    "departure before arrival": (
        "clerk",
        "/v1/talents/T-1/departure",
        {"departed_on": "2023-05-31", "reason": "x"},
        "departed_on",
    ),
    "waiver ending after the fund year": (
        "clerk",
        "/v1/rent-waivers",
        waiver_body("W-9", end_on="2025-01-31"),
        "end_on",
    ),
    "a JSON array instead of an object": ("clerk", "/v1/grants", [grant_body("G-9")], "body"),
}


def test_validation_error_names_the_field(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    a = funded(api)
    created(a.clerk.post("/v1/rent-waivers", json=waiver_body()))
    approved_grant(a)
    pay(a, "P-1", value_date="2024-03-01")
    before = count_events()
    for case, (role, path, body, field) in VALIDATION_CASES.items():
        with subtests.test(case):
            assert_validation_error(getattr(a, role).post(path, json=body), field)
    with subtests.test("malformed JSON"):
        response = a.clerk.post(
            "/v1/grants",
            content=b'{"grant_id": "G-9",',
            headers={"Content-Type": "application/json"},
        )
        assert_validation_error(response)
    with subtests.test("every bad field is listed"):
        body = {**grant_body("bad id", amount="-1"), "surplus": 1}
        del body["reason"]
        problem = assert_validation_error(a.clerk.post("/v1/grants", json=body))
        fields = {error["loc"][-1] for error in problem["errors"]}
        assert {"amount", "grant_id", "surplus", "reason"} <= fields
        assert all(error["loc"][0] == "body" for error in problem["errors"])
    assert count_events() == before


def test_a_nul_character_in_a_text_field_is_refused_and_cannot_stall_the_read_models(
    api: Api, count_events: Counter
) -> None:
    a = funded(api)
    before = count_events()
    response = a.clerk.post("/v1/grants", json=grant_body("G-1", reason="安家\u0000补贴"))
    assert_validation_error(response, "reason")
    assert count_events() == before
    later = a.clerk.post("/v1/grants", json=grant_body("G-2"))
    created(later)
    year = expect(a.auditor.get(f"/v1/fund-years/{YEAR}?min_position={position(later)}"), 200)
    assert year["totals"]["committed"] == "30000.00"


# --- 413 payload_too_large, 415 unsupported_media_type ----------------------------


def test_payload_too_large_over_one_mebibyte_declared_or_streamed(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    refuse = refusals(subtests, count_events, 413, "payload_too_large")
    a = funded(api)
    big = {**talent_body("T-big"), "employer": "x" * (1024 * 1024)}
    refuse("with a Content-Length", lambda: a.clerk.post("/v1/talents", json=big))

    def chunks() -> Iterator[bytes]:
        yield b'{"talent_id": "T-big", "employer": "'
        for _ in range(1100):
            yield b"x" * 1024
        yield b'"}'

    refuse(
        "chunked, without a Content-Length",
        lambda: a.clerk.post(
            "/v1/talents", content=chunks(), headers={"Content-Type": "application/json"}
        ),
    )


def test_unsupported_media_type_unless_the_body_is_json(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    refuse = refusals(subtests, count_events, 415, "unsupported_media_type")
    a = funded(api)
    text = json.dumps(grant_body(), ensure_ascii=False).encode()
    refuse(
        "text/plain",
        lambda: a.clerk.post("/v1/grants", content=text, headers={"Content-Type": "text/plain"}),
    )
    refuse("no Content-Type", lambda: a.clerk.post("/v1/grants", content=text))
    refuse(
        "form-encoded",
        lambda: a.clerk.post("/v1/grants", data={"grant_id": "G-1"}),
    )
    response = a.clerk.post(
        "/v1/grants", content=text, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert created(response)["reason"] == "安家补贴"
