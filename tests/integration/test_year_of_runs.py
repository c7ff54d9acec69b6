"""A year of monthly rent subsidies for 500 talents, paid in runs and reconciled (issue
18's "done when"): each month's run is prepared, its pain.001 exported, settled from
the bank's pain.002 with some items rejected, and the year's payments reconciled from
one camt.053 statement. Talents who depart drop out of later runs; a rejected item is
paid by the next month's run. The fund year's figures agree with the settled items."""

from __future__ import annotations

from calendar import monthrange
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import xmlschema

from tests.integration.scenario import (
    Actors,
    Api,
    created,
    expect,
    open_year,
    talent_body,
)

pytestmark = pytest.mark.db

SCHEMA = Path(__file__).parents[1] / "fixtures" / "iso20022" / "pain.001.001.09.xsd"
TALENTS = 500
MONTHLY = Decimal("1500.00")
DEPARTING = range(0, 10)  # depart in mid-June: paid through May
REJECTED_IN_MARCH = range(10, 15)  # the bank rejects their March items


def _batch(client: Any, op: str, bodies: list[dict[str, Any]]) -> None:
    operations = [{"op": op, "body": body} for body in bodies]
    results = expect(client.post("/v1/batch", json={"atomic": True, "operations": operations}), 200)
    assert all(r["status"] < 300 for r in results["results"])


def _month_end(month: int) -> str:
    return date(2024, month, monthrange(2024, month)[1]).isoformat()


def _items(a: Actors, run_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = None
    while True:
        params = {"limit": 1000, **({"after": after} if after else {})}
        page = expect(a.auditor.get(f"/v1/disbursement-runs/{run_id}/items", params=params), 200)
        items += page["items"]
        if (after := page["next"]) is None:
            return items


def _status_report(
    run_id: str, settled: list[dict[str, Any]], rejected: list[dict[str, Any]]
) -> bytes:
    transactions = [
        f"<TxInfAndSts><OrgnlEndToEndId>{i['payment_id']}</OrgnlEndToEndId><TxSts>ACSC</TxSts>"
        f"<AcctSvcrRef>BK{i['payment_id']}</AcctSvcrRef></TxInfAndSts>"
        for i in settled
    ] + [
        f"<TxInfAndSts><OrgnlEndToEndId>{i['payment_id']}</OrgnlEndToEndId><TxSts>RJCT</TxSts>"
        "<StsRsnInf><Rsn><Cd>AC04</Cd></Rsn></StsRsnInf></TxInfAndSts>"
        for i in rejected
    ]
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"><CstmrPmtStsRpt>'
        "<GrpHdr><MsgId>STS</MsgId><CreDtTm>2024-12-31T18:00:00</CreDtTm></GrpHdr>"
        f"<OrgnlGrpInfAndSts><OrgnlMsgId>{run_id}</OrgnlMsgId>"
        "<OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId></OrgnlGrpInfAndSts>"
        f"<OrgnlPmtInfAndSts><OrgnlPmtInfId>{run_id}</OrgnlPmtInfId>{''.join(transactions)}"
        "</OrgnlPmtInfAndSts></CstmrPmtStsRpt></Document>"
    ).encode()


def _statement(payments: list[tuple[str, str, Decimal, str]], opening: Decimal) -> bytes:
    """The fund account's camt.053 for the year: one debit entry per payment, its
    EndToEndId the payment id the pain.001 carried, and the bank's own reference."""
    closing = opening - sum(amount for _, _, amount, _ in payments)
    entries = "".join(
        f'<Ntry><Amt Ccy="CNY">{amount}</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>'
        f"<BookgDt><Dt>{day}</Dt></BookgDt><ValDt><Dt>{day}</Dt></ValDt>"
        f"<AcctSvcrRef>{reference}</AcctSvcrRef>"
        "<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>ICDT</Cd><SubFmlyCd>DMCT</SubFmlyCd></Fmly></Domn></BkTxCd>"
        f"<NtryDtls><TxDtls><Refs><AcctSvcrRef>{reference}</AcctSvcrRef>"
        f"<EndToEndId>{payment_id}</EndToEndId></Refs>"
        f'<Amt Ccy="CNY">{amount}</Amt><CdtDbtInd>DBIT</CdtDbtInd>'
        "<RltdPties><Cdtr><Pty><Nm>人才</Nm></Pty></Cdtr></RltdPties></TxDtls></NtryDtls></Ntry>"
        for payment_id, reference, amount, day in payments
    )

    def balance(code: str, amount: Decimal, day: str) -> str:
        return (
            f'<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy="CNY">{amount}</Amt>'
            f"<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>{day}</Dt></Dt></Bal>"
        )

    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
        "<GrpHdr><MsgId>STMT-2024</MsgId><CreDtTm>2025-01-01T06:00:00+08:00</CreDtTm></GrpHdr>"
        "<Stmt><Id>STMT-2024</Id><CreDtTm>2025-01-01T06:00:00+08:00</CreDtTm>"
        "<Acct><Id><Othr><Id>31050161373600001234</Id></Othr></Id><Ccy>CNY</Ccy></Acct>"
        f"{balance('OPBD', opening, '2024-01-01')}{balance('CLBD', closing, '2024-12-31')}"
        f"{entries}</Stmt></BkToCstmrStmt></Document>"
    ).encode()


