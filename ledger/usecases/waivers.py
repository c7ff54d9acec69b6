"""Rent waivers: granted against an in-kind line, ended early."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

from ledger.domain.budget import FundYear
from ledger.domain.errors import (
    BudgetExceeded,
    FundYearClosed,
    IdempotencyConflict,
    InvalidState,
    NotFound,
    TalentDeparted,
)
from ledger.domain.talents import Talent
from ledger.domain.values import Identifier, Slug, Text, Year
from ledger.domain.waivers import RentWaiver
from ledger.engine.unit_of_work import UnitOfWork
from ledger.usecases.personal import PersonalDataErased, Vault
from ledger.usecases.registry import fingerprint, use_case

# --- commands ------------------------------------------------------------


@dataclass(frozen=True)
class GrantWaiver:
    waiver_id: Identifier
    talent_id: Identifier
    fund_year: Year
    programme: Slug
    apartment: Text
    start_on: date
    end_on: date
    monthly_rent: Decimal


@dataclass(frozen=True)
class EndWaiver:
    waiver_id: Identifier
    ended_on: date


# --- decisions -----------------------------------------------------------


@dataclass(frozen=True)
class SealedWaiver:
    """A waiver ready to decide: where the talent lives is personal data, so the
    apartment is replaced by a keyed digest (what a retry compares) and sealed with
    the talent's data key, as the name is."""

    waiver: GrantWaiver
    sealed_apartment: str


def seal_waiver(vault: Vault, cmd: GrantWaiver) -> SealedWaiver:
    try:
        key = vault.key_for_new(cmd.talent_id)
    except PersonalDataErased as e:
        raise InvalidState(f"{e}: no apartment can be recorded for them") from None
    return SealedWaiver(replace(cmd, apartment=key.digest(cmd.apartment)), key.seal(cmd.apartment))


@use_case(
    GrantWaiver,
    role="clerk",
    refuses=(IdempotencyConflict, BudgetExceeded, FundYearClosed, TalentDeparted, InvalidState),
    prepare=seal_waiver,
)
def grant_waiver(uow: UnitOfWork, sealed: SealedWaiver) -> RentWaiver:
    cmd = sealed.waiver
    fp = fingerprint(cmd)
    waiver = RentWaiver.grant(
        cmd.waiver_id,
        cmd.talent_id,
        cmd.fund_year,
        cmd.programme,
        sealed.sealed_apartment,
        cmd.start_on,
        cmd.end_on,
        cmd.monthly_rent,
        fp,
    )
    if (original := uow.created_by(RentWaiver, cmd.waiver_id, fp)) is not None:
        return original
    talent = uow.refer(Talent, cmd.talent_id, "talent_id", "talent")
    talent.check_may_receive()
    fund_year = uow.refer(FundYear, cmd.fund_year, "fund_year", "fund year")
    fund_year.reserve(waiver)
    return uow.add(waiver)


@use_case(EndWaiver, role="clerk", refuses=(NotFound, InvalidState))
def end_waiver(uow: UnitOfWork, cmd: EndWaiver) -> RentWaiver:
    waiver = uow.get(RentWaiver, cmd.waiver_id, "rent waiver")
    waiver.end(cmd.ended_on, uow.get(FundYear, waiver.fund_year, "fund year"))
    return waiver
