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


@read(router, "/events", HistoryPage, summary="List every event", views=(AuditTrail.NAME,))
def list_events(ledger: LedgerDep, _: PrincipalDep, after: After, limit: Limit = 100) -> Any:
    """The whole audit trail, oldest first, a page at a time: each event's position,
    instant, type, the ids it involves, amount, actor, reason or reference, request id
    and chain hash."""
    return as_page(*reads.history(datastore_of(ledger), after=after, limit=limit))


@read(router, "/audit/verify", s.VerificationOut, summary="Verify the hash chain")
def verify_audit_chain(ledger: LedgerDep, _: PrincipalDep) -> s.VerificationOut:
    """Recompute every event's hash from the one before, independently of the database
    function that wrote them, and name the first position that does not follow."""
    return s.VerificationOut.model_validate(verify_chain(datastore_of(ledger)))