def test_a_year_of_monthly_rent_subsidies_is_paid_in_runs_and_reconciled(api: Api) -> None:
    a = Actors.of(api)
    open_year(a, 2024, (("rent_subsidy", "cash", "10000000"),))
    talents = [f"T-{n:03d}" for n in range(TALENTS)]
    _batch(
        a.clerk,
        "talent.register",
        [
            {**talent_body(t, f"人才{n}"), "bank_account": f"6222020200{n:06d}"}
            for n, t in enumerate(talents)
        ],
    )
    plan = {"count": 12, "first_due_on": "2024-01-31", "interval_months": 1}
    grants = [
        {
            "grant_id": f"G-{t}",
            "talent_id": t,
            "fund_year": 2024,
            "programme": "rent_subsidy",
            "amount": str(MONTHLY * 12),
            "policy_reference": "人才租房补贴办法第3条",
            "reason": "2024年度租房补贴",
            "instalments": plan,
        }
        for t in talents
    ]
    _batch(a.clerk, "grant.propose", grants)
    _batch(a.approver, "grant.approve", [{"grant_id": g["grant_id"]} for g in grants])
    departure = {"departed_on": "2024-06-15", "reason": "调离本市"}
    _batch(a.clerk, "talent.depart", [{"talent_id": talents[n], **departure} for n in DEPARTING])

    schema = xmlschema.XMLSchema(SCHEMA)
    paid: list[tuple[str, str, Decimal, str]] = []
    for month in range(1, 13):
        run_id, day = f"R-2024-{month:02d}", _month_end(month)
        run = created(
            a.treasury.post(
                "/v1/disbursement-runs",
                json={"run_id": run_id, "due_on": day, "value_date": day, "fund_year": 2024},
            )
        )
        departed = [e for e in run["excluded"] if e["reason"] == "talent_departed"]
        assert len(departed) == (len(DEPARTING) if month >= 6 else 0)
        pain001 = a.treasury.get(f"/v1/disbursement-runs/{run_id}/pain.001.xml")
        assert pain001.status_code == 200
        if month in (1, 12):  # the schema check takes a second per file
            schema.validate(pain001.content)
        items = _items(a, run_id)
        assert len(items) == run["items"]
        # March's rejected items are paid again by April's run, two instalments each
        if month == 4:
            again = [i for i in items if i["talent_id"] in {talents[n] for n in REJECTED_IN_MARCH}]
            assert len(again) == 2 * len(REJECTED_IN_MARCH)
        rejected = (
            [i for i in items if i["talent_id"] in {talents[n] for n in REJECTED_IN_MARCH}]
            if month == 3
            else []
        )
        settled = [i for i in items if i not in rejected]
        done = expect(
            a.treasury.post(
                f"/v1/disbursement-runs/{run_id}/settle",
                content=_status_report(run_id, settled, rejected),
                headers={"Content-Type": "application/xml"},
            ),
            200,
        )
        assert done["status"] == "settled"
        paid += [
            (i["payment_id"], f"BK{i['payment_id']}", Decimal(i["amount"]), day) for i in settled
        ]

    total = sum(amount for _, _, amount, _ in paid)
    # everyone paid every month but the departed, who were paid January to May
    assert total == MONTHLY * (12 * (TALENTS - len(DEPARTING)) + 5 * len(DEPARTING))
    response = a.treasury.post(
        "/v1/reconciliations",
        content=_statement(paid, Decimal("10000000.00")),
        headers={"Content-Type": "application/xml"},
    )
    report = created(response)
    assert len(report["matched"]) == len(paid)
    for bucket in ("amount_mismatch", "date_mismatch", "unknown_in_ledger", "missing_in_bank"):
        assert report[bucket] == [], bucket
    at = response.headers["Ledger-Position"]
    year = expect(a.auditor.get("/v1/fund-years/2024", params={"min_position": at}), 200)
    (line,) = year["lines"]
    assert (Decimal(line["paid"]), Decimal(line["net_paid"])) == (total, total)
