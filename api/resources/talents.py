"""Talents: registered (the name sealed), departed; their profile and balances (now or
as of any moment) and history."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import Field

from api.lists import After, DateFrom, DateTo, HistoryPage, Limit, as_page, list_route
from api.operations import Ids, Operation
from api.routing import (
    AsOfQuery,
    LedgerDep,
    PathId,
    PrincipalDep,
    ReadsDep,
    ledger_router,
    read,
)
from api.schemas import Money, Out
from api.writes import add_writes
from ledger.domain.talents import Talent
from ledger.domain.values import SLUG_PATTERN, TEXT
from ledger.usecases.ledger import Ledger
from ledger.usecases.talents import DepartTalent, RegisterTalent
from projections import lists, reads
from projections.views.audit_trail import AuditTrail
from projections.views.balances import Balances

router = ledger_router("talents")


TalentStatus = Literal["active", "departed"]


class TalentProfile(Out):
    talent_id: str
    name: str | None = Field(description="null once the talent's personal data was erased")
    bank_account: str | None = Field(
        description="Where payments go (CONTRACT §14); null if none, or once erased"
    )
    personal_data_erased: bool
    category: str
    employer: str
    arrived_on: date
    service_commitment_until: date
    status: TalentStatus
    departed_on: date | None
    departure_reason: str | None


class TalentBalance(Out):
    fund_year: int
    programme: str
    granted: Money
    approved: Money
    paid: Money
    returned: Money
    outstanding: Money
    in_kind_value: Money
    clawback_assessed: Money
    clawback_recovered: Money
    clawback_due: Money


class TalentOut(TalentProfile):
    balances: list[TalentBalance]


def revealed(ledger: Ledger, talent: dict[str, Any], wrapped: bytes | None) -> dict[str, Any]:
    """A talent's fields as answered: its personal data opened with its wrapped data key
    (as a read found it), or null once the key was destroyed."""
    talent_id, account = talent["talent_id"], talent["sealed_bank_account"]
    name = ledger.vault.open(talent_id, wrapped, talent["sealed_name"])
    return {
        **talent,
        "name": name,
        "bank_account": account and ledger.vault.open(talent_id, wrapped, account),
        "personal_data_erased": name is None,
    }


def _profile(ledger: Ledger, talent: Talent, ids: Ids) -> dict[str, Any]:
    wrapped = ledger.vault.wrapped_key(talent.talent_id)
    return revealed(ledger, {**vars(talent), "status": talent.status}, wrapped)


OPERATIONS = (
    Operation(
        "talent.register",
        "/talents",
        RegisterTalent,
        TalentProfile,
        True,
        _profile,
        True,
        reads=("getTalent", "talent_id"),
        summary="Register a talent",
        description="A talent the city attracted: the name and bank account are sealed "
        "with a data key of the talent's own, so that they can be erased later (`ledger "
        "talents forget`) while every amount stays.",
    ),
    Operation(
        "talent.depart",
        "/talents/{talent_id}/departure",
        DepartTalent,
        TalentProfile,
        False,
        _profile,
        present_queries=True,
        reads=("getTalent", "talent_id"),
        summary="Record a talent's departure",
        description="The talent left the city: no new benefit may be granted, and no money "
        "dated after the departure paid (`talent_departed`). Leaving before the service "
        "commitment ends makes a clawback due (the exceptions report proposes it).",
    ),
)
add_writes(router, OPERATIONS)


def opened(ledger: Ledger, talent: dict[str, Any]) -> dict[str, Any]:
    """A talent read from the views, its name opened with its wrapped data key."""
    return revealed(ledger, talent, talent.pop("wrapped_key"))


@read(router, "/talents/{talent_id}", TalentOut, summary="Read a talent", views=(Balances.NAME,))
def get_talent(
    talent_id: PathId, ledger: LedgerDep, datastore: ReadsDep, _: PrincipalDep, as_of: AsOfQuery
) -> Any:
    """A talent's profile (the name unsealed, or null once erased) and balance per fund
    year and line; now, or as of an instant or a position."""
    return opened(ledger, reads.talent(datastore, talent_id, as_of.resolve(datastore)))


async def talent_filters(
    category: Annotated[
        str | None, Query(pattern=SLUG_PATTERN, description="Only talents of this category")
    ] = None,
    employer: Annotated[
        str | None,
        Query(
            pattern=TEXT.pattern,
            min_length=TEXT.min_length,
            max_length=TEXT.max_length,
            description="Only talents of this employer (as registered)",
        ),
    ] = None,
    status: Annotated[TalentStatus | None, Query(description="Only talents in this status")] = None,
    arrived_from: DateFrom = None,
    arrived_to: DateTo = None,
) -> dict[str, Any]:
    return {
        "category": category,
        "employer": employer,
        "status": status,
        "arrived_from": arrived_from,
        "arrived_to": arrived_to,
    }


list_route(
    router,
    "/talents",
    TalentOut,
    talent_filters,
    lists.talents,
    (Balances.NAME,),
    opened,
    name="list_talents",
    what="talents, each with its balances as they stand",
)


# the talent's existence is the balances' to say (`reads.history`)
@read(
    router,
    "/talents/{talent_id}/history",
    HistoryPage,
    summary="Read a talent's history",
    views=(AuditTrail.NAME, Balances.NAME),
)
def get_talent_history(
    talent_id: PathId, datastore: ReadsDep, _: PrincipalDep, after: After, limit: Limit = 100
) -> Any:
    """The audit-trail entries of the talent, oldest first, a page at a time."""
    return as_page(*reads.history(datastore, talent_id=talent_id, after=after, limit=limit))
