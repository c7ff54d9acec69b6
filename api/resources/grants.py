"""Grants: proposed against a line's budget, approved by another person, rejected or
revoked; a grant with its totals."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import Field

from api.lists import FundYearFilter, ProgrammeFilter, TalentFilter, list_route
from api.operations import Ids, Operation
from api.routing import LedgerDep, PathId, PrincipalDep, ledger_router, read
from api.schemas import Money, Out
from api.writes import add_writes
from ledger.domain.grants import Grant
from ledger.domain.instalments import shown
from ledger.usecases.grants import ApproveGrant, ProposeGrant, RejectGrant, RevokeGrant
from ledger.usecases.ledger import Ledger
from projections import lists
from projections.views.treasury import Treasury

router = ledger_router("grants")


GrantStatus = Literal["proposed", "approved", "rejected", "revoked"]


class InstalmentOut(Out):
    number: int
    due_on: date | None = Field(description="null until a grant without a plan is approved")
    amount: Money
    paid: Money
    status: Literal["scheduled", "unpaid", "partially_paid", "paid", "cancelled"]


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
    on_hold: Money = Field(description="What open disbursement runs hold of it")
    clawed_back: Money
    instalments: list[InstalmentOut]


def grant_out(ledger: Ledger, grant: Grant, ids: Ids) -> dict[str, Any]:
    """A grant with its instalments, each with its status."""
    fields = ("effective_amount", "net_paid", "payable", "on_hold", "status")
    return {
        **vars(grant),
        **{name: getattr(grant, name) for name in fields},
        "instalments": shown(grant.status, grant.instalments),
    }


OPERATIONS = (
    Operation(
        "grant.propose",
        "/grants",
        ProposeGrant,
        GrantOut,
        True,
        grant_out,
        reads=("getGrant", "grant_id"),
        summary="Propose a grant",
        description="A cash grant to a talent from a cash line of an open fund year. Its "
        "amount is reserved against the line's available budget at once (`budget_exceeded` "
        "past it); the talent must not have departed. It waits for another person's "
        "approval.",
    ),
    Operation(
        "grant.approve",
        "/grants/{grant_id}/approve",
        ApproveGrant,
        GrantOut,
        False,
        grant_out,
        reads=("getGrant", "grant_id"),
        summary="Approve a grant",
        description="Approve a proposed grant: the approver is the key's holder, never the "
        "one who proposed it (`self_approval`). Once approved, it may be paid up to its "
        "amount.",
    ),
    Operation(
        "grant.reject",
        "/grants/{grant_id}/reject",
        RejectGrant,
        GrantOut,
        False,
        grant_out,
        reads=("getGrant", "grant_id"),
        summary="Reject a grant",
        description="Reject a proposed grant, with a reason: its whole amount goes back to "
        "the line's budget.",
    ),
    Operation(
        "grant.revoke",
        "/grants/{grant_id}/revoke",
        RevokeGrant,
        GrantOut,
        False,
        grant_out,
        reads=("getGrant", "grant_id"),
        summary="Revoke a grant",
        description="Revoke an approved grant, with a reason: nothing more may be paid on "
        "it, and what was not paid goes back to the line's budget.",
    ),
)
add_writes(router, OPERATIONS)


@read(router, "/grants/{grant_id}", GrantOut, summary="Read a grant")
def get_grant(grant_id: PathId, ledger: LedgerDep, _: PrincipalDep) -> GrantOut:
    """A grant with its status and totals, read from its own events: always current."""
    return GrantOut.model_validate(grant_out(ledger, ledger.load(Grant, grant_id, "grant"), {}))


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
    name="list_grants",
    what="grants",
)
