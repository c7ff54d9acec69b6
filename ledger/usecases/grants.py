"""Grants: proposed against the budget, approved or rejected, revoked."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from ledger.domain.budget import FundYear
from ledger.domain.errors import (
    BudgetExceeded,
    FundYearClosed,
    IdempotencyConflict,
    InvalidState,
    NotFound,
    SelfApproval,
    TalentDeparted,
)
from ledger.domain.grants import Grant
from ledger.domain.instalments import InstalmentPlan
from ledger.domain.talents import Talent
from ledger.domain.values import Identifier, Slug, Text, Year
from ledger.engine.unit_of_work import UnitOfWork
from ledger.usecases.registry import ADDED_LATER, fingerprint, use_case

# --- commands ------------------------------------------------------------


@dataclass(frozen=True)
class ProposeGrant:
    grant_id: Identifier
    talent_id: Identifier
    fund_year: Year
    programme: Slug
    amount: Decimal
    policy_reference: Text
    reason: Text
    instalments: InstalmentPlan | None = field(default=None, metadata=ADDED_LATER)


@dataclass(frozen=True)
class ApproveGrant:
    grant_id: Identifier
    note: Text | None = None


@dataclass(frozen=True)
class RejectGrant:
    grant_id: Identifier
    reason: Text


@dataclass(frozen=True)
class RevokeGrant:
    grant_id: Identifier
    reason: Text


# --- decisions -----------------------------------------------------------


@use_case(
    ProposeGrant,
    role="clerk",
    refuses=(IdempotencyConflict, BudgetExceeded, FundYearClosed, TalentDeparted),
)
def propose_grant(uow: UnitOfWork, cmd: ProposeGrant) -> Grant:
    fp = fingerprint(cmd)
    if (original := uow.created_by(Grant, cmd.grant_id, fp)) is not None:
        return original
    talent = uow.refer(Talent, cmd.talent_id, "talent_id", "talent")
    talent.check_may_receive()
    fund_year = uow.refer(FundYear, cmd.fund_year, "fund_year", "fund year")
    if cmd.instalments is not None:
        cmd.instalments.check(cmd.amount)
    grant = Grant(
        cmd.grant_id,
        cmd.talent_id,
        cmd.fund_year,
        cmd.programme,
        cmd.amount,
        cmd.policy_reference,
        cmd.reason,
        fp,
        cmd.instalments.as_event() if cmd.instalments else None,
    )
    fund_year.reserve(grant)
    return uow.add(grant)


@use_case(ApproveGrant, role="approver", refuses=(NotFound, InvalidState, SelfApproval))
def approve_grant(uow: UnitOfWork, cmd: ApproveGrant) -> Grant:
    grant = uow.get(Grant, cmd.grant_id, "grant")
    grant.approve(cmd.note, uow.today())
    return grant


@use_case(RejectGrant, role="approver", refuses=(NotFound, InvalidState))
def reject_grant(uow: UnitOfWork, cmd: RejectGrant) -> Grant:
    grant = uow.get(Grant, cmd.grant_id, "grant")
    grant.reject(cmd.reason, uow.get(FundYear, grant.fund_year, "fund year"))
    return grant


@use_case(RevokeGrant, role="approver", refuses=(NotFound, InvalidState))
def revoke_grant(uow: UnitOfWork, cmd: RevokeGrant) -> Grant:
    grant = uow.get(Grant, cmd.grant_id, "grant")
    grant.revoke(cmd.reason, uow.get(FundYear, grant.fund_year, "fund year"))
    return grant
