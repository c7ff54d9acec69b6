"""Every write of CONTRACT §4 as one operation: who may do it, its body, how it becomes
a command, and what it answers. The single routes and `/v1/batch` both use this
table, so a batch operation answers exactly what the single call would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel

from api import schemas as s
from api.keys import Principal
from ledger import commands as c
from ledger.application import LedgerApplication, Outcome
from ledger.domain import Talent

Ids = dict[str, Any]


@dataclass(frozen=True)
class Operation:
    role: str
    body: type[s.Body]
    ids: tuple[str, ...]  # path parameters, which a batch operation carries in its body
    run: Callable[[LedgerApplication, Ids, Any, Principal], Outcome[Any]]
    out: type[BaseModel]
    created: bool
    present: Callable[[LedgerApplication, Any, Ids], Any] = lambda app, value, ids: value


def presented(
    app: LedgerApplication, op: Operation, ids: Ids, run: Callable[[], Outcome[Any]]
) -> Outcome[Any]:
    """The outcome of `run`, its value as the answer shows it (which may need a query:
    a talent's name is unsealed)."""
    outcome = run()
    return replace(outcome, value=op.present(app, outcome.value, ids))


def answer(op: Operation, outcome: Outcome[Any]) -> tuple[int, dict[str, str], Any]:
    """Status, headers and JSON body of a presented outcome: 201 for a new resource,
    200 for an action or a replay, always with the position to read after."""
    headers = {"Ledger-Position": str(outcome.position)}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    status = 201 if op.created and not outcome.replayed else 200
    return status, headers, op.out.model_validate(outcome.value).model_dump(mode="json")


def _fields(body: BaseModel) -> dict[str, Any]:
    """A body's fields (no extras: bodies forbid them), without pydantic's iterator."""
    return vars(body)


def _talent(app: LedgerApplication, talent: Talent, ids: Ids) -> dict[str, Any]:
    name = app.vault.reveal(talent.talent_id, talent.sealed_name)
    return s.revealed({**vars(talent), "status": talent.status}, name)


OPERATIONS: dict[str, Operation] = {
    "fund_year.open": Operation(
        "admin",
        s.OpenFundYearIn,
        (),
        lambda app, ids, b, p: app.open_fund_year(c.OpenFundYear(b.year, b.currency)),
        s.FundYearSummary,
        created=True,
    ),
    "appropriation.add": Operation(
        "admin",
        s.AppropriationIn,
        ("year",),
        lambda app, ids, b, p: app.appropriate(c.Appropriate(ids["year"], **_fields(b))),
        s.AppropriationOut,
        created=True,
        present=lambda app, v, ids: {**vars(v), "fund_year": ids["year"]},
    ),
    "fund_year.close": Operation(
        "admin",
        s.CloseIn,
        ("year",),
        lambda app, ids, b, p: app.close_fund_year(c.CloseFundYear(ids["year"], b.reason)),
        s.FundYearSummary,
        created=False,
    ),
    "talent.register": Operation(
        "clerk",
        s.TalentIn,
        (),
        lambda app, ids, b, p: app.register_talent(c.RegisterTalent(**_fields(b))),
        s.TalentProfile,
        created=True,
        present=_talent,
    ),
    "talent.depart": Operation(
        "clerk",
        s.DepartureIn,
        ("talent_id",),
        lambda app, ids, b, p: app.depart_talent(c.DepartTalent(ids["talent_id"], **_fields(b))),
        s.TalentProfile,
        created=False,
        present=_talent,
    ),
    "grant.propose": Operation(
        "clerk",
        s.GrantIn,
        (),
        lambda app, ids, b, p: app.propose_grant(c.ProposeGrant(**_fields(b))),
        s.GrantOut,
        created=True,
    ),
    "grant.approve": Operation(
        "approver",
        s.ApproveIn,
        ("grant_id",),
        lambda app, ids, b, p: app.approve_grant(c.ApproveGrant(ids["grant_id"], b.note), p.name),
        s.GrantOut,
        created=False,
    ),
    "grant.reject": Operation(
        "approver",
        s.ReasonIn,
        ("grant_id",),
        lambda app, ids, b, p: app.reject_grant(c.RejectGrant(ids["grant_id"], b.reason)),
        s.GrantOut,
        created=False,
    ),
    "grant.revoke": Operation(
        "approver",
        s.ReasonIn,
        ("grant_id",),
        lambda app, ids, b, p: app.revoke_grant(c.RevokeGrant(ids["grant_id"], b.reason)),
        s.GrantOut,
        created=False,
    ),
    "waiver.grant": Operation(
        "clerk",
        s.WaiverIn,
        (),
        lambda app, ids, b, p: app.grant_waiver(c.GrantWaiver(**_fields(b))),
        s.WaiverOut,
        created=True,
    ),
    "waiver.end": Operation(
        "clerk",
        s.EndWaiverIn,
        ("waiver_id",),
        lambda app, ids, b, p: app.end_waiver(c.EndWaiver(ids["waiver_id"], b.ended_on)),
        s.WaiverOut,
        created=False,
    ),
    "payment.record": Operation(
        "treasury",
        s.PaymentIn,
        (),
        lambda app, ids, b, p: app.record_payment(c.RecordPayment(**_fields(b))),
        s.PaymentOut,
        created=True,
    ),
    "payment.return": Operation(
        "treasury",
        s.ReturnIn,
        ("payment_id",),
        lambda app, ids, b, p: app.return_payment(c.ReturnPayment(ids["payment_id"], **_fields(b))),
        s.PaymentOut,
        created=False,
    ),
    "clawback.assess": Operation(
        "clerk",
        s.ClawbackIn,
        (),
        lambda app, ids, b, p: app.assess_clawback(c.AssessClawback(**_fields(b))),
        s.ClawbackOut,
        created=True,
        present=lambda app, v, ids: s.ClawbackOut.of(v),
    ),
    "clawback.recover": Operation(
        "treasury",
        s.RecoveryIn,
        ("clawback_id",),
        lambda app, ids, b, p: app.record_recovery(
            c.RecordRecovery(ids["clawback_id"], **_fields(b))
        ),
        s.RecoveryOut,
        created=True,
        present=lambda app, v, ids: {**vars(v[1]), "clawback_id": ids["clawback_id"]},
    ),
}
