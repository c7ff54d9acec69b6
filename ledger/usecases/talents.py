"""Talents: registered with their name sealed, departed, their personal data erased."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date

from ledger.domain.errors import IdempotencyConflict, InvalidState, NotFound
from ledger.domain.talents import Talent
from ledger.domain.values import BankAccount, Identifier, Slug, Text
from ledger.engine.unit_of_work import UnitOfWork
from ledger.usecases.personal import PersonalDataErased, Vault
from ledger.usecases.registry import ADDED_LATER, fingerprint, use_case

# --- commands ------------------------------------------------------------


@dataclass(frozen=True)
class RegisterTalent:
    talent_id: Identifier
    name: Text
    category: Slug
    employer: Text
    arrived_on: date
    service_commitment_until: date
    bank_account: BankAccount | None = field(default=None, metadata=ADDED_LATER)


@dataclass(frozen=True)
class DepartTalent:
    talent_id: Identifier
    departed_on: date
    reason: Text


# --- decisions -----------------------------------------------------------


@dataclass(frozen=True)
class SealedRegistration:
    """A registration ready to decide: its personal data replaced by keyed digests (what
    a retry compares, never the data), and sealed with the talent's data key."""

    registration: RegisterTalent
    sealed_name: str
    sealed_bank_account: str | None


def seal_registration(vault: Vault, cmd: RegisterTalent) -> SealedRegistration:
    Talent.check_commitment(cmd.arrived_on, cmd.service_commitment_until)
    try:
        key = vault.key_for_new(cmd.talent_id)
    except PersonalDataErased as e:
        raise IdempotencyConflict(f"{e}: its registration cannot be compared") from None
    account = cmd.bank_account
    digested = replace(cmd, name=key.digest(cmd.name), bank_account=account and key.digest(account))
    return SealedRegistration(digested, key.seal(cmd.name), account and key.seal(account))


@use_case(RegisterTalent, role="clerk", refuses=(IdempotencyConflict,), prepare=seal_registration)
def register_talent(uow: UnitOfWork, sealed: SealedRegistration) -> Talent:
    cmd = sealed.registration
    fp = fingerprint(cmd)
    if (original := uow.created_by(Talent, cmd.talent_id, fp)) is not None:
        return original
    talent = Talent(
        cmd.talent_id,
        sealed.sealed_name,
        cmd.category,
        cmd.employer,
        cmd.arrived_on,
        cmd.service_commitment_until,
        fp,
        sealed.sealed_bank_account,
    )
    return uow.add(talent)


@use_case(DepartTalent, role="clerk", refuses=(NotFound, InvalidState))
def depart_talent(uow: UnitOfWork, cmd: DepartTalent) -> Talent:
    talent = uow.get(Talent, cmd.talent_id, "talent")
    talent.depart(cmd.departed_on, cmd.reason)
    return talent


def record_erasure(uow: UnitOfWork, talent_id: str) -> Talent:
    """Record that a talent's data key was destroyed (`Ledger.forget_talent`)."""
    talent = uow.get(Talent, talent_id, "talent")
    talent.record_erasure()
    return talent
