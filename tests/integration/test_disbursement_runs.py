"""Instalments and disbursement runs (§14) over HTTP on a real database: a grant's plan
split to the fen and filled earliest first; a run taking every unpaid instalment due
that no open run holds, leaving out departed talents and talents without an account;
its pain.001 valid against the published ISO 20022 schema; settlement by JSON and by
pain.002, all or nothing and replay-safe, rejected items due again."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import xmlschema
from defusedxml.ElementTree import fromstring

from ledger.domain.context import acting_as
from ledger.domain.errors import ValidationFailed
from ledger.entrypoints.runtime import open_ledger
from ledger.usecases.runs import PrepareRun
from tests.integration.scenario import (
    Actors,
    Api,
    assert_problem,
    assert_validation_error,
    created,
    depart,
    expect,
    grant_body,
    open_year,
    payment_body,
    talent_body,
)

pytestmark = pytest.mark.db

SCHEMAS = Path(__file__).parents[1] / "fixtures" / "iso20022"
PAIN_001 = "{urn:iso:std:iso:20022:tech:xsd:pain.001.001.09}"
LINES = (("settling_in", "cash", "500000"), ("rent_subsidy", "cash", "500000"))
PLAN = {"count": 3, "first_due_on": "2024-01-31", "interval_months": 1}


def _talent(a: Actors, talent_id: str, name: str, account: str | None) -> None:
    body = talent_body(talent_id, name)
    if account:
        body["bank_account"] = account
    created(a.clerk.post("/v1/talents", json=body))


def _grant(a: Actors, grant_id: str, talent_id: str, amount: str, **extra: Any) -> Any:
    body = {**grant_body(grant_id, talent_id, amount, "rent_subsidy"), **extra}
    created(a.clerk.post("/v1/grants", json=body))
    return expect(a.approver.post(f"/v1/grants/{grant_id}/approve", json={}), 200)


def _world(api: Api) -> Actors:
    """T-1 and T-2 with accounts, T-3 without, T-4 departed; a plan of 3 on each."""
    a = Actors.of(api)
    open_year(a, 2024, LINES)
    _talent(a, "T-1", "张伟", "6222020200112233")
    _talent(a, "T-2", "李娜", "6222020200445566")
    _talent(a, "T-3", "王芳", None)
    _talent(a, "T-4", "刘洋", "6222020200778899")
    for n in (1, 2, 3):
        _grant(a, f"G-{n}", f"T-{n}", "1000.00", instalments=PLAN)
    _grant(a, "G-4", "T-4", "600.00", instalments=PLAN)
    depart(a, "T-4", "2024-02-15")
    return a


def test_a_plan_splits_to_the_fen_and_payments_fill_the_earliest_first(api: Api) -> None:
    a = _world(api)
    grant = expect(a.auditor.get("/v1/grants/G-1"), 200)
    assert [(i["number"], i["due_on"], i["amount"], i["status"]) for i in grant["instalments"]] == [
        (1, "2024-01-31", "333.33", "unpaid"),
        (2, "2024-02-29", "333.33", "unpaid"),
        (3, "2024-03-31", "333.34", "unpaid"),
    ]
    paid = a.treasury.post("/v1/payments", json=payment_body("P-1", "G-1", "500.00"))
    assert paid.status_code == 201
    grant = expect(a.auditor.get("/v1/grants/G-1"), 200)
    assert [(i["paid"], i["status"]) for i in grant["instalments"]] == [
        ("333.33", "paid"),
        ("166.67", "partially_paid"),
        ("0.00", "unpaid"),
    ]
    at = paid.headers["Ledger-Position"]
    listed = expect(
        a.auditor.get("/v1/grants", params={"talent_id": "T-1", "min_position": at}), 200
    )
    assert listed["items"][0]["instalments"] == grant["instalments"]


def test_without_a_plan_one_instalment_falls_due_on_the_approval_date(
    api: Api, test_settings: Any
) -> None:
    a = _world(api)
    proposed = created(a.clerk.post("/v1/grants", json=grant_body("G-9", "T-1", "800")))
    assert proposed["instalments"] == [
        {"number": 1, "due_on": None, "amount": "800.00", "paid": "0.00", "status": "scheduled"}
    ]
    approved = expect(a.approver.post("/v1/grants/G-9/approve", json={}), 200)
    today = test_settings.today().isoformat()
    assert [(i["due_on"], i["status"]) for i in approved["instalments"]] == [(today, "unpaid")]


@pytest.mark.parametrize(
    ("plan", "amount"),
    [
        ({**PLAN, "count": 0}, "100"),
        ({**PLAN, "count": 121}, "100"),
        ({**PLAN, "interval_months": 13}, "100"),
        ({**PLAN, "first_due_on": "2024-02-30"}, "100"),
        ({**PLAN, "extra": 1}, "100"),
        ({**PLAN, "count": 3}, "0.02"),  # an instalment of nothing
        ({**PLAN, "first_due_on": "2999-11-30"}, "100"),  # the third would fall in 3000
    ],
)
def test_a_malformed_plan_is_refused_and_records_nothing(
    api: Api, plan: dict[str, Any], amount: str
) -> None:
    a = _world(api)
    body = {**grant_body("G-X", "T-1", amount, "rent_subsidy"), "instalments": plan}
    assert_validation_error(a.clerk.post("/v1/grants", json=body))
    assert_problem(a.auditor.get("/v1/grants/G-X"), 404, "not_found")


def _run(a: Actors, run_id: str, due_on: str, **extra: Any) -> Any:
    body = {"run_id": run_id, "due_on": due_on, "value_date": due_on, **extra}
    return a.treasury.post("/v1/disbursement-runs", json=body)


def test_a_run_takes_what_is_due_and_leaves_out_whom_it_cannot_pay(api: Api) -> None:
    a = _world(api)
    run = created(_run(a, "R-1", "2024-02-29", fund_year=2024))
    assert run == {
        "run_id": "R-1",
        "status": "prepared",
        "due_on": "2024-02-29",
        "value_date": "2024-02-29",
        "fund_year": 2024,
        "programme": None,
        "items": 4,
        "total": "1333.32",
        "settled": 0,
        "rejected": 0,
        "excluded": [
            {"grant_id": "G-3", "reason": "no_bank_account"},
            {"grant_id": "G-4", "reason": "talent_departed"},
        ],
    }
    first = expect(a.auditor.get("/v1/disbursement-runs/R-1/items", params={"limit": 3}), 200)
    rest = expect(
        a.auditor.get("/v1/disbursement-runs/R-1/items", params={"after": first["next"]}), 200
    )
    assert rest["next"] is None
    items = first["items"] + rest["items"]
    assert [(i["payment_id"], i["grant_id"], i["instalment"], i["amount"]) for i in items] == [
        ("R-1-1", "G-1", 1, "333.33"),
        ("R-1-2", "G-1", 2, "333.33"),
        ("R-1-3", "G-2", 1, "333.33"),
        ("R-1-4", "G-2", 2, "333.33"),
    ]
    # the same request again answers the run; another run finds nothing free
    again = _run(a, "R-1", "2024-02-29", fund_year=2024)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert_validation_error(_run(a, "R-2", "2024-02-29"), "due_on")
    # the third instalments fall due later: a run of March takes only them
    response = _run(a, "R-3", "2024-03-31", programme="rent_subsidy")
    march = created(response)
    assert (march["items"], march["total"]) == (2, "666.68")
    at = response.headers["Ledger-Position"]
    listed = expect(
        a.auditor.get("/v1/disbursement-runs", params={"status": "prepared", "min_position": at}),
        200,
    )
    assert [r["run_id"] for r in listed["items"]] == ["R-1", "R-3"]
    assert listed["items"][0] == run
    assert_validation_error(a.auditor.get("/v1/disbursement-runs", params={"state": "x"}))


def test_the_payment_file_is_valid_pain_001_with_the_creditors_opened(api: Api) -> None:
    a = _world(api)
    created(_run(a, "R-1", "2024-01-31"))
    assert_problem(a.auditor.get("/v1/disbursement-runs/R-1/pain.001.xml"), 403, "forbidden")
    response = a.treasury.get("/v1/disbursement-runs/R-1/pain.001.xml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    xmlschema.XMLSchema(SCHEMAS / "pain.001.001.09.xsd").validate(response.content)
    root = fromstring(response.content)
    p = PAIN_001
    block = root.find(f"{p}CstmrCdtTrfInitn/{p}PmtInf")
    assert block is not None
    assert block.findtext(f"{p}ReqdExctnDt/{p}Dt") == "2024-01-31"
    # T-4 departed on 2024-02-15, after this run's value date: paid still
    assert (block.findtext(f"{p}NbOfTxs"), block.findtext(f"{p}CtrlSum")) == ("3", "866.66")
    transfers = [
        (
            t.findtext(f"{p}PmtId/{p}EndToEndId"),
            t.findtext(f"{p}Amt/{p}InstdAmt"),
            t.find(f"{p}Amt/{p}InstdAmt").get("Ccy"),  # type: ignore[union-attr]
            t.findtext(f"{p}Cdtr/{p}Nm"),
            t.findtext(f"{p}CdtrAcct/{p}Id/{p}Othr/{p}Id"),
        )
        for t in block.findall(f"{p}CdtTrfTxInf")
    ]
    assert transfers == [
        ("R-1-1", "333.33", "CNY", "张伟", "6222020200112233"),
        ("R-1-2", "333.33", "CNY", "李娜", "6222020200445566"),
        ("R-1-3", "200.00", "CNY", "刘洋", "6222020200778899"),
    ]


def test_settling_records_payments_all_or_nothing_and_a_replay_records_nothing(
    api: Api,
) -> None:
    a = _world(api)
    created(_run(a, "R-1", "2024-02-29"))
    settlement = {
        "settled": [{"payment_id": "R-1-1", "bank_reference": "BK-1"}],
        "rejected": [{"payment_id": "R-1-3", "reason": "AC04 account closed"}],
    }
    done = expect(a.treasury.post("/v1/disbursement-runs/R-1/settle", json=settlement), 200)
    assert (done["status"], done["settled"], done["rejected"]) == ("partially_settled", 1, 1)
    payment = expect(a.auditor.get("/v1/payments/R-1-1"), 200)
    assert (payment["amount"], payment["value_date"], payment["bank_reference"]) == (
        "333.33",
        "2024-02-29",
        "BK-1",
    )
    again = a.treasury.post("/v1/disbursement-runs/R-1/settle", json=settlement)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    items = expect(a.auditor.get("/v1/disbursement-runs/R-1/items"), 200)["items"]
    assert [(i["status"], i["bank_reference"], i["reason"]) for i in items] == [
        ("settled", "BK-1", None),
        ("pending", None, None),
        ("rejected", None, "AC04 account closed"),
        ("pending", None, None),
    ]
    # one bad item (a bank reference already used) refuses the whole settlement
    created(
        a.treasury.post("/v1/payments", json=payment_body("P-X", "G-3", "1", "2024-02-01", "BK-X"))
    )
    bad = {
        "settled": [
            {"payment_id": "R-1-2", "bank_reference": "BK-2"},
            {"payment_id": "R-1-4", "bank_reference": "BK-X"},
        ]
    }
    assert_problem(
        a.treasury.post("/v1/disbursement-runs/R-1/settle", json=bad),
        409,
        "duplicate_bank_reference",
    )
    assert_problem(a.auditor.get("/v1/payments/R-1-2"), 404, "not_found")
    # an item settled otherwise than it was, or not of the run, is refused
    other = {"settled": [{"payment_id": "R-1-1", "bank_reference": "BK-9"}]}
    assert_problem(
        a.treasury.post("/v1/disbursement-runs/R-1/settle", json=other), 409, "invalid_state"
    )
    stranger = {"rejected": [{"payment_id": "R-9-1", "reason": "x"}]}
    assert_validation_error(a.treasury.post("/v1/disbursement-runs/R-1/settle", json=stranger))
    # the rejected instalment is due again: the next run takes it (with G-4's first,
    # which a value date before T-4 departed may pay)
    rerun = created(_run(a, "R-2", "2024-01-31"))
    assert rerun["items"] == 2
    rerun_items = expect(a.auditor.get("/v1/disbursement-runs/R-2/items"), 200)["items"]
    assert [(i["grant_id"], i["instalment"]) for i in rerun_items] == [("G-2", 1), ("G-4", 1)]


STATUS_REPORT = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10">
  <CstmrPmtStsRpt>
    <GrpHdr><MsgId>STS-1</MsgId><CreDtTm>2024-01-31T18:00:00</CreDtTm></GrpHdr>
    <OrgnlGrpInfAndSts><OrgnlMsgId>{run}</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId></OrgnlGrpInfAndSts>
    <OrgnlPmtInfAndSts>
      <OrgnlPmtInfId>{run}</OrgnlPmtInfId>
      <TxInfAndSts><OrgnlEndToEndId>{run}-1</OrgnlEndToEndId><TxSts>ACSC</TxSts><AcctSvcrRef>BK-1</AcctSvcrRef></TxInfAndSts>
      <TxInfAndSts><OrgnlEndToEndId>{run}-2</OrgnlEndToEndId><TxSts>RJCT</TxSts><StsRsnInf><Rsn><Cd>AC04</Cd></Rsn><AddtlInf>账户已销户</AddtlInf></StsRsnInf></TxInfAndSts>
    </OrgnlPmtInfAndSts>
  </CstmrPmtStsRpt>
</Document>
"""


