"""Grants: proposed against a line's budget, approved by another person, rejected or
revoked; a grant with its totals."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from api.lists import FundYearFilter, ProgrammeFilter, TalentFilter, list_route
from api.operations import Operation
from api.routing import LedgerDep, LedgerRoute, PathId, PrincipalDep, read
from api.schemas import Money, Out
from api.writes import add_writes
from ledger.domain.grants import Grant
from ledger.usecases.grants import ApproveGrant, ProposeGrant, RejectGrant, RevokeGrant
from projections import lists
from projections.views.treasury import Treasury

router = APIRouter(prefix="/v1", route_class=LedgerRoute, tags=["grants"])


GrantStatus = Literal["proposed", "approved", "rejected", "revoked"]


class GrantOut(Out):
    grant_id: str
    talent_id: str
    fund_year: int
    programme: str
    amount: Money
    policy_reference: str
    reason: str
    status: GrantStatus
    proposed_by: str
    decision_by: str | None
    decision_note: str | None
    effective_amount: Money
    paid: Money
    returned: Money
    net_paid: Money
    payable: Money
    clawed_back: Money


OPERATIONS = (
    Operation("grant.propose", "/grants", ProposeGrant, GrantOut, True),
    Operation("grant.approve", "/grants/{grant_id}/approve", ApproveGrant, GrantOut, False),
    Operation("grant.reject", "/grants/{grant_id}/reject", RejectGrant, GrantOut, False),
    Operation("grant.revoke", "/grants/{grant_id}/revoke", RevokeGrant, GrantOut, False),
)
add_writes(router, OPERATIONS)


@read(router, "/grants/{grant_id}", GrantOut)
def get_grant(grant_id: PathId, ledger: LedgerDep, _: PrincipalDep) -> GrantOut:
    return GrantOut.model_validate(ledger.load(Grant, grant_id, "grant"))


async def grant_filters(
    fund_year: FundYearFilter = None,
    programme: ProgrammeFilter = None,
    talent_id: TalentFilter = None,
    status: Annotated[GrantStatus | None, Query(description="Only grants in this status")] = None,
) -> dict[str, Any]:
    """The filters of the grants' list and export."""
    return {
        "fund_year": fund_year,
        "programme": programme,
        "talent_id": talent_id,
        "status": status,
    }


list_route(
    router,
    "/grants",
    GrantOut,
    grant_filters,
    lists.grants,
    (Treasury.NAME,),
)
