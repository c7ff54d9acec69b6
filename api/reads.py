"""What an auditor reads across resources: the event stream. Each resource's own reads
are in its module (`api.resources`), the exports in `api.exports`, the proofs in
`api.audit`."""

from __future__ import annotations

from typing import Any

from api.lists import After, HistoryPage, Limit, as_page
from api.routing import PrincipalDep, ReadsDep, ledger_router, read
from projections import reads
from projections.views.audit_trail import AuditTrail

router = ledger_router("audit")


@read(router, "/events", HistoryPage, summary="List every event", views=(AuditTrail.NAME,))
def list_events(datastore: ReadsDep, _: PrincipalDep, after: After, limit: Limit = 100) -> Any:
    """The whole audit trail, oldest first, a page at a time: each event's position,
    instant, type, the ids it involves, amount, actor, reason or reference, request id
    and chain hash."""
    return as_page(*reads.history(datastore, after=after, limit=limit))
