"""The story the API's examples come from (`api/examples.py`): told to a fresh ledger
by `tests/integration/test_examples.py`, which records each operation's first request
and answer (`make examples`) or checks them against what is documented.

A fund year appropriated, talents, grants proposed, approved, rejected and revoked,
payments and a bank return, a rent waiver ended early, a departure, a clawback and its
recovery, a bank statement, a batch, and every read. What no two runs share (instants,
hashes) is written as fixed values.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from ledger.entrypoints.runtime import Settings

INSTANT = "2024-05-06T02:30:00Z"
#: the business date the story is told on: grants approved without a plan fall due then
TODAY = Settings(database_url=None, data_dir=Path()).today().isoformat()
HASH = "9f2c7a1e" * 8
CHAIN_HASHES = ("hash", "head")
KEY = "tl_" + "x" * 43  # a bearer key: shown once, never the same twice
MERKLE_HASH = "nyx6Hp8seh6fLHoenyx6Hp8seh6fLHoenyx6Hp8seh4="  # base64 of HASH's bytes
MERKLE_HASHES = ("root", "leaf_hash", "audit_path", "proof")
SIGNATURE = (
    "AAAAAJ8seh6fLHoenyx6Hp8seh6fLHoenyx6Hp8seh6fLHoenyx6Hp8seh6fLHoenyx6Hp8seh6fLHoenyx6Hp8seh4="
)
_NOTE_RE = re.compile(r"^(talent-ledger\n[0-9]+\n)[^\n]*(\n\n\u2014 talent-ledger )[^\n]*\n$")
_INSTANT_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9:]+)$")

#: the story's keys: each role's holder, by the name recorded on what it does
KEYS = {
    "admin": "finance-admin",
    "clerk": "clerk-li",
    "approver": "approver-chen",
    "treasury": "treasury-zhao",
    "auditor": "auditor-sun",
}
STATEMENT = (
    "value_date,bank_reference,amount,direction,counterparty\r\n"
    "2024-03-01,BR-20240301-001,20000.00,debit,张伟\r\n"
    "2024-03-05,BR-20240305-002,5000.00,debit,李娜\r\n"
    "2024-11-01,RB-20241101-001,1000.00,credit,李娜\r\n"
)


@dataclass(frozen=True)
class Step:
    role: str
    method: str
    path: str  # the concrete path, ids filled in
    operation: str  # the operationId
    body: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    content: str | None = None  # a body that is not JSON (a statement)
    refused: int | None = None  # the status of an attempt the story shows refused


def _talent(talent_id: str, name: str, category: str, arrived_on: str) -> dict[str, Any]:
    return {
        "talent_id": talent_id,
        "name": name,
        "category": category,
        "employer": "市第一人民医院",
        "arrived_on": arrived_on,
        "service_commitment_until": "2029-06-30",
    }


def _grant(grant_id: str, talent_id: str, amount: str, reason: str) -> dict[str, Any]:
    return {
        "grant_id": grant_id,
        "talent_id": talent_id,
        "fund_year": 2024,
        "programme": "settling_in",
        "amount": amount,
        "policy_reference": "人才新政〔2023〕5号 第五条",
        "reason": reason,
    }


def _payment(payment_id: str, grant_id: str, amount: str, day: str, ref: str) -> dict[str, Any]:
    return {
        "payment_id": payment_id,
        "grant_id": grant_id,
        "amount": amount,
        "value_date": day,
        "bank_reference": ref,
    }


STORY: tuple[Step, ...] = (
    Step("admin", "POST", "/v1/fund-years", "openFundYear", {"year": 2024, "currency": "CNY"}),
    Step(
        "admin",
        "POST",
        "/v1/fund-years/2024/appropriations",
        "appropriate",
        {
            "appropriation_id": "AP-2024-01",
            "programme": "settling_in",
            "kind": "cash",
            "amount": "500000.00",
            "reference": "财预〔2024〕12号",
        },
    ),
    Step(
        "admin",
        "POST",
        "/v1/fund-years/2024/appropriations",
        "appropriate",
        {
            "appropriation_id": "AP-2024-02",
            "programme": "housing",
            "kind": "in_kind",
            "amount": "120000.00",
            "reference": "财预〔2024〕13号",
        },
    ),
    Step(
        "clerk",
        "POST",
        "/v1/talents",
        "registerTalent",
        _talent("T-0001", "张伟", "doctorate", "2024-01-08"),
    ),
    Step(
        "clerk",
        "POST",
        "/v1/talents",
        "registerTalent",
        _talent("T-0002", "李娜", "master", "2024-02-19"),
    ),
    Step(
        "clerk",
        "POST",
        "/v1/grants",
        "proposeGrant",
        _grant("G-0001", "T-0001", "30000.00", "博士研究生安家补贴"),
    ),
    Step(
        "approver", "POST", "/v1/grants/G-0001/approve", "approveGrant", {"note": "材料齐全，同意"}
    ),
    Step(
        "clerk",
        "POST",
        "/v1/grants",
        "proposeGrant",
        _grant("G-0002", "T-0002", "8000.00", "硕士研究生安家补贴"),
    ),
    Step("approver", "POST", "/v1/grants/G-0002/approve", "approveGrant", {"note": "同意"}),
    Step(
        "clerk",
        "POST",
        "/v1/grants",
        "proposeGrant",
        _grant("G-0003", "T-0002", "2000.00", "重复申报"),
    ),
    Step(
        "approver",
        "POST",
        "/v1/grants/G-0003/reject",
        "rejectGrant",
        {"reason": "此前已享受同类补贴，不得重复申领"},
    ),
    Step(
        "treasury",
        "POST",
        "/v1/payments",
        "recordPayment",
        _payment("P-0001", "G-0001", "20000.00", "2024-03-01", "BR-20240301-001"),
    ),
    Step(
        "treasury",
        "POST",
        "/v1/payments",
        "recordPayment",
        _payment("P-0002", "G-0002", "5000.00", "2024-03-05", "BR-20240305-002"),
    ),
    Step(
        "treasury",
        "POST",
        "/v1/payments",
        "recordPayment",
        _payment("P-0003", "G-0002", "3000.00", "2024-04-01", "BR-20240401-003"),
    ),
    Step(
        "treasury",
        "POST",
        "/v1/payments/P-0003/return",
        "returnPayment",
        {"returned_on": "2024-04-03", "reason": "收款账户已注销"},
    ),
    Step(
        "approver",
        "POST",
        "/v1/grants/G-0002/revoke",
        "revokeGrant",
        {"reason": "未按期提交到岗证明"},
    ),
    Step(
        "clerk",
        "POST",
        "/v1/rent-waivers",
        "grantWaiver",
        {
            "waiver_id": "W-0001",
            "talent_id": "T-0001",
            "fund_year": 2024,
            "programme": "housing",
            "apartment": "人才公寓A栋 1203",
            "start_on": "2024-02-01",
            "end_on": "2024-12-31",
            "monthly_rent": "2500.00",
        },
    ),
    Step("clerk", "POST", "/v1/rent-waivers/W-0001/end", "endWaiver", {"ended_on": "2024-09-30"}),
    Step(
        "clerk",
        "POST",
        "/v1/talents/T-0002/departure",
        "departTalent",
        {"departed_on": "2024-10-15", "reason": "调离本市"},
    ),
    Step(
        "clerk",
        "POST",
        "/v1/clawbacks",
        "assessClawback",
        {
            "clawback_id": "C-0001",
            "grant_id": "G-0002",
            "amount": "4000.00",
            "reason": "服务期未满离开",
        },
    ),
    Step(
        "treasury",
        "POST",
        "/v1/clawbacks/C-0001/recoveries",
        "recordRecovery",
        {
            "recovery_id": "R-0001",
            "amount": "1000.00",
            "value_date": "2024-11-01",
            "bank_reference": "RB-20241101-001",
        },
    ),
    Step("treasury", "POST", "/v1/reconciliations", "importBankStatement", content=STATEMENT),
    Step(
        "clerk",
        "POST",
        "/v1/batch",
        "runBatch",
        {
            "atomic": True,
            "operations": [
                {
                    "op": "talent.register",
                    "body": _talent("T-0003", "王芳", "bachelor", "2024-07-01"),
                },
                {
                    "op": "grant.propose",
                    "body": _grant("G-0004", "T-0003", "3000.00", "本科毕业生安家补贴"),
                },
            ],
        },
    ),
    Step(
        "clerk",
        "POST",
        "/v1/talents",
        "registerTalent",
        {
            **_talent("T-0004", "赵磊", "doctorate", "2024-06-03"),
            "bank_account": "6222021001123456",
        },
    ),
    Step(
        "clerk",
        "POST",
        "/v1/grants",
        "proposeGrant",
        {
            **_grant("G-0005", "T-0004", "12000.00", "博士研究生安家补贴，分三期"),
            "instalments": {"count": 3, "first_due_on": "2024-09-30", "interval_months": 3},
        },
    ),
    Step("approver", "POST", "/v1/grants/G-0005/approve", "approveGrant", {"note": "同意分期"}),
    Step(
        "treasury",
        "POST",
        "/v1/disbursement-runs",
        "prepareDisbursementRun",
        {"run_id": "DR-2024-09", "due_on": "2024-09-30", "value_date": "2024-09-30"},
    ),
    Step("auditor", "GET", "/v1/disbursement-runs/DR-2024-09", "getDisbursementRun"),
    Step(
        "auditor",
        "GET",
        "/v1/disbursement-runs/DR-2024-09/items",
        "listDisbursementRunItems",
        params={"limit": 10},
    ),
    Step(
        "treasury",
        "POST",
        "/v1/disbursement-runs/DR-2024-09/settle",
        "settleDisbursementRun",
        {"settled": [{"payment_id": "DR-2024-09-1", "bank_reference": "BR-20240930-001"}]},
    ),
    Step(
        "auditor",
        "GET",
        "/v1/disbursement-runs",
        "listDisbursementRuns",
        params={"fund_year": 2024},
    ),
    Step("admin", "POST", "/v1/fund-years/2024/close", "closeFundYear", {"reason": "2024年度决算"}),
    Step("auditor", "GET", "/v1/fund-years/2024", "getFundYear"),
    Step("auditor", "GET", "/v1/fund-years", "listFundYears", params={"status": "closed"}),
    Step(
        "auditor", "GET", "/v1/fund-years/2024/history", "getFundYearHistory", params={"limit": 2}
    ),
    Step(
        "auditor",
        "GET",
        "/v1/fund-years/2024/execution",
        "getExecution",
        params={"on": "2024-06-30"},
    ),
    Step("auditor", "GET", "/v1/fund-years/2024/year-end", "getYearEnd"),
    Step("auditor", "GET", "/v1/fund-years/2024/trial-balance", "getTrialBalance"),
    Step("auditor", "GET", "/v1/talents/T-0002", "getTalent"),
    Step("auditor", "GET", "/v1/talents", "listTalents", params={"status": "departed"}),
    Step("auditor", "GET", "/v1/talents/T-0001/history", "getTalentHistory", params={"limit": 2}),
    Step("auditor", "GET", "/v1/grants/G-0001", "getGrant"),
    Step(
        "auditor",
        "GET",
        "/v1/grants",
        "listGrants",
        params={"fund_year": 2024, "status": "approved", "limit": 1},
    ),
    Step("auditor", "GET", "/v1/payments/P-0003", "getPayment"),
    Step(
        "auditor",
        "GET",
        "/v1/payments",
        "listPayments",
        params={"value_date_from": "2024-03-01", "value_date_to": "2024-03-31"},
    ),
    Step("auditor", "GET", "/v1/rent-waivers/W-0001", "getWaiver"),
    Step("auditor", "GET", "/v1/rent-waivers", "listWaivers", params={"talent_id": "T-0001"}),
    Step("auditor", "GET", "/v1/clawbacks/C-0001", "getClawback"),
    Step("auditor", "GET", "/v1/clawbacks", "listClawbacks", params={"status": "open"}),
    Step("auditor", "GET", "/v1/events", "listEvents", params={"limit": 2}),
    Step("auditor", "GET", "/v1/audit/verify", "verifyAuditChain"),
    Step(
        "admin",
        "POST",
        "/v1/keys",
        "issueApiKey",
        body={"name": "auditor-wu", "roles": ["auditor"], "expires_in_days": 90},
    ),
    Step("admin", "GET", "/v1/keys", "listApiKeys", params={"limit": 2}),
    Step(
        "treasury",
        "POST",
        "/v1/keys",
        "issueApiKey",
        body={"name": "treasury-own", "roles": ["admin"]},
        refused=403,
    ),
    Step("auditor", "GET", "/v1/audit/refusals", "listRefusals", params={"code": "forbidden"}),
    Step("admin", "GET", "/v1/keys/auditor-wu", "getApiKey"),
    Step("admin", "POST", "/v1/keys/auditor-wu/revoke", "revokeApiKey"),
    Step("auditor", "POST", "/v1/audit/checkpoints", "signCheckpoint", body={}),
    Step("auditor", "GET", "/v1/audit/checkpoints", "listCheckpoints", params={"limit": 1}),
    Step("auditor", "GET", "/v1/audit/checkpoints/latest", "getLatestCheckpoint"),
    Step("auditor", "GET", "/v1/audit/checkpoints/1", "getCheckpoint"),
    Step(
        "auditor",
        "GET",
        "/v1/audit/proof",
        "getInclusionProof",
        params={"position": 1, "tree_size": 2},
    ),
    Step(
        "auditor",
        "GET",
        "/v1/audit/consistency",
        "getConsistencyProof",
        params={"from": 1, "to": 2},
    ),
    Step(
        "auditor",
        "GET",
        "/v1/reconciliations",
        "listReconciliations",
        params={"value_date_from": "2024-03-01"},
    ),
    Step("auditor", "GET", "/v1/reconciliations/{reconciliation_id}", "getReconciliation"),
    Step(
        "auditor",
        "GET",
        "/v1/reports/exceptions",
        "getExceptionsReport",
        params={"fund_year": 2024, "on": "2024-12-31"},
    ),
    Step("auditor", "GET", "/healthz", "getHealth"),
    Step("auditor", "GET", "/readyz", "getReadiness"),
)


_FIXED = (
    dict.fromkeys(CHAIN_HASHES, HASH) | dict.fromkeys(MERKLE_HASHES, MERKLE_HASH) | {"key": KEY}
)


def fixed(value: Any, key: str = "") -> Any:
    """`value` with what differs between runs written as fixed values: instants, and
    the chain's hashes and what is made of them (they hash the instants)."""
    if isinstance(value, dict):
        return {k: fixed(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [fixed(v, key if key in MERKLE_HASHES else "") for v in value]
    if not isinstance(value, str):
        return value
    if key in _FIXED:
        return _FIXED[key]
    if key == "note":
        return _NOTE_RE.sub(rf"\g<1>{MERKLE_HASH}\g<2>{SIGNATURE}\n", value)
    return _fixed_day(value, key)


def _fixed_day(value: str, key: str) -> str:
    """An instant as INSTANT; the day the story is told (when a grant approved without
    an instalment plan falls due) as INSTANT's day."""
    if _INSTANT_RE.match(value):
        return INSTANT
    return INSTANT[:10] if key == "due_on" and value == TODAY else value


def tell(client: Callable[[str], TestClient]) -> dict[str, dict[str, Any]]:
    """Tell the story through `client(role)`; each operation's first request and answer
    (the ids a path takes, its query, its body, the status and body answered)."""
    recorded: dict[str, dict[str, Any]] = {}
    position = 0
    reconciliation_id = ""
    for n, step in enumerate(STORY):
        c = client(step.role)
        path = step.path.replace("{reconciliation_id}", reconciliation_id)
        headers = {"X-Request-Id": f"req-{n + 1:03d}"}
        params = {**step.params}
        if step.method == "GET" and path.startswith("/v1"):
            params["min_position"] = position
        if step.content is not None:
            headers["Content-Type"] = "text/csv"
            response = c.request(step.method, path, content=step.content.encode(), headers=headers)
        else:
            response = c.request(step.method, path, json=step.body, params=params, headers=headers)
        if step.refused is not None:
            assert response.status_code == step.refused, response.text
            continue
        assert response.status_code < 300, (
            f"{step.operation}: {response.status_code} {response.text}"
        )
        position = max(position, int(response.headers.get("Ledger-Position", 0)))
        answer = response.json()
        if step.operation == "importBankStatement":
            reconciliation_id = answer["reconciliation_id"]
        if step.operation not in recorded:
            recorded[step.operation] = {
                "path": path,
                "query": step.params,
                "body": step.content if step.content is not None else step.body,
                "status": response.status_code,
                "answer": fixed(answer),
            }
    return recorded
