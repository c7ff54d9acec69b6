"""Clawbacks: money a departed talent owes back on a grant, and its recoveries."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from api.lists import FundYearFilter, TalentFilter, list_route
from api.operations import Ids, Operation
from api.routing import LedgerDep, LedgerRoute, PathId, PrincipalDep, read
from api.schemas import Money, Out
from api.writes import add_writes
from ledger.domain.clawbacks import Clawback, Recovery
from ledger.usecases.clawbacks import AssessClawback, RecordRecovery
from ledger.usecases.ledger import Ledger
from projections import lists
from projections.views.treasury import Treasury

router = APIRouter(prefix="/v1", route_class=LedgerRoute, tags=["clawbacks"])


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
    Operation("clawback.assess", "/clawbacks", AssessClawback, ClawbackOut, True, _clawback),
    Operation(
        "clawback.recover",
        "/clawbacks/{clawback_id}/recoveries",
        RecordRecovery,
        RecoveryOut,
        True,
        _recovery,
    ),
)
add_writes(router, OPERATIONS)


@read(router, "/clawbacks/{clawback_id}", ClawbackOut)
def get_clawback(clawback_id: PathId, ledger: LedgerDep, _: PrincipalDep) -> ClawbackOut:
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
)
