"""Rent waivers: free rent in a talent apartment, granted and ended early."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import Field

from api.lists import FundYearFilter, TalentFilter, list_route
from api.operations import Ids, Operation
from api.routing import LedgerDep, PathId, PrincipalDep, ledger_router, read
from api.schemas import Money, Out
from api.writes import add_writes
from ledger.domain.waivers import RentWaiver
from ledger.usecases.ledger import Ledger
from ledger.usecases.personal import SEALED_PREFIX
from ledger.usecases.waivers import EndWaiver, GrantWaiver
from projections import lists
from projections.views.treasury import Treasury

router = ledger_router("rent waivers")


WaiverStatus = Literal["active", "ended"]


class WaiverOut(Out):
    waiver_id: str
    talent_id: str
    fund_year: int
    programme: str
    apartment: str | None = Field(description="null once the talent's personal data was erased")
    start_on: date
    end_on: date
    monthly_rent: Money
    months: int
    value: Money
    status: WaiverStatus
    ended_on: date | None


def _opened(ledger: Ledger, waiver: dict[str, Any], wrapped: bytes | None) -> dict[str, Any]:
    """A waiver as answered: its apartment opened with the talent's wrapped data key."""
    return {**waiver, "apartment": opened_apartment(ledger, waiver, wrapped)}


def opened_apartment(ledger: Ledger, waiver: dict[str, Any], wrapped: bytes | None) -> str | None:
    apartment: str = waiver["apartment"]
    if not apartment.startswith(SEALED_PREFIX):  # recorded before apartments were sealed
        return apartment if wrapped is not None else None
    return ledger.vault.open(waiver["talent_id"], wrapped, apartment)


def _waiver(ledger: Ledger, waiver: RentWaiver, ids: Ids) -> dict[str, Any]:
    shown = {**vars(waiver), "status": waiver.status}
    return _opened(ledger, shown, ledger.vault.wrapped_key(waiver.talent_id))


def _listed(ledger: Ledger, waiver: dict[str, Any]) -> dict[str, Any]:
    return _opened(ledger, waiver, waiver.pop("wrapped_key"))


OPERATIONS = (
    Operation(
        "waiver.grant",
        "/rent-waivers",
        GrantWaiver,
        WaiverOut,
        True,
        _waiver,
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
        _waiver,
        True,
        reads=("getWaiver", "waiver_id"),
        summary="End a rent waiver early",
        description="The months up to and including the end date's are kept; the value of "
        "the rest goes back to the line's budget.",
    ),
)
add_writes(router, OPERATIONS)


@read(router, "/rent-waivers/{waiver_id}", WaiverOut, summary="Read a rent waiver")
def get_waiver(waiver_id: PathId, ledger: LedgerDep, _: PrincipalDep) -> WaiverOut:
    """A rent waiver, its months and value, read from its own events; the apartment
    opened with the talent's key (null once erased)."""
    return WaiverOut.model_validate(
        _waiver(ledger, ledger.load(RentWaiver, waiver_id, "rent waiver"), {})
    )


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
    _listed,
    name="list_waivers",
    what="rent waivers",
)