def _xml(a: Actors, run_id: str, body: str) -> Any:
    return a.treasury.post(
        f"/v1/disbursement-runs/{run_id}/settle",
        content=body.encode(),
        headers={"Content-Type": "application/xml"},
    )


def test_a_pain_002_status_report_settles_the_run(api: Api) -> None:
    a = _world(api)
    created(_run(a, "R-1", "2024-01-31"))
    done = expect(_xml(a, "R-1", STATUS_REPORT.format(run="R-1")), 200)
    assert (done["status"], done["settled"], done["rejected"]) == ("partially_settled", 1, 1)
    items = expect(a.auditor.get("/v1/disbursement-runs/R-1/items"), 200)["items"]
    assert [(i["status"], i["reason"]) for i in items] == [
        ("settled", None),
        ("rejected", "AC04 账户已销户"),
        ("pending", None),
    ]
    replay = _xml(a, "R-1", STATUS_REPORT.format(run="R-1"))
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"


XXE = """<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10">&x;</Document>"""


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ("<Document", "Document"),
        (XXE, "Document"),
        (STATUS_REPORT.format(run="R-1").replace("pain.002.001.10", "pain.002.001.03"), "Document"),
        (STATUS_REPORT.format(run="R-9"), "OrgnlGrpInfAndSts/OrgnlMsgId"),
        (
            STATUS_REPORT.format(run="R-1").replace("<AcctSvcrRef>BK-1</AcctSvcrRef>", ""),
            "OrgnlPmtInfAndSts/TxInfAndSts[1]/AcctSvcrRef",
        ),
    ],
)
def test_a_malformed_status_report_is_refused_naming_the_element(
    api: Api, body: str, where: str
) -> None:
    a = _world(api)
    created(_run(a, "R-1", "2024-01-31"))
    problem = assert_problem(_xml(a, "R-1", body), 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["body", where]
    run = expect(a.auditor.get("/v1/disbursement-runs/R-1"), 200)
    assert (run["status"], run["settled"], run["rejected"]) == ("prepared", 0, 0)


def test_two_runs_prepared_at_once_in_two_processes_never_hold_one_instalment(
    api: Api, db_url: str, test_settings: Any
) -> None:
    """Two ledgers (as two processes would) prepare runs over the same grants at the
    same moment: each instalment ends up in one run at most."""
    _world(api)
    ledgers = [open_ledger(db_url, test_settings) for _ in range(2)]
    barrier = threading.Barrier(2)
    grants = ["G-1", "G-2", "G-3", "G-4"]

    def prepare(n: int) -> Any:
        run = PrepareRun(f"R-{n}", date(2024, 3, 31), date(2024, 3, 31))
        barrier.wait()
        with acting_as("treasury", f"race-{n}"):
            try:
                return ledgers[n].prepare_run(run, lambda _: grants).value
            except ValidationFailed:
                return None  # the other took everything

    try:
        with ThreadPoolExecutor(2) as pool:
            runs = [r for r in pool.map(prepare, range(2)) if r is not None]
    finally:
        for ledger in ledgers:
            ledger.close()
    held = [(item.grant_id, item.instalment) for run in runs for item in run.items]
    # G-1 and G-2, three each: T-3 has no account, T-4 departed before the value date
    assert len(held) == len(set(held)) == 6


def test_money_a_run_holds_is_paid_once_whatever_the_order_the_bank_answers_in(
    api: Api,
) -> None:
    a = _world(api)
    created(_run(a, "R-1", "2024-02-29"))  # G-1 #1 and #2 (R-1-1, R-1-2), G-2's likewise
    # the later item first: it fills the first instalment, and the run still holds the rest
    later = {"settled": [{"payment_id": "R-1-2", "bank_reference": "BK-2"}]}
    expect(a.treasury.post("/v1/disbursement-runs/R-1/settle", json=later), 200)
    grant = expect(a.auditor.get("/v1/grants/G-1"), 200)
    assert (grant["net_paid"], grant["on_hold"], grant["payable"]) == ("333.33", "333.33", "333.34")
    # another run finds only the third instalment, not yet due: nothing free
    assert_validation_error(_run(a, "R-2", "2024-02-29"), "due_on")
    # outside the run, only what it does not hold may be paid
    over = payment_body("P-1", "G-1", "333.35", "2024-03-01", "BK-P1")
    assert_problem(a.treasury.post("/v1/payments", json=over), 409, "overpayment")
    assert_problem(
        a.approver.post("/v1/grants/G-1/revoke", json={"reason": "x"}), 409, "invalid_state"
    )
    earlier = {"settled": [{"payment_id": "R-1-1", "bank_reference": "BK-1"}]}
    expect(a.treasury.post("/v1/disbursement-runs/R-1/settle", json=earlier), 200)
    grant = expect(a.auditor.get("/v1/grants/G-1"), 200)
    assert (grant["net_paid"], grant["on_hold"]) == ("666.66", "0.00")
    assert [i["status"] for i in grant["instalments"]] == ["paid", "paid", "unpaid"]


def test_a_run_needs_its_payment_ids_free(api: Api) -> None:
    a = _world(api)
    taken = payment_body("R-1-1", "G-1", "1.00", "2024-01-02", "BK-T")
    created(a.treasury.post("/v1/payments", json=taken))
    assert_validation_error(_run(a, "R-1", "2024-01-31"), "run_id")
    assert_problem(a.auditor.get("/v1/disbursement-runs/R-1"), 404, "not_found")


def test_the_file_leaves_rejected_items_out(api: Api) -> None:
    a = _world(api)
    created(_run(a, "R-1", "2024-01-31"))
    rejected = {"rejected": [{"payment_id": "R-1-2", "reason": "AC04"}]}
    expect(a.treasury.post("/v1/disbursement-runs/R-1/settle", json=rejected), 200)
    root = fromstring(a.treasury.get("/v1/disbursement-runs/R-1/pain.001.xml").content)
    ids = [e.text for e in root.iter(f"{PAIN_001}EndToEndId")]
    assert ids == ["R-1-1", "R-1-3"]
    assert (
        root.findtext(f"{PAIN_001}CstmrCdtTrfInitn/{PAIN_001}GrpHdr/{PAIN_001}CtrlSum") == "533.33"
    )


def test_a_report_that_rejects_the_whole_file_rejects_every_item_not_answered(api: Api) -> None:
    a = _world(api)
    created(_run(a, "R-1", "2024-01-31"))
    settled = {"settled": [{"payment_id": "R-1-1", "bank_reference": "BK-1"}]}
    expect(a.treasury.post("/v1/disbursement-runs/R-1/settle", json=settled), 200)
    report = (
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"><CstmrPmtStsRpt>'
        "<GrpHdr><MsgId>S</MsgId><CreDtTm>2024-02-01T09:00:00</CreDtTm></GrpHdr>"
        "<OrgnlGrpInfAndSts><OrgnlMsgId>R-1</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.09"
        "</OrgnlMsgNmId><GrpSts>RJCT</GrpSts><StsRsnInf><Rsn><Cd>AM04</Cd></Rsn></StsRsnInf>"
        "</OrgnlGrpInfAndSts></CstmrPmtStsRpt></Document>"
    )
    done = expect(_xml(a, "R-1", report), 200)
    assert (done["status"], done["settled"], done["rejected"]) == ("settled", 1, 2)
    assert_validation_error(a.treasury.post("/v1/disbursement-runs/R-1/settle", json={}))


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (
            STATUS_REPORT.format(run="R-1").replace("<TxSts>ACSC</TxSts>", "<TxSts>FOO</TxSts>"),
            "TxSts",
        ),
        (STATUS_REPORT.format(run="R-1").replace('encoding="UTF-8"', 'encoding="GBK"'), "Document"),
        (STATUS_REPORT.format(run="R-1").replace("BK-1", "2024/01/31 REF 1"), "bank_reference"),
    ],
)
def test_a_status_report_is_held_to_the_rules_of_a_settlement(
    api: Api, body: str, where: str
) -> None:
    a = _world(api)
    created(_run(a, "R-1", "2024-01-31"))
    problem = assert_problem(_xml(a, "R-1", body), 422, "validation_error")
    assert problem["errors"][0]["loc"][-1].endswith(where)
    run = expect(a.auditor.get("/v1/disbursement-runs/R-1"), 200)
    assert (run["settled"], run["rejected"]) == (0, 0)
