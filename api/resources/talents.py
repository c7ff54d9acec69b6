"""Talents: registered (the name sealed), departed; their profile and balances (now or
as of any moment) and history."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import Field

from api.operations import Ids, Operation
from api.routing import (
    After,
    AsOfQuery,
    LedgerDep,
    LedgerRoute,
    Limit,
    PathId,
    PrincipalDep,
    history_page,
    read,
)
from api.schemas import HistoryPage, Money, Out
from api.writes import add_writes
from ledger.adapters.postgres import datastore_of
from ledger.domain.talents import Talent
from ledger.usecases.ledger import Ledger
from ledger.usecases.talents import DepartTalent, RegisterTalent
from projections import reads
from projections.views.audit_trail import AuditTrail
from projections.views.balances import Balances

router = APIRouter(prefix="/v1", route_class=LedgerRoute, tags=["talents"])


class TalentProfile(Out):
    talent_id: str
    name: str | None = Field(description="null once the talent's personal data was erased")
    personal_data_erased: bool
    category: str
    employer: str
    arrived_on: date
    service_commitment_until: date
    status: Literal["active", "departed"]
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


def revealed(talent: dict[str, Any], name: str | None) -> dict[str, Any]:
    """A talent's fields as answered: its name in clear, or null once erased."""
    return {**talent, "name": name, "personal_data_erased": name is None}


def _profile(ledger: Ledger, talent: Talent, ids: Ids) -> dict[str, Any]:
    name = ledger.vault.reveal(talent.talent_id, talent.sealed_name)
    return revealed({**vars(talent), "status": talent.status}, name)


OPERATIONS = (
    Operation("talent.register", "/talents", RegisterTalent, TalentProfile, True, _profile, True),
    Operation(
        "talent.depart",
        "/talents/{talent_id}/departure",
        DepartTalent,
        TalentProfile,
        False,
        _profile,
        present_queries=True,
    ),
)
add_writes(router, OPERATIONS)


@read(router, "/talents/{talent_id}", TalentOut, views=(Balances.NAME,))
def get_talent(talent_id: PathId, ledger: LedgerDep, _: PrincipalDep, as_of: AsOfQuery) -> Any:
    datastore = datastore_of(ledger)
    talent = reads.talent(datastore, talent_id, as_of.resolve(datastore))
    name = ledger.vault.open(talent_id, talent.pop("wrapped_key"), talent["sealed_name"])
    return revealed(talent, name)


# the talent's existence is the balances' to say (`reads.history`)
@read(router, "/talents/{talent_id}/history", HistoryPage, views=(AuditTrail.NAME, Balances.NAME))
def talent_history(
    talent_id: PathId, ledger: LedgerDep, _: PrincipalDep, limit: Limit = 100, after: After = None
) -> HistoryPage:
    return history_page(
        *reads.history(datastore_of(ledger), talent_id=talent_id, after=after, limit=limit)
    )
