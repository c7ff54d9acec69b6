"""Write routes of CONTRACT §4: map the body to a command, call the application once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api import schemas as s
from api.problems import problem_responses
from api.routing import LedgerDep, LedgerRoute, PrincipalDep, roles
from ledger import commands as c
from ledger.application import Outcome

F = TypeVar("F", bound=Callable[..., Any])

router = APIRouter(prefix="/v1", route_class=LedgerRoute, tags=["writes"])

_ALWAYS = (
    "unauthenticated",
    "forbidden",
    "payload_too_large",
    "unsupported_media_type",
    "validation_error",
    "unavailable",
)


def _route(
    path: str, role: str, model: type[BaseModel], *codes: str, created: bool
) -> Callable[[F], F]:
    return router.post(
        path,
        response_model=model,
        status_code=201 if created else 200,
        openapi_extra=roles(role),
        responses=problem_responses(*_ALWAYS, *codes),
    )


def _answer(outcome: Outcome[Any], body: BaseModel, *, created: bool) -> JSONResponse:
    """201 for a new resource, 200 for an action or a replay; always the position."""
    headers = {"Ledger-Position": str(outcome.position)}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    status = 201 if created and not outcome.replayed else 200
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


# --- fund years -------------------------------------------------------------------


@_route("/fund-years", "admin", s.FundYearSummary, "idempotency_conflict", created=True)
def open_fund_year(body: s.OpenFundYearIn, ledger: LedgerDep, _: PrincipalDep) -> JSONResponse:
    outcome = ledger.open_fund_year(c.OpenFundYear(body.year, body.currency))
    return _answer(outcome, s.FundYearSummary.model_validate(outcome.value), created=True)


@_route(
    "/fund-years/{year}/appropriations",
    "admin",
    s.AppropriationOut,
    "not_found",
    "idempotency_conflict",
    "fund_year_closed",
    created=True,
)
def appropriate(
    year: int, body: s.AppropriationIn, ledger: LedgerDep, _: PrincipalDep
) -> JSONResponse:
    outcome = ledger.appropriate(c.Appropriate(year, **body.model_dump()))
    out = s.AppropriationOut.model_validate({**vars(outcome.value), "fund_year": year})
    return _answer(outcome, out, created=True)


@_route(
    "/fund-years/{year}/close",
    "admin",
    s.FundYearSummary,
    "not_found",
    "invalid_state",
    created=False,
)
def close_fund_year(year: int, body: s.CloseIn, ledger: LedgerDep, _: PrincipalDep) -> JSONResponse:
    outcome = ledger.close_fund_year(c.CloseFundYear(year, body.reason))
    return _answer(outcome, s.FundYearSummary.model_validate(outcome.value), created=False)


# --- talents ----------------------------------------------------------------------


@_route("/talents", "clerk", s.TalentProfile, "idempotency_conflict", created=True)
def register_talent(body: s.TalentIn, ledger: LedgerDep, _: PrincipalDep) -> JSONResponse:
    outcome = ledger.register_talent(c.RegisterTalent(**body.model_dump()))
    return _answer(outcome, s.TalentProfile.model_validate(outcome.value), created=True)


@_route(
    "/talents/{talent_id}/departure",
    "clerk",
    s.TalentProfile,
    "not_found",
    "invalid_state",
    created=False,
)
def depart_talent(
    talent_id: str, body: s.DepartureIn, ledger: LedgerDep, _: PrincipalDep
) -> JSONResponse:
    outcome = ledger.depart_talent(c.DepartTalent(talent_id, **body.model_dump()))
    return _answer(outcome, s.TalentProfile.model_validate(outcome.value), created=False)


# --- grants -----------------------------------------------------------------------


@_route(
    "/grants",
    "clerk",
    s.GrantOut,
    "idempotency_conflict",
    "budget_exceeded",
    "fund_year_closed",
    "talent_departed",
    created=True,
)
def propose_grant(body: s.GrantIn, ledger: LedgerDep, _: PrincipalDep) -> JSONResponse:
    outcome = ledger.propose_grant(c.ProposeGrant(**body.model_dump()))
    return _answer(outcome, s.GrantOut.model_validate(outcome.value), created=True)


@_route(
    "/grants/{grant_id}/approve",
    "approver",
    s.GrantOut,
    "not_found",
    "invalid_state",
    "self_approval",
    created=False,
)
def approve_grant(
    grant_id: str, ledger: LedgerDep, principal: PrincipalDep, body: s.ApproveIn | None = None
) -> JSONResponse:
    note = body.note if body else None
    outcome = ledger.approve_grant(c.ApproveGrant(grant_id, note), principal.name)
    return _answer(outcome, s.GrantOut.model_validate(outcome.value), created=False)


@_route(
    "/grants/{grant_id}/reject",
    "approver",
    s.GrantOut,
    "not_found",
    "invalid_state",
    created=False,
)
def reject_grant(
    grant_id: str, body: s.ReasonIn, ledger: LedgerDep, _: PrincipalDep
) -> JSONResponse:
    outcome = ledger.reject_grant(c.RejectGrant(grant_id, body.reason))
    return _answer(outcome, s.GrantOut.model_validate(outcome.value), created=False)


@_route(
    "/grants/{grant_id}/revoke",
    "approver",
    s.GrantOut,
    "not_found",
    "invalid_state",
    created=False,
)
def revoke_grant(
    grant_id: str, body: s.ReasonIn, ledger: LedgerDep, _: PrincipalDep
) -> JSONResponse:
    outcome = ledger.revoke_grant(c.RevokeGrant(grant_id, body.reason))
    return _answer(outcome, s.GrantOut.model_validate(outcome.value), created=False)


# --- rent waivers -----------------------------------------------------------------


@_route(
    "/rent-waivers",
    "clerk",
    s.WaiverOut,
    "idempotency_conflict",
    "budget_exceeded",
    "fund_year_closed",
    "talent_departed",
    created=True,
)
def grant_waiver(body: s.WaiverIn, ledger: LedgerDep, _: PrincipalDep) -> JSONResponse:
    outcome = ledger.grant_waiver(c.GrantWaiver(**body.model_dump()))
    return _answer(outcome, s.WaiverOut.model_validate(outcome.value), created=True)


@_route(
    "/rent-waivers/{waiver_id}/end",
    "clerk",
    s.WaiverOut,
    "not_found",
    "invalid_state",
    created=False,
)
def end_waiver(
    waiver_id: str, body: s.EndWaiverIn, ledger: LedgerDep, _: PrincipalDep
) -> JSONResponse:
    outcome = ledger.end_waiver(c.EndWaiver(waiver_id, body.ended_on))
    return _answer(outcome, s.WaiverOut.model_validate(outcome.value), created=False)


# --- payments ---------------------------------------------------------------------


@_route(
    "/payments",
    "treasury",
    s.PaymentOut,
    "idempotency_conflict",
    "invalid_state",
    "overpayment",
    "duplicate_bank_reference",
    "talent_departed",
    created=True,
)
def record_payment(body: s.PaymentIn, ledger: LedgerDep, _: PrincipalDep) -> JSONResponse:
    outcome = ledger.record_payment(c.RecordPayment(**body.model_dump()))
    return _answer(outcome, s.PaymentOut.model_validate(outcome.value), created=True)


@_route(
    "/payments/{payment_id}/return",
    "treasury",
    s.PaymentOut,
    "not_found",
    "invalid_state",
    created=False,
)
def return_payment(
    payment_id: str, body: s.ReturnIn, ledger: LedgerDep, _: PrincipalDep
) -> JSONResponse:
    outcome = ledger.return_payment(c.ReturnPayment(payment_id, **body.model_dump()))
    return _answer(outcome, s.PaymentOut.model_validate(outcome.value), created=False)


# --- clawbacks --------------------------------------------------------------------


@_route(
    "/clawbacks",
    "clerk",
    s.ClawbackOut,
    "idempotency_conflict",
    "clawback_exceeds_paid",
    created=True,
)
def assess_clawback(body: s.ClawbackIn, ledger: LedgerDep, _: PrincipalDep) -> JSONResponse:
    outcome = ledger.assess_clawback(c.AssessClawback(**body.model_dump()))
    return _answer(outcome, s.ClawbackOut.of(outcome.value), created=True)


@_route(
    "/clawbacks/{clawback_id}/recoveries",
    "treasury",
    s.RecoveryOut,
    "not_found",
    "idempotency_conflict",
    "overpayment",
    "duplicate_bank_reference",
    created=True,
)
def record_recovery(
    clawback_id: str, body: s.RecoveryIn, ledger: LedgerDep, _: PrincipalDep
) -> JSONResponse:
    outcome = ledger.record_recovery(c.RecordRecovery(clawback_id, **body.model_dump()))
    recovery = outcome.value[1]
    out = s.RecoveryOut.model_validate({**vars(recovery), "clawback_id": clawback_id})
    return _answer(outcome, out, created=True)
