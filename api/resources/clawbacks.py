"""Clawbacks: money a departed talent owes back on a grant, and its recoveries."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Query

from api.lists import FundYearFilter, TalentFilter, list_route
from api.operations import Ids, Operation
from api.routing import LedgerDep, PathId, PrincipalDep, ledger_router, read
from api.schemas import Money, Out
from api.writes import add_writes
from ledger.domain.clawbacks import Clawback, Recovery
from ledger.usecases.clawbacks import AssessClawback, RecordRecovery
from ledger.usecases.ledger import Ledger
from projections import lists
from projections.views.treasury import Treasury

router = ledger_router("clawbacks")


class RecoveryOut(Out):
    clawback_id: str
    recovery_id: str
    amount: Money
    value_date: date
    bank_reference: str


class RecoveryItem(Out):
    recovery_id: str
    amount: Money
    value_date: date
    bank_reference: str


ClawbackStatus = Literal["open", "recovered"]


class ClawbackOut(Out):
    clawback_id: str
    grant_id: str
    talent_id: str
    fund_year: int
    programme: str
    amount: Money
    reason: str
    status: ClawbackStatus
    recovered: Money
    due: Money
    recoveries: list[RecoveryItem]


def _clawback(ledger: Ledger | None, clawback: Clawback, ids: Ids | None = None) -> dict[str, Any]:
    """Its fields, and its recoveries as a list."""
    fields = {name: getattr(clawback, name) for name in ClawbackOut.model_fields}
    return {**fields, "recoveries": list(clawback.recoveries.values())}


def _recovery(ledger: Ledger, value: tuple[Clawback, Recovery], ids: Ids) -> dict[str, Any]:
    return {**vars(value[1]), "clawback_id": ids["clawback_id"]}


OPERATIONS = (
    Operation(
        "clawback.assess",
        "/clawbacks",
        AssessClawback,
        ClawbackOut,
        True,
        _clawback,
        reads=("getClawback", "clawback_id"),
        summary="Assess a clawback",
        description="Money a departed talent owes back on a grant, at most what was net "
        "paid on it (`clawback_exceeds_paid`). The exceptions report proposes the pro-rata "
        "amount.",
    ),
    Operation(
        "clawback.recover",
        "/clawbacks/{clawback_id}/recoveries",
        RecordRecovery,
        RecoveryOut,
        True,
        _recovery,
        reads=("getClawback", "clawback_id"),
        summary="Record a recovery",
        description="Money recovered on a clawback, as the bank received it: at most what "
        "is still due (`overpayment`), under a bank reference not used before.",
    ),
)
add_writes(router, OPERATIONS)


@read(router, "/clawbacks/{clawback_id}", ClawbackOut, summary="Read a clawback")
def get_clawback(clawback_id: PathId, ledger: LedgerDep, _: PrincipalDep) -> ClawbackOut:
    """A clawback, what is still due and its recoveries, read from its own events."""
    clawback = ledger.load(Clawback, clawback_id, "clawback")
    return ClawbackOut.model_validate(_clawback(None, clawback))


async def clawback_filters(
    fund_year: FundYearFilter = None,
    talent_id: TalentFilter = None,
    status: Annotated[
        ClawbackStatus | None, Query(description="Only clawbacks in this status")
    ] = None,
) -> dict[str, Any]:
    return {"fund_year": fund_year, "talent_id": talent_id, "status": status}


list_route(
    router,
    "/clawbacks",
    ClawbackOut,
    clawback_filters,
    lists.clawbacks,
    (Treasury.NAME,),
    name="list_clawbacks",
    what="clawbacks, each with its recoveries",
)
