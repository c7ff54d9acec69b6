"""What an auditor reads across resources: the event stream, the hash chain's
verification and the audit trail's export. Each resource's own reads are in its
module (`api.resources`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api import schemas as s
from api.lists import After, HistoryPage, Limit, as_page
from api.routing import LedgerDep, LedgerRoute, PrincipalDep, read
from ledger.adapters.chain import verify_chain
from ledger.adapters.postgres import datastore_of
from ledger.domain.errors import NotFound
from projections import reads
from projections.export import audit_csv
from projections.views.audit_trail import AuditTrail
from projections.views.balances import Balances

router = APIRouter(prefix="/v1", route_class=LedgerRoute, tags=["audit"])


@read(router, "/events", HistoryPage, views=(AuditTrail.NAME,))
def events(ledger: LedgerDep, _: PrincipalDep, after: After, limit: Limit = 100) -> Any:
    return as_page(*reads.history(datastore_of(ledger), after=after, limit=limit))


@read(router, "/audit/verify", s.VerificationOut)
def audit_verify(ledger: LedgerDep, _: PrincipalDep) -> s.VerificationOut:
    return s.VerificationOut.model_validate(verify_chain(datastore_of(ledger)))


@read(
    router,
    "/exports/audit-trail.csv",
    views=(AuditTrail.NAME, Balances.NAME),  # a fund year's existence is the balances'
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
