"""Demo data set (placeholder until written)."""

from __future__ import annotations

from ledger.application import LedgerApplication


def load_demo(ledger: LedgerApplication) -> None:
    raise NotImplementedError
