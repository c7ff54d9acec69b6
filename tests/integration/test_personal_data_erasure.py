"""All of a talent's personal data, really erasable (CONTRACT §13): the name, the bank
account, a rent waiver's apartment and a bank statement's counterparty are kept only
sealed with the talent's data key (a counterparty matching no talent, not at all), so
that after `talents forget` a dump of every table and every event, decompressed and
decoded, holds none of them in any form, while the money and the chain stay."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import zlib
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger.domain.context import acting_as
from ledger.usecases.ledger import Ledger
from tests.integration.scenario import (
    YEAR,
    Actors,
    Api,
    created,
    expect,
    funded,
    grant_body,
    payment_body,
    position,
    talent_body,
    waiver_body,
)

pytestmark = pytest.mark.db

NAME = "欧阳可忘 Ouyang Forgettable"
ACCOUNT = "6222020200112233445"
APARTMENT = "人才公寓 7栋 1502 Talent Flat"
STRANGER = "陌生收款人 Unmatched Payee"
SECRETS = (NAME, ACCOUNT, APARTMENT)


def forms(text: str) -> list[str]:
    """The forms a text could take in storage: as is, JSON-escaped both ways, the hex of
    its UTF-8 bytes (bytea), its base64."""
    raw = text.encode()
    return [
        text,
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
        raw.hex(),
        base64.b64encode(raw).decode(),
    ]


def _decoded(value: Any) -> Iterator[str]:
    """A stored value and what it decodes to: JSON within, base64, zlib."""
    if isinstance(value, bytes | memoryview):
        data = bytes(value)
        yield data.hex()
        yield from _decoded(data.decode("utf-8", "replace"))
        with contextlib.suppress(zlib.error):
            yield from _decoded(zlib.decompress(data))
        return
    if isinstance(value, dict):
        for item in value.values():
            yield from _decoded(item)
        return
    if isinstance(value, list):
        for item in value:
            yield from _decoded(item)
        return
    text = str(value)
    yield text
    if isinstance(value, str) and len(value) >= 8:
        with contextlib.suppress(ValueError):
            yield from _decoded(json.loads(value))
        with contextlib.suppress(binascii.Error, ValueError):
            yield from _decoded(base64.b64decode(value.removeprefix("pd1:"), validate=True))


def everything_stored(db_url: str) -> str:
    """Every column of every row of every table, and all it decodes to."""
    parts: list[str] = []
    with psycopg.connect(db_url) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (table,) in tables.fetchall():
            rows = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
            for row in rows.fetchall():
                for value in row:
                    parts.extend(_decoded(value))
    return "\n".join(parts)


def story(api: Api) -> Actors:
    """A talent with every kind of personal data: registered with a bank account, paid,
    housed rent-free, and named by the bank on a statement."""
    a = funded(api)
    created(a.clerk.post("/v1/talents", json={**talent_body("T-7", NAME), "bank_account": ACCOUNT}))
    created(a.clerk.post("/v1/grants", json=grant_body("G-7", talent_id="T-7", amount="5000")))
    expect(a.approver.post("/v1/grants/G-7/approve", json={"note": "同意"}), 200)
    created(
        a.treasury.post(
            "/v1/payments", json=payment_body("P-7", "G-7", "1000", "2024-03-01", "BR-7")
        )
    )
    created(a.clerk.post("/v1/rent-waivers", json=waiver_body("W-7", "T-7", apartment=APARTMENT)))
    statement = (
        "value_date,bank_reference,amount,direction,counterparty\n"
        f"2024-03-01,BR-7,1000.00,debit,{NAME}\n"
        f"2024-03-02,BR-UNKNOWN,50.00,debit,{STRANGER}\n"
    )
    created(
        a.treasury.post(
            "/v1/reconciliations",
            content=statement.encode(),
            headers={"Content-Type": "text/csv"},
        )
    )
    return a


def test_personal_data_is_answered_to_those_who_read_it_and_stored_only_sealed(
    api: Api, db_url: str
) -> None:
    a = story(api)
    talent = expect(a.auditor.get("/v1/talents/T-7"), 200)
    assert (talent["name"], talent["bank_account"]) == (NAME, ACCOUNT)
    waiver = expect(a.auditor.get("/v1/rent-waivers/W-7"), 200)
    assert waiver["apartment"] == APARTMENT
    listed = expect(a.auditor.get("/v1/rent-waivers", params={"talent_id": "T-7"}), 200)
    assert [w["apartment"] for w in listed["items"]] == [APARTMENT]

    stored = everything_stored(db_url)
    assert "BR-7" in stored and "市第一人民医院" in stored, "the dump reads what is in clear"
    for secret in (*SECRETS, STRANGER):
        for form in forms(secret):
            assert form not in stored, (secret, form)


def test_after_forgetting_no_table_or_event_holds_any_of_it_in_any_form(
    api: Api, ledger: Ledger, db_url: str
) -> None:
    a = story(api)
    with acting_as("dpo-zhou", "req-forget"):
        erased_at = ledger.forget_talent("T-7").position

    after = {"min_position": erased_at}
    talent = expect(a.auditor.get("/v1/talents/T-7", params=after), 200)
    assert (talent["name"], talent["bank_account"], talent["personal_data_erased"]) == (
        None,
        None,
        True,
    )
    assert expect(a.auditor.get("/v1/rent-waivers/W-7"), 200)["apartment"] is None
    assert expect(a.auditor.get("/v1/payments/P-7"), 200)["amount"] == "1000.00"
    fund_year = expect(a.auditor.get(f"/v1/fund-years/{YEAR}", params=after), 200)
    assert fund_year["totals"]["net_paid"] == "1000.00"
    assert expect(a.auditor.get("/v1/audit/verify"), 200)["ok"] is True

    exports = "".join(
        a.auditor.get(f"/v1/exports/{name}.csv", params={"fund_year": YEAR}).text
        for name in ("audit-trail", "grants", "payments")
    )
    reconciliations = expect(a.auditor.get("/v1/reconciliations"), 200)["items"]
    report = a.auditor.get(f"/v1/reconciliations/{reconciliations[0]['reconciliation_id']}").text
    stored = everything_stored(db_url) + exports + report
    for secret in (*SECRETS, STRANGER):
        for form in forms(secret):
            assert form not in stored, (secret, form)


def test_a_registration_with_a_bank_account_is_retried_safely(api: Api) -> None:
    a = funded(api)
    body = {**talent_body("T-8", NAME), "bank_account": ACCOUNT}
    first = created(a.clerk.post("/v1/talents", json=body))
    again = a.clerk.post("/v1/talents", json=body)
    assert expect(again, 200) == first
    other = {**body, "bank_account": "6222020200112233446"}
    assert a.clerk.post("/v1/talents", json=other).json()["code"] == "idempotency_conflict"
    for bad in ("6222 0202", "abc12345678", "1" * 35):
        refused = a.clerk.post(
            "/v1/talents", json={**body, "talent_id": "T-9", "bank_account": bad}
        )
        assert refused.status_code == 422, bad
    assert position(a.clerk.post("/v1/talents", json=talent_body("T-10"))) > 0
