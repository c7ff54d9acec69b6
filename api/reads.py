"""Read routes of CONTRACT §5; every role may read.

Balances and histories come from the read models (waiting for `min_position`, and
for the as-of position, when asked); a single grant, payment, waiver or clawback
is read from its own events, which are always current.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from eventsourcing.postgres import PostgresDatastore
from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from api import schemas as s
from api.problems import problem_responses
from api.routing import (
    ANY_ROLE,
    Consistent,
    LedgerDep,
    LedgerRoute,
    PathId,
    PathYear,
    PrincipalDep,
    roles,
)
from ledger.adapters.chain import verify_chain
from ledger.adapters.postgres import datastore_of
from ledger.domain.clawbacks import Clawback
from ledger.domain.errors import NotFound, ValidationFailed
from ledger.domain.grants import Grant
from ledger.domain.payments import Payment
from ledger.domain.waivers import RentWaiver
from projections import reads
from projections.export import audit_csv

F = TypeVar("F", bound=Callable[..., Any])

router = APIRouter(
    prefix="/v1",
    route_class=LedgerRoute,
    tags=["reads"],
    dependencies=[Consistent],
    responses=problem_responses("unauthenticated", "not_found", "validation_error", "unavailable"),
)


def _get(path: str, model: type | None = None, **kwargs: Any) -> Callable[[F], F]:
    return router.get(path, response_model=model, openapi_extra=roles(*ANY_ROLE), **kwargs)


@dataclass(frozen=True)
class AsOf:
    """The point a read asked for. Checking the query is a coroutine (no worker
    thread); finding the position of an instant takes a query, so the endpoint does
    it in its own worker thread, one hand-off per read instead of two."""

    instant: datetime | None
    position: int | None

    def resolve(self, datastore: PostgresDatastore) -> int | None:
        """The position asked for (an instant's is that of the last event recorded by
        then), or None; the read waits for the read models to reach it."""
        if self.instant is not None:
            return reads.position_at(datastore, self.instant)
        return self.position


async def _as_of(
    as_of: Annotated[
        s.Instant | None,
        Query(description="Answer as of this instant (RFC 3339, events recorded at or before)"),
    ] = None,
    as_of_position: Annotated[
        int | None, Query(ge=0, description="Answer as of this global position")
    ] = None,
) -> AsOf:
    if as_of is not None and as_of_position is not None:
        raise ValidationFailed("as_of", "give as_of or as_of_position, not both", "query")
    return AsOf(as_of, as_of_position)


AsOfQuery = Annotated[AsOf, Depends(_as_of)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Entries per page")]
After = Annotated[str | None, Query(description="The `next` cursor of the previous page")]


@_get("/fund-years/{year}", s.FundYearOut)
def get_fund_year(
    year: PathYear, ledger: LedgerDep, _: PrincipalDep, as_of: AsOfQuery
) -> s.FundYearOut:
    datastore = datastore_of(ledger)
    return s.FundYearOut.model_validate(reads.fund_year(datastore, year, as_of.resolve(datastore)))


@_get("/talents/{talent_id}", s.TalentOut)
def get_talent(
    talent_id: PathId, ledger: LedgerDep, _: PrincipalDep, as_of: AsOfQuery
) -> s.TalentOut:
    datastore = datastore_of(ledger)
    talent = reads.talent(datastore, talent_id, as_of.resolve(datastore))
    name = ledger.vault.open(talent_id, talent.pop("wrapped_key"), talent["sealed_name"])
    return s.TalentOut.model_validate(s.revealed(talent, name))


@_get("/grants/{grant_id}", s.GrantOut)
def get_grant(grant_id: PathId, ledger: LedgerDep, _: PrincipalDep) -> s.GrantOut:
    return s.GrantOut.model_validate(ledger.load(Grant, grant_id, "grant"))


@_get("/payments/{payment_id}", s.PaymentOut)
def get_payment(payment_id: PathId, ledger: LedgerDep, _: PrincipalDep) -> s.PaymentOut:
    return s.PaymentOut.model_validate(ledger.load(Payment, payment_id, "payment"))


@_get("/rent-waivers/{waiver_id}", s.WaiverOut)
def get_waiver(waiver_id: PathId, ledger: LedgerDep, _: PrincipalDep) -> s.WaiverOut:
    return s.WaiverOut.model_validate(ledger.load(RentWaiver, waiver_id, "rent waiver"))


@_get("/clawbacks/{clawback_id}", s.ClawbackOut)
def get_clawback(clawback_id: PathId, ledger: LedgerDep, _: PrincipalDep) -> s.ClawbackOut:
    return s.ClawbackOut.of(ledger.load(Clawback, clawback_id, "clawback"))


def _page(items: list[dict[str, Any]], cursor: str | None) -> s.HistoryPage:
    return s.HistoryPage(items=[s.HistoryEntry.model_validate(i) for i in items], next=cursor)


@_get("/talents/{talent_id}/history", s.HistoryPage)
def talent_history(
    talent_id: PathId, ledger: LedgerDep, _: PrincipalDep, limit: Limit = 100, after: After = None
) -> s.HistoryPage:
    return _page(
        *reads.history(datastore_of(ledger), talent_id=talent_id, after=after, limit=limit)
    )


@_get("/fund-years/{year}/history", s.HistoryPage)
def fund_year_history(
    year: PathYear, ledger: LedgerDep, _: PrincipalDep, limit: Limit = 100, after: After = None
) -> s.HistoryPage:
    return _page(*reads.history(datastore_of(ledger), fund_year=year, after=after, limit=limit))


@_get("/events", s.HistoryPage)
def events(
    ledger: LedgerDep, _: PrincipalDep, limit: Limit = 100, after: After = None
) -> s.HistoryPage:
    return _page(*reads.history(datastore_of(ledger), after=after, limit=limit))


@_get("/fund-years/{year}/trial-balance", s.TrialBalance)
def trial_balance(year: PathYear, ledger: LedgerDep, _: PrincipalDep) -> s.TrialBalance:
    return s.TrialBalance.model_validate(reads.trial_balance(datastore_of(ledger), year))


@_get("/audit/verify", s.VerificationOut)
def audit_verify(ledger: LedgerDep, _: PrincipalDep) -> s.VerificationOut:
    return s.VerificationOut.model_validate(verify_chain(datastore_of(ledger)))


@_get(
    "/exports/audit-trail.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "RFC 4180 CSV, UTF-8"}},
)
def export_audit_trail(
    ledger: LedgerDep,
    _: PrincipalDep,
    fund_year: Annotated[int | None, Query(description="Only this fund year")] = None,
) -> StreamingResponse:
    datastore = datastore_of(ledger)
    if fund_year is not None and not reads.exists_fund_year(datastore, fund_year):
        raise NotFound(f"no fund year {fund_year}")
    name = f"audit-trail-{fund_year or 'all'}.csv"
    return StreamingResponse(
        audit_csv(reads.audit_rows(datastore, fund_year)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
