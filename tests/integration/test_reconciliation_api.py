"""`POST /v1/reconciliations` and `GET /v1/reconciliations/{id}` (docs/api.md, "Bank
statements and reconciliation") over HTTP on a real database: treasury imports a CSV
statement, every line lands in one bucket, the same file again answers the same report
and records nothing, and a bad file is refused whole, naming the line."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.bank_statements import BILLION_LAUGHS, CAMT053, MT940, XXE, Entry, camt053, mt940
from tests.integration.scenario import (
    Actors,
    Api,
    approved_grant,
    assert_problem,
    assert_validation_error,
    clawback_body,
    created,
    depart,
    expect,
    funded,
    pay,
    recovery_body,
    talent_body,
)

Counter = Callable[[], int]
HEAD = "value_date,bank_reference,amount,direction,counterparty\n"
LINE_BUCKETS = ("matched", "amount_mismatch", "date_mismatch", "unknown_in_ledger")
BUCKETS = (*LINE_BUCKETS, "missing_in_bank")
MONEY_RE = re.compile(r"^[0-9]+\.[0-9]{2}$")
DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")

EVERY_BUCKET = (
    HEAD
    + "2024-03-03,BR-1,5000.00,debit,张伟\n"  # line 2: 2 days after P-1: matched
    + "2024-03-08,BR-2,3000,debit,张伟\n"  # line 3: exactly 3 days after P-2: matched
    + "2024-03-10,BR-3,2100.00,debit,张伟\n"  # line 4: P-3 is 2000: amount_mismatch
    + "2024-03-16,BR-4,1000.00,debit,张伟\n"  # line 5: 4 days after P-4: date_mismatch
    + "2024-03-15,BR-5,1500.00,debit,张伟\n"  # line 6: P-5: matched
    + "2024-03-18,BR-5,1500.00,credit,张伟\n"  # line 7: P-5's return: matched
    + "2024-03-30,BR-9,600.00,debit,张伟\n"  # line 8: 8 days after P-9: date_mismatch
    + "2024-03-26,RB-1,500.00,credit,李娜\n"  # line 9: recovery R-1: matched
    + "2024-03-22,BR-X,999.00,debit,某公司\n"  # line 10: no such reference
    + "2024-03-03,BR-1,5000.00,debit,张伟\n"  # line 11: line 2 again: P-1 already claimed
).encode()
EXPECTED_BUCKETS = {
    (2, "BR-1"): "matched",
    (3, "BR-2"): "matched",
    (4, "BR-3"): "amount_mismatch",
    (5, "BR-4"): "date_mismatch",
    (6, "BR-5"): "matched",
    (7, "BR-5"): "matched",
    (8, "BR-9"): "date_mismatch",
    (9, "RB-1"): "matched",
    (10, "BR-X"): "unknown_in_ledger",
    (11, "BR-1"): "unknown_in_ledger",
}


def treasury_world(api: Api) -> Actors:
    """Payments on G-1 (T-1) in and around March 2024, one returned; T-2 departed with
    a clawback on G-2 and a recovery RB-1."""
    a = funded(api)
    approved_grant(a, "G-1", amount="30000")
    for n, amount, day in [
        (1, "5000", "2024-03-01"),
        (2, "3000", "2024-03-05"),
        (3, "2000", "2024-03-10"),
        (4, "1000", "2024-03-12"),
        (5, "1500", "2024-03-15"),
        (6, "800", "2024-03-20"),  # not on the statement: missing_in_bank
        (7, "700", "2024-06-01"),  # after the statement's period
        (9, "600", "2024-03-22"),
    ]:
        pay(a, f"P-{n}", amount=amount, value_date=day, bank_reference=f"BR-{n}")
    returned = {"returned_on": "2024-03-18", "reason": "账户已销户"}
    expect(a.treasury.post("/v1/payments/P-5/return", json=returned), 200)
    created(a.clerk.post("/v1/talents", json=talent_body("T-2", name="李娜")))
    approved_grant(a, "G-2", amount="10000", talent_id="T-2")
    # before the statement's period: neither matched nor missing
    pay(a, "P-8", grant_id="G-2", amount="4000", value_date="2024-01-10", bank_reference="BR-8")
    depart(a, "T-2", "2024-02-01")
    created(a.clerk.post("/v1/clawbacks", json=clawback_body("C-1", "G-2", amount="2000")))
    recovery = recovery_body("R-1", amount="500", value_date="2024-03-25", bank_reference="RB-1")
    created(a.treasury.post("/v1/clawbacks/C-1/recoveries", json=recovery))
    return a


def post_statement(
    client: TestClient, data: bytes, content_type: str = "text/csv; charset=utf-8"
) -> Any:
    return client.post("/v1/reconciliations", content=data, headers={"Content-Type": content_type})


def buckets_of(report: dict[str, Any]) -> dict[tuple[int, str], str]:
    found: dict[tuple[int, str], str] = {}
    for bucket in LINE_BUCKETS:
        for entry in report[bucket]:
            key = (entry["line"], entry["bank_reference"])
            assert key not in found, f"{key} is in {found.get(key)} and in {bucket}"
            found[key] = bucket
    return found


def assert_entries_well_formed(report: dict[str, Any]) -> None:
    for bucket in BUCKETS:
        assert isinstance(report[bucket], list)
        for entry in report[bucket]:
            assert isinstance(entry["bank_reference"], str)
            assert entry["bank_reference"]
            assert MONEY_RE.fullmatch(entry["amount"]), entry
            assert DATE_RE.fullmatch(entry["value_date"]), entry


# --- the report -----------------------------------------------------------------------


def test_a_statement_lands_every_line_in_exactly_one_bucket(api: Api) -> None:
    a = treasury_world(api)

    report = created(post_statement(a.treasury, EVERY_BUCKET))

    assert buckets_of(report) == EXPECTED_BUCKETS
    assert sum(len(report[b]) for b in LINE_BUCKETS) == len(EXPECTED_BUCKETS)
    assert [
        (e["bank_reference"], e["amount"], e["value_date"]) for e in report["missing_in_bank"]
    ] == [("BR-6", "800.00", "2024-03-20")]
    assert report["period"] == {"from": "2024-03-03", "to": "2024-03-30"}
    assert_entries_well_formed(report)
    matched = {(e["line"]): e for e in report["matched"]}
    assert matched[3]["amount"] == "3000.00"  # the bank's "3000", in the wire form
    assert matched[7]["direction"] == "credit"
    assert "counterparty" not in matched[9], "a person's name: kept only sealed, apart"
    assert matched[9]["ledger"]["talent_id"]
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", report["reconciliation_id"])


def test_the_report_is_read_back_by_its_id_and_any_role_may_read_it(api: Api) -> None:
    a = treasury_world(api)
    report = created(post_statement(a.treasury, EVERY_BUCKET))
    path = f"/v1/reconciliations/{report['reconciliation_id']}"

    for client in (a.auditor, a.treasury, a.clerk, a.admin):
        assert expect(client.get(path), 200) == report
    assert_problem(api(None).get(path), 401, "unauthenticated")


def test_an_unknown_reconciliation_is_not_found(api: Api) -> None:
    a = Actors.of(api)
    assert_problem(
        a.auditor.get("/v1/reconciliations/R-000000000000000000000000"), 404, "not_found"
    )
    assert_problem(a.auditor.get("/v1/reconciliations/nothing-here"), 404, "not_found")


def test_the_same_file_again_answers_the_same_report_and_records_nothing(
    api: Api, count_events: Counter
) -> None:
    a = treasury_world(api)
    first = post_statement(a.treasury, EVERY_BUCKET)
    report = created(first)
    events = count_events()

    again = post_statement(a.treasury, EVERY_BUCKET)

    assert expect(again, 200) == report
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert int(again.headers["Ledger-Position"]) >= int(first.headers["Ledger-Position"])
    assert count_events() == events
    # even after the ledger changed: the statement was reconciled once, as it was then
    pay(a, "P-10", amount="100", value_date="2024-03-21", bank_reference="BR-10")
    events = count_events()
    assert expect(post_statement(a.treasury, EVERY_BUCKET), 200) == report
    assert count_events() == events


def test_the_import_is_an_event_the_auditor_sees(api: Api, count_events: Counter) -> None:
    a = treasury_world(api)
    before = count_events()
    response = post_statement(a.treasury, EVERY_BUCKET)
    report = created(response)
    assert count_events() == before + 1

    page = expect(
        a.auditor.get(
            "/v1/events",
            params={"min_position": response.headers["Ledger-Position"], "limit": 1000},
        ),
        200,
    )

    [entry] = [e for e in page["items"] if e["event_type"] == "Reconciliation.Imported"]
    assert entry["actor"] == "treasury"
    assert entry["reference"] == hashlib.sha256(EVERY_BUCKET).hexdigest()
    assert entry["position"] == int(response.headers["Ledger-Position"])
    assert report["reconciliation_id"]


def test_a_statement_with_a_bom_is_read_like_one_without(api: Api) -> None:
    a = treasury_world(api)
    plain = created(post_statement(a.treasury, EVERY_BUCKET))

    with_bom = created(post_statement(a.treasury, b"\xef\xbb\xbf" + EVERY_BUCKET))

    assert with_bom["reconciliation_id"] != plain["reconciliation_id"]  # another file
    assert buckets_of(with_bom) == EXPECTED_BUCKETS
    for bucket in BUCKETS:
        assert with_bom[bucket] == plain[bucket]


def test_a_statement_sees_the_payment_recorded_just_before_it(api: Api) -> None:
    a = funded(api)
    approved_grant(a)
    pay(a, "P-1", amount="10000", value_date="2024-03-01", bank_reference="BR-1")

    report = created(
        post_statement(a.treasury, (HEAD + "2024-03-01,BR-1,10000.00,debit,x\n").encode())
    )

    assert [e["bank_reference"] for e in report["matched"]] == ["BR-1"]
    assert report["matched"][0]["ledger"]["payment_id"] == "P-1"


# --- refusals -----------------------------------------------------------------------

GOOD = "2024-03-03,BR-1,5000.00,debit,张伟\n"
BAD_FILES: dict[str, tuple[bytes, int, str]] = {
    "wrong header": (("date,ref,amount,direction,counterparty\n" + GOOD).encode(), 1, "header"),
    "no header": (GOOD.encode(), 1, "header"),
    "amount 1e3": ((HEAD + GOOD + "2024-03-04,BR-2,1e3,debit,x\n").encode(), 3, "amount"),
    "amount -5": ((HEAD + GOOD + "2024-03-04,BR-2,-5,debit,x\n").encode(), 3, "amount"),
    "amount 12.345": ((HEAD + GOOD + "2024-03-04,BR-2,12.345,debit,x\n").encode(), 3, "amount"),
    "bad date": ((HEAD + GOOD + GOOD + "2024-13-01,BR-2,1.00,debit,x\n").encode(), 4, "value_date"),
    "bad direction": ((HEAD + "2024-03-04,BR-2,1.00,withdrawal,x\n").encode(), 2, "direction"),
    "wrong column count": ((HEAD + GOOD + "2024-03-04,BR-2,1.00,debit\n").encode(), 3, "columns"),
    "invalid UTF-8": (
        (HEAD + GOOD).encode() + b"2024-03-04,BR-2,1.00,debit,\xff\xfe\n",
        3,
        "encoding",
    ),
    "empty statement": (HEAD.encode(), 2, "lines"),
}


def test_a_bad_file_is_refused_naming_the_line_and_nothing_is_recorded(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    a = funded(api)
    approved_grant(a)
    pay(a, "P-1", amount="5000", value_date="2024-03-01", bank_reference="BR-1")
    events = count_events()
    for name, (data, line, field) in BAD_FILES.items():
        with subtests.test(name):
            body = assert_validation_error(post_statement(a.treasury, data))
            assert body["errors"][0]["loc"] == ["body", line, field]
            assert f"line {line}" in body["detail"]
            assert count_events() == events
    # no file at all is named as the missing body
    body = assert_validation_error(post_statement(a.treasury, b""))
    assert body["errors"] == [{"loc": ["body"], "msg": "the statement is required", "type": "rule"}]
    assert count_events() == events


def test_a_statement_over_20_mib_is_refused(api: Api, count_events: Counter) -> None:
    a = Actors.of(api)
    line = b"2024-03-04,BR-2,1.00,debit,x\n"
    data = HEAD.encode() + line * (20 * 1024 * 1024 // len(line) + 1)
    assert len(data) > 20 * 1024 * 1024
    events = count_events()

    assert_problem(post_statement(a.treasury, data), 413, "payload_too_large")
    assert count_events() == events


def test_a_statement_must_be_sent_as_csv(api: Api, count_events: Counter) -> None:
    a = Actors.of(api)
    data = (HEAD + GOOD).encode()
    events = count_events()

    assert_problem(
        post_statement(a.treasury, data, "application/json"), 415, "unsupported_media_type"
    )
    response = a.treasury.post("/v1/reconciliations", json={"statement": (HEAD + GOOD)})
    assert_problem(response, 415, "unsupported_media_type")
    response = a.treasury.post("/v1/reconciliations", content=data)  # no content type
    assert_problem(response, 415, "unsupported_media_type")
    assert count_events() == events
    assert created(post_statement(a.treasury, data, "application/csv"))


@pytest.mark.parametrize("role", ["clerk", "admin", "approver", "auditor"])
def test_only_treasury_may_import_a_statement(api: Api, count_events: Counter, role: str) -> None:
    Actors.of(api)
    events = count_events()
    good = (HEAD + GOOD).encode()

    assert_problem(post_statement(api(role), good), 403, "forbidden")
    # roles are checked before the file is read: a bad file is still just forbidden
    assert_problem(post_statement(api(role), b"not,a,statement\n"), 403, "forbidden")
    assert_problem(post_statement(api(None), good), 401, "unauthenticated")
    assert count_events() == events


CN_BANK_EXPORT = (
    "中国工商银行 账户明细\n"
    "账号,6222020200001111222\n"
    "交易日期,摘要,借方发生额,贷方发生额,对方户名,交易流水号\n"
    '2024/03/03,人才补贴,"5,000.00",,张伟,BR-1\n'
    "2024/03/18,退回,,1500.00,张伟,BR-5\n"
    "2024/03/22,其他,999.00,,某公司,BR-X\n"
    '合计,,"5,999.00",1500.00,,\n'
)


def test_a_chinese_bank_export_is_reconciled_as_the_ledgers_own_layout_is(api: Api) -> None:
    a = treasury_world(api)
    data = CN_BANK_EXPORT.encode("gbk")
    report = created(post_statement(a.treasury, data, "text/csv; profile=cn-bank"))
    assert buckets_of(report) == {
        (4, "BR-1"): "matched",
        (5, "BR-5"): "matched",
        (6, "BR-X"): "unknown_in_ledger",
    }
    again = post_statement(a.treasury, data, 'text/csv; charset=GBK; profile="cn-bank"')
    assert expect(again, 200)["reconciliation_id"] == report["reconciliation_id"]


def test_an_unknown_profile_or_a_malformed_export_records_nothing(
    api: Api, count_events: Callable[[], int]
) -> None:
    a = treasury_world(api)
    before = count_events()
    data = CN_BANK_EXPORT.encode("gbk")
    assert_problem(
        post_statement(a.treasury, data, "text/csv; profile=swift"), 415, "unsupported_media_type"
    )
    broken = CN_BANK_EXPORT.replace("2024/03/18", "2024/02/30").encode("gbk")
    refused = assert_problem(
        post_statement(a.treasury, broken, "text/csv; profile=cn-bank"), 422, "validation_error"
    )
    assert refused["errors"][0]["loc"] == ["body", 5, "交易日期"]
    assert count_events() == before


# --- camt.053 and MT940 (CONTRACT §6, second edition) ---------------------------------


def buckets_by_reference(report: dict[str, Any]) -> dict[str, str]:
    return {e["bank_reference"]: bucket for bucket in LINE_BUCKETS for e in report[bucket]}


STATED_BUCKETS = {
    "BR-1": "matched",
    "BR-2": "matched",  # the batch's first transfer, 3 days after P-2
    "BR-3": "matched",  # and its second
    "BR-5": "matched",  # P-5's return
    "2024032100017": "unknown_in_ledger",  # no reference the ledger knows
    "RB-1": "matched",  # R-1, known by the bank's reference
}


def test_a_camt053_statement_is_reconciled_a_line_per_batched_transaction(api: Api) -> None:
    a = treasury_world(api)

    report = created(post_statement(a.treasury, CAMT053, "application/xml"))

    assert buckets_by_reference(report) == STATED_BUCKETS
    assert report["line_count"] == 6
    [batched] = [e for e in report["matched"] if e["bank_reference"] == "BR-3"]
    assert (batched["line"], batched["element"]) == (3, "Stmt/Ntry[2]/NtryDtls[1]/TxDtls[2]")
    assert batched["ledger"]["payment_id"] == "P-3"
    [unknown] = report["unknown_in_ledger"]
    assert unknown["candidates"] == ["P-6"], "800.00 paid the day before, on no line yet"
    assert [e["ledger"]["payment_id"] for e in report["missing_in_bank"]] == [
        "P-4",
        "P-5",
        "P-6",
        "P-9",
    ]
    assert report["account"] == "31050161373600001234"
    assert report["balances"] == {
        "opening": "1000000.00",
        "opening_on": "2024-03-01",
        "closing": "991200.00",
        "closing_on": "2024-03-31",
    }
    assert "continuity" not in report, "the account's first statement"
    assert_entries_well_formed(report)
    again = post_statement(a.treasury, CAMT053, "text/xml")
    assert expect(again, 200) == report
    path = f"/v1/reconciliations/{report['reconciliation_id']}"
    assert expect(a.auditor.get(path), 200) == report


def test_an_mt940_statement_is_reconciled_naming_its_lines(api: Api) -> None:
    a = treasury_world(api)

    report = created(post_statement(a.treasury, MT940, "text/plain; charset=utf-8"))

    assert buckets_by_reference(report) == STATED_BUCKETS
    assert [(e["line"], e["bank_reference"]) for e in report["matched"]] == [
        (6, "BR-1"),
        (11, "BR-2"),
        (13, "BR-3"),
        (15, "BR-5"),
        (20, "RB-1"),
    ]
    assert report["unknown_in_ledger"][0]["candidates"] == ["P-6"]
    assert report["balances"]["closing"] == "991200.00"


def test_a_payment_a_statement_claimed_before_is_no_candidate(api: Api) -> None:
    a = treasury_world(api)
    created(post_statement(a.treasury, (HEAD + "2024-03-20,BR-6,800.00,debit,张伟\n").encode()))

    report = created(post_statement(a.treasury, CAMT053, "application/xml"))

    assert report["unknown_in_ledger"][0]["candidates"] == []


def exceptions(a: Actors, written: Any) -> list[dict[str, Any]]:
    page = a.auditor.get(
        "/v1/reports/exceptions", params={"min_position": written.headers["Ledger-Position"]}
    )
    return [f for f in expect(page, 200)["items"] if f["code"] == "statement_discontinuity"]


def test_continuity_with_the_previous_statement_of_the_account(api: Api) -> None:
    a = treasury_world(api)
    march = created(post_statement(a.treasury, CAMT053, "application/xml"))
    april_entries = [Entry("2024-04-02", "BR-A1", "100.00", "debit")]
    april = {"opened_on": "2024-04-01", "closed_on": "2024-04-30"}

    carried_on = post_statement(
        a.treasury, camt053(april_entries, opening="991200.00", **april), "application/xml"
    )

    assert created(carried_on)["continuity"] == {
        "previous_reconciliation_id": march["reconciliation_id"],
        "previous_closing": "991200.00",
        "opening": "991200.00",
        "ok": True,
    }
    assert exceptions(a, carried_on) == []

    # another account's statement has no previous; this account's in MT940 follows April's
    other = post_statement(
        a.treasury, camt053(april_entries, account="9999", **april), "application/xml"
    )
    assert "continuity" not in created(other)
    may = mt940(
        [Entry("2024-05-06", "BR-M1", "50.00", "debit")],
        opening="991000.00",
        opened_on="2024-05-01",
        closed_on="2024-05-31",
    )
    broken = post_statement(a.treasury, may, "text/plain")

    continuity = created(broken)["continuity"]
    assert (continuity["previous_closing"], continuity["opening"], continuity["ok"]) == (
        "991100.00",
        "991000.00",
        False,
    )
    [flag] = exceptions(a, broken)
    assert flag["reconciliation_id"] == created_id(may)
    assert flag["previous_reconciliation_id"] == created_id(
        camt053(april_entries, opening="991200.00", **april)
    )
    assert flag["account"] == "31050161373600001234"


def created_id(data: bytes) -> str:
    return "R-" + hashlib.sha256(data).hexdigest()[:24]


STATEMENT_REFUSALS: dict[str, tuple[bytes, str, list[Any], str]] = {
    "not XML": (b"<Document>", "application/xml", ["body", 1, "xml"], "validation_error"),
    "billion laughs": (BILLION_LAUGHS, "application/xml", ["body", "DOCTYPE"], "validation_error"),
    "XXE": (XXE, "application/xml", ["body", "DOCTYPE"], "validation_error"),
    "wrong namespace": (
        CAMT053.replace(b"camt.053.001.08", b"camt.053.001.02"),
        "application/xml",
        ["body", "Document"],
        "validation_error",
    ),
    "camt: a missing amount": (
        CAMT053.replace(b'<NtryRef>2</NtryRef>\n        <Amt Ccy="CNY">5000.00</Amt>', b""),
        "application/xml",
        ["body", "Stmt/Ntry[2]/Amt"],
        "validation_error",
    ),
    "camt: a bad date": (
        CAMT053.replace(b"<Dt>2024-03-21</Dt>\n        </ValDt>", b"<Dt>2024-02-30</Dt></ValDt>"),
        "application/xml",
        ["body", "Stmt/Ntry[4]/ValDt/Dt"],
        "validation_error",
    ),
    "camt: unbalanced": (
        CAMT053.replace(b">991200.00<", b">991300.00<"),
        "application/xml",
        ["body", "Stmt/Bal[2]"],
        "statement_unbalanced",
    ),
    "mt940: a bad amount": (
        MT940.replace(b"D5000,00NTRF", b"D5000.00NTRF"),
        "text/plain",
        ["body", 6, ":61:"],
        "validation_error",
    ),
    "mt940: bad encoding": (
        MT940.replace(b"/NAME/LI NA", b"/NAME/LI\x81\x20NA"),
        "text/plain",
        ["body", 21, "encoding"],
        "validation_error",
    ),
    "mt940: unbalanced": (
        MT940.replace(b":62F:C240331CNY991200,00", b":62F:C240331CNY991201,00"),
        "text/plain",
        ["body", 23, ":62F:"],
        "statement_unbalanced",
    ),
}


def test_a_malformed_or_unbalanced_statement_is_refused_and_nothing_is_recorded(
    api: Api, count_events: Counter, subtests: pytest.Subtests
) -> None:
    a = treasury_world(api)
    events = count_events()
    for name, (data, media_type, loc, code) in STATEMENT_REFUSALS.items():
        with subtests.test(name):
            refused = assert_problem(post_statement(a.treasury, data, media_type), 422, code)
            assert refused["errors"][0]["loc"] == loc
            assert refused["errors"][0]["type"] == "statement"
            assert count_events() == events
            assert_problem(
                a.auditor.get(f"/v1/reconciliations/{created_id(data)}"), 404, "not_found"
            )
    listed = expect(a.auditor.get("/v1/reconciliations"), 200)
    assert listed["items"] == []


def test_a_statement_format_is_chosen_by_its_media_type(api: Api) -> None:
    a = treasury_world(api)
    for media_type in ("application/xml; profile=cn-bank", "application/json", "text/html"):
        assert_problem(
            post_statement(a.treasury, CAMT053, media_type), 415, "unsupported_media_type"
        )
    # an MT940 sent as XML is not XML; XML sent as MT940 does not start with :20:
    assert_problem(post_statement(a.treasury, MT940, "application/xml"), 422, "validation_error")
    assert_problem(post_statement(a.treasury, CAMT053, "text/plain"), 422, "validation_error")
