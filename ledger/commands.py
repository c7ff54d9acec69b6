"""Commands: validated intentions, as the application receives them from any caller.

A create command's `fingerprint` is what makes retries safe: the same id with the
same fingerprint is a replay, the same id with another is an `idempotency_conflict`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal


def fingerprint(command: object) -> str:
    """SHA-256 of the command's canonical JSON: equal for bodies that mean the same.

    Stored in every created aggregate, so its value must never change: commands are
    flat, and their fields are read as they are (`asdict` copied each one deeply)."""
    canonical = json.dumps(vars(command), sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(f"{type(command).__name__}:{canonical}".encode()).hexdigest()


@dataclass(frozen=True)
class OpenFundYear:
    year: int
    currency: str


@dataclass(frozen=True)
class Appropriate:
    year: int
    appropriation_id: str
    programme: str
    kind: str
    amount: Decimal
    reference: str


@dataclass(frozen=True)
class CloseFundYear:
    year: int
    reason: str


@dataclass(frozen=True)
class RegisterTalent:
    talent_id: str
    name: str
    category: str
    employer: str
    arrived_on: date
    service_commitment_until: date


@dataclass(frozen=True)
class DepartTalent:
    talent_id: str
    departed_on: date
    reason: str


@dataclass(frozen=True)
class ProposeGrant:
    grant_id: str
    talent_id: str
    fund_year: int
    programme: str
    amount: Decimal
    policy_reference: str
    reason: str


@dataclass(frozen=True)
class ApproveGrant:
    grant_id: str
    note: str | None


@dataclass(frozen=True)
class RejectGrant:
    grant_id: str
    reason: str


@dataclass(frozen=True)
class RevokeGrant:
    grant_id: str
    reason: str


@dataclass(frozen=True)
class GrantWaiver:
    waiver_id: str
    talent_id: str
    fund_year: int
    programme: str
    apartment: str
    start_on: date
    end_on: date
    monthly_rent: Decimal


@dataclass(frozen=True)
class EndWaiver:
    waiver_id: str
    ended_on: date


@dataclass(frozen=True)
class RecordPayment:
    payment_id: str
    grant_id: str
    amount: Decimal
    value_date: date
    bank_reference: str


@dataclass(frozen=True)
class ReturnPayment:
    payment_id: str
    returned_on: date
    reason: str


@dataclass(frozen=True)
class AssessClawback:
    clawback_id: str
    grant_id: str
    amount: Decimal
    reason: str


@dataclass(frozen=True)
class RecordRecovery:
    clawback_id: str
    recovery_id: str
    amount: Decimal
    value_date: date
    bank_reference: str
