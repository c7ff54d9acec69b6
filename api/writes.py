"""Write routes of CONTRACT §4: thin adapters over the operations table."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api import schemas as s
from api.keys import Principal
from api.operations import OPERATIONS, Ids, answer, presented
from api.problems import problem_responses
from api.routing import LedgerDep, LedgerRoute, PathId, PathYear, PrincipalDep, roles
from ledger.application import LedgerApplication

F = TypeVar("F", bound=Callable[..., Any])

router = APIRouter(prefix="/v1", route_class=LedgerRoute, tags=["writes"])

ALWAYS = (
    "unauthenticated",
    "forbidden",
    "payload_too_large",
    "unsupported_media_type",
    "validation_error",
    "unavailable",
)


# Every write answers the position to read after, and says when it was a replay (CONTRACT §2).
WRITE_HEADERS: dict[str, Any] = {
    "Ledger-Position": {
        "description": "Global position of the last event this write recorded (or replayed)",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "Idempotent-Replayed": {
        "description": "Present when the answer is a replay of an earlier identical request",
        "schema": {"type": "string", "enum": ["true"]},
    },
}


def written(model: type[BaseModel], *, created: bool) -> dict[int | str, dict[str, Any]]:
    """The success answers of a write: an action answers 200; a create answers 201, and
    200 with the resource as created when it is the replay of an identical create."""
    if not created:
        return {200: {"description": "Done", "headers": WRITE_HEADERS}}
    return {
        201: {"description": "Created", "headers": WRITE_HEADERS},
        200: {
            "description": "Replay of an identical create: the resource as it was created",
            "model": model,
            "headers": WRITE_HEADERS,
        },
    }


def _route(path: str, name: str, *codes: str) -> Callable[[F], F]:
    op = OPERATIONS[name]
    return router.post(
        path,
        response_model=op.out,
        status_code=201 if op.created else 200,
        openapi_extra=roles(op.role),
        responses={**written(op.out, created=op.created), **problem_responses(*ALWAYS, *codes)},
    )


async def _perform(
    name: str, ledger: LedgerApplication, principal: Principal, ids: Ids, body: Any
) -> JSONResponse:
    """The use case runs in the group-commit writer and the request only awaits it:
    no worker thread sits blocked for each write in flight."""
    op = OPERATIONS[name]
    call = partial(presented, ledger, op, ids, lambda: op.run(ledger, ids, body, principal))
    status, headers, content = answer(op, await asyncio.wrap_future(ledger.submit(call)))
    return JSONResponse(content, status_code=status, headers=headers)


@_route("/fund-years", "fund_year.open", "idempotency_conflict")
async def open_fund_year(
    body: s.OpenFundYearIn, ledger: LedgerDep, p: PrincipalDep
) -> JSONResponse:
    return await _perform("fund_year.open", ledger, p, {}, body)


@_route(
    "/fund-years/{year}/appropriations",
    "appropriation.add",
    "not_found",
    "idempotency_conflict",
    "fund_year_closed",
)
async def appropriate(
    year: PathYear, body: s.AppropriationIn, ledger: LedgerDep, p: PrincipalDep
) -> JSONResponse:
    return await _perform("appropriation.add", ledger, p, {"year": year}, body)


@_route("/fund-years/{year}/close", "fund_year.close", "not_found", "invalid_state")
async def close_fund_year(
    year: PathYear, body: s.CloseIn, ledger: LedgerDep, p: PrincipalDep
) -> JSONResponse:
    return await _perform("fund_year.close", ledger, p, {"year": year}, body)


@_route("/talents", "talent.register", "idempotency_conflict")
async def register_talent(body: s.TalentIn, ledger: LedgerDep, p: PrincipalDep) -> JSONResponse:
    return await _perform("talent.register", ledger, p, {}, body)


@_route("/talents/{talent_id}/departure", "talent.depart", "not_found", "invalid_state")
async def depart_talent(
    talent_id: PathId, body: s.DepartureIn, ledger: LedgerDep, p: PrincipalDep
) -> JSONResponse:
    return await _perform("talent.depart", ledger, p, {"talent_id": talent_id}, body)


@_route(
    "/grants",
    "grant.propose",
    "idempotency_conflict",
    "budget_exceeded",
    "fund_year_closed",
    "talent_departed",
)
async def propose_grant(body: s.GrantIn, ledger: LedgerDep, p: PrincipalDep) -> JSONResponse:
    return await _perform("grant.propose", ledger, p, {}, body)


@_route(
    "/grants/{grant_id}/approve", "grant.approve", "not_found", "invalid_state", "self_approval"
)
async def approve_grant(
    grant_id: PathId, ledger: LedgerDep, p: PrincipalDep, body: s.ApproveIn | None = None
) -> JSONResponse:
    return await _perform("grant.approve", ledger, p, {"grant_id": grant_id}, body or s.ApproveIn())


@_route("/grants/{grant_id}/reject", "grant.reject", "not_found", "invalid_state")
async def reject_grant(
    grant_id: PathId, body: s.ReasonIn, ledger: LedgerDep, p: PrincipalDep
) -> JSONResponse:
    return await _perform("grant.reject", ledger, p, {"grant_id": grant_id}, body)


@_route("/grants/{grant_id}/revoke", "grant.revoke", "not_found", "invalid_state")
async def revoke_grant(
    grant_id: PathId, body: s.ReasonIn, ledger: LedgerDep, p: PrincipalDep
) -> JSONResponse:
    return await _perform("grant.revoke", ledger, p, {"grant_id": grant_id}, body)


@_route(
    "/rent-waivers",
    "waiver.grant",
    "idempotency_conflict",
    "budget_exceeded",
    "fund_year_closed",
    "talent_departed",
)
async def grant_waiver(body: s.WaiverIn, ledger: LedgerDep, p: PrincipalDep) -> JSONResponse:
    return await _perform("waiver.grant", ledger, p, {}, body)


@_route("/rent-waivers/{waiver_id}/end", "waiver.end", "not_found", "invalid_state")
async def end_waiver(
    waiver_id: PathId, body: s.EndWaiverIn, ledger: LedgerDep, p: PrincipalDep
) -> JSONResponse:
    return await _perform("waiver.end", ledger, p, {"waiver_id": waiver_id}, body)


@_route(
    "/payments",
    "payment.record",
    "idempotency_conflict",
    "invalid_state",
    "overpayment",
    "duplicate_bank_reference",
    "talent_departed",
)
async def record_payment(body: s.PaymentIn, ledger: LedgerDep, p: PrincipalDep) -> JSONResponse:
    return await _perform("payment.record", ledger, p, {}, body)


@_route("/payments/{payment_id}/return", "payment.return", "not_found", "invalid_state")
async def return_payment(
    payment_id: PathId, body: s.ReturnIn, ledger: LedgerDep, p: PrincipalDep
) -> JSONResponse:
    return await _perform("payment.return", ledger, p, {"payment_id": payment_id}, body)


@_route("/clawbacks", "clawback.assess", "idempotency_conflict", "clawback_exceeds_paid")
async def assess_clawback(body: s.ClawbackIn, ledger: LedgerDep, p: PrincipalDep) -> JSONResponse:
    return await _perform("clawback.assess", ledger, p, {}, body)


@_route(
    "/clawbacks/{clawback_id}/recoveries",
    "clawback.recover",
    "not_found",
    "idempotency_conflict",
    "overpayment",
    "duplicate_bank_reference",
)
async def record_recovery(
    clawback_id: PathId, body: s.RecoveryIn, ledger: LedgerDep, p: PrincipalDep
) -> JSONResponse:
    return await _perform("clawback.recover", ledger, p, {"clawback_id": clawback_id}, body)
