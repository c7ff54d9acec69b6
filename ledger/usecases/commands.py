"""Commands: validated intentions, as the use cases receive them from any caller.

Each field is declared once, here, with the form its value must have
(`ledger.domain.values`); the HTTP layer derives its request bodies from these
classes. A create command's `fingerprint` is what makes retries safe: the same id
with the same fingerprint is a replay, the same id with another is an
`idempotency_conflict`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from ledger.domain.budget import LineKind
from ledger.domain.values import Currency, Identifier, Slug, Text, Year


def fingerprint(command: object) -> str:
    """SHA-256 of the command's canonical JSON: equal for bodies that mean the same.

    Stored in every created aggregate, so its value must never change: commands are
    flat, and their fields are read as they are (`asdict` copied each one deeply)."""
    canonical = json.dumps(vars(command), sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(f"{type(command).__name__}:{canonical}".encode()).hexdigest()


@dataclass(frozen=True)
class OpenFundYear:
    year: Year
    currency: Currency


@dataclass(frozen=True)
class Appropriate:
    year: Year
    appropriation_id: Identifier
    programme: Slug
    kind: LineKind
    amount: Decimal
    reference: Text


@dataclass(frozen=True)
class CloseFundYear:
    year: Year
    reason: Text


@dataclass(frozen=True)
class RegisterTalent:
    talent_id: Identifier
    name: Text
    category: Slug
    employer: Text
    arrived_on: date
    service_commitment_until: date


@dataclass(frozen=True)
class DepartTalent:
    talent_id: Identifier
    departed_on: date
    reason: Text


@dataclass(frozen=True)
class ProposeGrant:
    grant_id: Identifier
    talent_id: Identifier
    fund_year: Year
    programme: Slug
    amount: Decimal
    policy_reference: Text
    reason: Text


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


@dataclass(frozen=True)
class RecordPayment:
    payment_id: Identifier
    grant_id: Identifier
    amount: Decimal
    value_date: date
    bank_reference: Identifier


@dataclass(frozen=True)
class ReturnPayment:
    payment_id: Identifier
    returned_on: date
    reason: Text


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
