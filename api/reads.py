"""What an auditor reads across resources: the event stream and the hash chain's
verification. Each resource's own reads are in its module (`api.resources`), the
exports in `api.exports`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api import schemas as s
from api.lists import After, HistoryPage, Limit, as_page
from api.routing import LedgerDep, LedgerRoute, PrincipalDep, read
from ledger.adapters.chain import verify_chain
from ledger.adapters.postgres import datastore_of
from projections import reads
from projections.views.audit_trail import AuditTrail

router = APIRouter(prefix="/v1", route_class=LedgerRoute, tags=["audit"])


@read(router, "/events", HistoryPage, views=(AuditTrail.NAME,))
def events(ledger: LedgerDep, _: PrincipalDep, after: After, limit: Limit = 100) -> Any:
    return as_page(*reads.history(datastore_of(ledger), after=after, limit=limit))


@read(router, "/audit/verify", s.VerificationOut)
def audit_verify(ledger: LedgerDep, _: PrincipalDep) -> s.VerificationOut:
    return s.VerificationOut.model_validate(verify_chain(datastore_of(ledger)))
