"""Rent waivers: free rent in a talent apartment, granted and ended early."""

from __future__ import annotations

from datetime import date
from typing import Literal

from fastapi import APIRouter

from api.operations import Operation
from api.routing import LedgerDep, LedgerRoute, PathId, PrincipalDep, read
from api.schemas import Money, Out
from api.writes import add_writes
from ledger.domain.waivers import RentWaiver
from ledger.usecases.waivers import EndWaiver, GrantWaiver

router = APIRouter(prefix="/v1", route_class=LedgerRoute, tags=["rent waivers"])


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
    status: Literal["active", "ended"]
    ended_on: date | None


OPERATIONS = (
    Operation("waiver.grant", "/rent-waivers", GrantWaiver, WaiverOut, True),
    Operation("waiver.end", "/rent-waivers/{waiver_id}/end", EndWaiver, WaiverOut, False),
)
add_writes(router, OPERATIONS)


@read(router, "/rent-waivers/{waiver_id}", WaiverOut)
def get_waiver(waiver_id: PathId, ledger: LedgerDep, _: PrincipalDep) -> WaiverOut:
    return WaiverOut.model_validate(ledger.load(RentWaiver, waiver_id, "rent waiver"))
