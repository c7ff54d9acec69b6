"""Clawbacks: assessed against a grant's net paid, recovered through the bank."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from ledger.domain.base import is_retry
from ledger.domain.clawbacks import Clawback, Recovery
from ledger.domain.errors import (
    ClawbackExceedsPaid,
    DuplicateBankReference,
    IdempotencyConflict,
    NotFound,
    Overpayment,
)
from ledger.domain.grants import Grant
from ledger.domain.values import Identifier, Text
from ledger.engine.unit_of_work import UnitOfWork
from ledger.usecases.payments import claim_bank_reference
from ledger.usecases.registry import fingerprint, use_case

# --- commands ------------------------------------------------------------


@dataclass(frozen=True)
class AssessClawback:
    clawback_id: Identifier
    grant_id: Identifier
    amount: Decimal
    reason: Text


@dataclass(frozen=True)
class RecordRecovery:
    clawback_id: Identifier
    recovery_id: Identifier
    amount: Decimal
    value_date: date
    bank_reference: Identifier


# --- decisions -----------------------------------------------------------


@use_case(AssessClawback, role="clerk", refuses=(IdempotencyConflict, ClawbackExceedsPaid))
def assess_clawback(uow: UnitOfWork, cmd: AssessClawback) -> Clawback:
    fp = fingerprint(cmd)
    if (original := uow.created_by(Clawback, cmd.clawback_id, fp)) is not None:
        return original
    grant = uow.refer(Grant, cmd.grant_id, "grant_id", "grant")
    return uow.add(grant.assess_clawback(cmd.clawback_id, cmd.amount, cmd.reason, fp))


@use_case(
    RecordRecovery,
    role="treasury",
    refuses=(NotFound, IdempotencyConflict, Overpayment, DuplicateBankReference),
)
def record_recovery(uow: UnitOfWork, cmd: RecordRecovery) -> tuple[Clawback, Recovery]:
    clawback = uow.get(Clawback, cmd.clawback_id, "clawback")
    fp = fingerprint(cmd)
    existing = clawback.recoveries.get(cmd.recovery_id)
    if is_retry(existing, fp, f"recovery {cmd.recovery_id}"):
        assert existing is not None
        return clawback, existing
    claim_bank_reference(
        uow, cmd.bank_reference, clawback_id=cmd.clawback_id, recovery_id=cmd.recovery_id
    )
    recovery = Recovery(cmd.recovery_id, cmd.amount, cmd.value_date, cmd.bank_reference, fp)
    clawback.recover(recovery)
    return clawback, recovery
