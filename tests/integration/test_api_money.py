"""Money over HTTP (docs/api.md, "Conventions"): a JSON string of ASCII digits with at most two
decimals, positive, at most 999999999999.99; answered with exactly two decimals."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from tests.integration.scenario import (
    MONEY_RE,
    YEAR,
    Api,
    appropriation_body,
    approved_grant,
    assert_validation_error,
    clawback_body,
    clawback_world,
    created,
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

MALFORMED: dict[str, Any] = {
    "JSON integer": 1,
    "JSON float": 1.5,
    "null": None,
    "true": True,
    "false": False,
    "zero": "0",
    "zero with decimals": "0.00",
    "negative": "-1",
    "plus sign": "+1",
    "exponent": "1e3",
    "upper-case exponent": "1E3",
    "NaN": "NaN",
    "Infinity": "Infinity",
    "three decimals": "1.234",
    "full-width digits": "１００",
    "Arabic-Indic digits": "٣",
    "thousands separator (space)": "1 000",
    "thousands separator (comma)": "1,000",
    "decimal comma": "1,5",
    "leading space": " 1",
    "trailing space": "1 ",
    "trailing newline": "1\n",
    "empty": "",
    "dot without decimals": "1.",
    "dot without integer part": ".5",
    "above the maximum (13 digits)": "1000000000000",
    "currency sign": "¥100",
    "currency code": "100 CNY",
    "object": {"amount": "1"},
    "list": ["1"],
}


def test_every_malformed_amount_is_a_validation_error_that_records_nothing(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    a = funded(api)
    before = count_events()
    for name, amount in MALFORMED.items():
        with subtests.test(name):
            response = a.clerk.post("/v1/grants", json={**grant_body(), "amount": amount})
            problem = assert_validation_error(response, "amount")
            assert problem["errors"][0]["loc"] == ["body", "amount"]
    assert count_events() == before
    assert (
        expect(a.auditor.get(f"/v1/fund-years/{YEAR}?min_position={before}"), 200)["totals"][
            "committed"
        ]
        == "0.00"
    )


def test_every_money_field_refuses_a_json_number(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    a = funded(api)
    approved_grant(a, "G-1", amount="30000")
    pay(a, "P-1", amount="20000")
    created(a.clerk.post("/v1/clawbacks", json=clawback_body("C-1", amount="100")))
    cases = [
        (a.admin, f"/v1/fund-years/{YEAR}/appropriations", appropriation_body("AP-9"), "amount"),
        (a.clerk, "/v1/grants", grant_body("G-9"), "amount"),
        (a.clerk, "/v1/rent-waivers", waiver_body("W-9"), "monthly_rent"),
        (a.treasury, "/v1/payments", payment_body("P-9", bank_reference="BR-9"), "amount"),
        (a.clerk, "/v1/clawbacks", clawback_body("C-9", amount="100"), "amount"),
        (a.treasury, "/v1/clawbacks/C-1/recoveries", recovery_body("R-9"), "amount"),
    ]
    before = count_events()
    for client, path, body, field in cases:
        for number in (100, 100.5):
            with subtests.test(path=path, value=number):
                response = client.post(path, json={**body, field: number})
                assert_validation_error(response, field)
                assert count_events() == before


ACCEPTED = {
    "12.5": "12.50",
    "200000": "200000.00",
    "3000.00": "3000.00",
    "0.01": "0.01",
    "0.1": "0.10",
    "007": "7.00",
    "999999999999.99": "999999999999.99",
}


def test_accepted_amounts_are_answered_with_exactly_two_decimals(
    api: Api, subtests: pytest.Subtests
) -> None:
    a = funded(api, lines=(("settling_in", "cash", "999999999999.99"),))
    a2 = created(
        a.admin.post(
            f"/v1/fund-years/{YEAR}/appropriations",
            json=appropriation_body("AP-more", amount="999999999999.99"),
        )
    )
    assert a2["amount"] == "999999999999.99"
    committed = Decimal(0)
    last = 0
    for n, (sent, answered) in enumerate(ACCEPTED.items()):
        with subtests.test(sent=sent):
            response = a.clerk.post("/v1/grants", json=grant_body(f"G-{n}", amount=sent))
            assert created(response)["amount"] == answered
            assert expect(a.auditor.get(f"/v1/grants/G-{n}"), 200)["amount"] == answered
            committed += Decimal(answered)
            last = position(response)
    year = expect(a.auditor.get(f"/v1/fund-years/{YEAR}?min_position={last}"), 200)
    line = year["lines"][0]
    assert line["appropriated"] == "1999999999999.98"  # sums may pass the maximum of one amount
    assert line["committed"] == f"{committed:.2f}"


def test_every_amount_in_every_answer_has_exactly_two_decimals(api: Api) -> None:
    a = clawback_world(api)
    created(a.clerk.post("/v1/talents", json=talent_body("T-2", name="李娜")))
    waiver = created(
        a.clerk.post("/v1/rent-waivers", json=waiver_body(talent_id="T-2", monthly_rent="1234.5"))
    )
    assert waiver["monthly_rent"] == "1234.50"
    assert waiver["value"] == "3703.50"
    last = a.treasury.post("/v1/clawbacks/C-1/recoveries", json=recovery_body(amount="0.5"))
    assert created(last)["amount"] == "0.50"
    answers = [
        expect(a.auditor.get(f"/v1/fund-years/{YEAR}?min_position={position(last)}"), 200),
        expect(a.auditor.get("/v1/grants/G-1"), 200),
        expect(a.auditor.get("/v1/payments/P-1"), 200),
        expect(a.auditor.get("/v1/rent-waivers/W-1"), 200),
        expect(a.auditor.get("/v1/clawbacks/C-1"), 200),
        expect(a.auditor.get("/v1/talents/T-1"), 200),
    ]
    money_fields = {
        "amount",
        "appropriated",
        "committed",
        "available",
        "paid",
        "returned",
        "net_paid",
        "in_kind_value",
        "clawback_assessed",
        "clawback_recovered",
        "effective_amount",
        "payable",
        "clawed_back",
        "monthly_rent",
        "value",
        "recovered",
        "due",
        "granted",
        "approved",
        "outstanding",
        "clawback_due",
    }
    seen: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in money_fields:
                    assert isinstance(value, str), (key, value)
                    assert MONEY_RE.fullmatch(value), (key, value)
                    seen.add(key)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(answers)
    assert seen == money_fields
