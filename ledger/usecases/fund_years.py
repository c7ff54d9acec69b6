"""Fund years: opened, appropriated to programme lines, closed."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ledger.domain.base import is_retry
from ledger.domain.budget import Appropriation, FundYear, LineKind
from ledger.domain.errors import FundYearClosed, IdempotencyConflict, InvalidState, NotFound
from ledger.domain.values import Currency, Identifier, Slug, Text, Year
from ledger.engine.unit_of_work import UnitOfWork
from ledger.usecases.registry import fingerprint, use_case

# --- commands ------------------------------------------------------------


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


# --- decisions -----------------------------------------------------------


@use_case(OpenFundYear, role="admin", refuses=(IdempotencyConflict,))
def open_fund_year(uow: UnitOfWork, cmd: OpenFundYear) -> FundYear:
    fp = fingerprint(cmd)
    if (original := uow.created_by(FundYear, cmd.year, fp)) is not None:
        return original
    return uow.add(FundYear(cmd.year, cmd.currency, fp))


@use_case(Appropriate, role="admin", refuses=(NotFound, IdempotencyConflict, FundYearClosed))
def appropriate(uow: UnitOfWork, cmd: Appropriate) -> Appropriation:
    fund_year = uow.get(FundYear, cmd.year, "fund year")
    fp = fingerprint(cmd)
    existing = fund_year.appropriations.get(cmd.appropriation_id)
    if is_retry(existing, fp, f"appropriation {cmd.appropriation_id}"):
        assert existing is not None
        return existing
    appropriation = Appropriation(
        cmd.appropriation_id, cmd.programme, cmd.kind, cmd.amount, cmd.reference, fp
    )
    fund_year.appropriate(appropriation)
    return appropriation


@use_case(CloseFundYear, role="admin", refuses=(NotFound, InvalidState))
def close_fund_year(uow: UnitOfWork, cmd: CloseFundYear) -> FundYear:
    fund_year = uow.get(FundYear, cmd.year, "fund year")
    fund_year.close(cmd.reason)
    return fund_year
