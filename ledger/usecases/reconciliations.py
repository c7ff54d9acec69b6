"""Reconciliations: a bank statement matched against the ledger, recorded once."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.domain.reconciliation import Reconciliation, Statement
from ledger.engine.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class MatchedStatement:
    """A statement's reconciliation, matched before the decision (a large statement
    takes seconds, which no other writer should wait for)."""

    reconciliation_id: str
    statement: Statement
    report_packed: str
    sealed_counterparties: str


def record_reconciliation(uow: UnitOfWork, matched: MatchedStatement) -> Reconciliation:
    """The same statement again answers its first reconciliation and records nothing."""
    existing = uow.find(Reconciliation, matched.reconciliation_id)
    if existing is not None:
        return existing
    statement = matched.statement
    opening, closing = statement.opening, statement.closing
    return uow.add(
        Reconciliation(
            matched.reconciliation_id,
            statement.sha256,
            matched.report_packed,
            matched.sealed_counterparties,
            statement.account,
            opening.amount if opening else None,
            opening.on if opening else None,
            closing.amount if closing else None,
            closing.on if closing else None,
        )
    )
