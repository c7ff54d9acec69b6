"""Read routes of CONTRACT §5 that this version serves; every role may read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter

from api import schemas as s
from api.problems import problem_responses
from api.routing import ANY_ROLE, Consistent, LedgerDep, LedgerRoute, PrincipalDep, roles
from ledger.domain import Clawback, Grant, Payment, RentWaiver, Talent
from ledger.store import datastore_of
from projections import reads

F = TypeVar("F", bound=Callable[..., Any])

router = APIRouter(
    prefix="/v1",
    route_class=LedgerRoute,
    tags=["reads"],
    dependencies=[Consistent],
    responses=problem_responses("unauthenticated", "not_found", "validation_error", "unavailable"),
)


def _get(path: str, model: type) -> Callable[[F], F]:
    return router.get(path, response_model=model, openapi_extra=roles(*ANY_ROLE))


@_get("/fund-years/{year}", s.FundYearOut)
def get_fund_year(year: int, ledger: LedgerDep, _: PrincipalDep) -> s.FundYearOut:
    return s.FundYearOut.model_validate(reads.fund_year(datastore_of(ledger), year))


@_get("/talents/{talent_id}", s.TalentOut)
def get_talent(talent_id: str, ledger: LedgerDep, _: PrincipalDep) -> s.TalentOut:
    talent = ledger.load(Talent, talent_id, "talent")
    balances = reads.talent_balances(datastore_of(ledger), talent_id)
    profile = s.TalentProfile.model_validate(talent).model_dump()
    return s.TalentOut.model_validate({**profile, "balances": balances})


@_get("/grants/{grant_id}", s.GrantOut)
def get_grant(grant_id: str, ledger: LedgerDep, _: PrincipalDep) -> s.GrantOut:
    return s.GrantOut.model_validate(ledger.load(Grant, grant_id, "grant"))


@_get("/payments/{payment_id}", s.PaymentOut)
def get_payment(payment_id: str, ledger: LedgerDep, _: PrincipalDep) -> s.PaymentOut:
    return s.PaymentOut.model_validate(ledger.load(Payment, payment_id, "payment"))


@_get("/rent-waivers/{waiver_id}", s.WaiverOut)
def get_waiver(waiver_id: str, ledger: LedgerDep, _: PrincipalDep) -> s.WaiverOut:
    return s.WaiverOut.model_validate(ledger.load(RentWaiver, waiver_id, "rent waiver"))


@_get("/clawbacks/{clawback_id}", s.ClawbackOut)
def get_clawback(clawback_id: str, ledger: LedgerDep, _: PrincipalDep) -> s.ClawbackOut:
    return s.ClawbackOut.of(ledger.load(Clawback, clawback_id, "clawback"))
