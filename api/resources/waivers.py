"""Rent waivers: free rent in a talent apartment, granted and ended early."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from api.lists import FundYearFilter, TalentFilter, list_route
from api.operations import Operation
from api.routing import LedgerDep, LedgerRoute, PathId, PrincipalDep, read
from api.schemas import Money, Out
from api.writes import add_writes
from ledger.domain.waivers import RentWaiver
from ledger.usecases.waivers import EndWaiver, GrantWaiver
from projections import lists
from projections.views.treasury import Treasury

router = APIRouter(prefix="/v1", route_class=LedgerRoute, tags=["rent waivers"])


WaiverStatus = Literal["active", "ended"]


class WaiverOut(Out):
    waiver_id: str
    talent_id: str
    fund_year: int
    programme: str
    apartment: str
    start_on: date
    end_on: date
    monthly_rent: Money
    months: int
    value: Money
    status: WaiverStatus
    ended_on: date | None


OPERATIONS = (
    Operation(
        "waiver.grant",
        "/rent-waivers",
        GrantWaiver,
        WaiverOut,
        True,
        reads=("getWaiver", "waiver_id"),
        summary="Grant a rent waiver",
        description="Free rent in a talent apartment, charged to an in-kind line: its value "
        "(the monthly rent times its calendar months, a part month counting whole) is "
        "reserved against the line's budget. Its dates lie within the fund year.",
    ),
    Operation(
        "waiver.end",
        "/rent-waivers/{waiver_id}/end",
        EndWaiver,
        WaiverOut,
        False,
        reads=("getWaiver", "waiver_id"),
        summary="End a rent waiver early",
        description="The months up to and including the end date's are kept; the value of "
        "the rest goes back to the line's budget.",
    ),
)
add_writes(router, OPERATIONS)


@read(router, "/rent-waivers/{waiver_id}", WaiverOut, summary="Read a rent waiver")
def get_waiver(waiver_id: PathId, ledger: LedgerDep, _: PrincipalDep) -> WaiverOut:
    """A rent waiver, its months and value, read from its own events."""
    return WaiverOut.model_validate(ledger.load(RentWaiver, waiver_id, "rent waiver"))


async def waiver_filters(
    fund_year: FundYearFilter = None,
    talent_id: TalentFilter = None,
    status: Annotated[WaiverStatus | None, Query(description="Only waivers in this status")] = None,
) -> dict[str, Any]:
    return {"fund_year": fund_year, "talent_id": talent_id, "status": status}


list_route(
    router,
    "/rent-waivers",
    WaiverOut,
    waiver_filters,
    lists.waivers,
    (Treasury.NAME,),
    name="list_waivers",
    what="rent waivers",
)
