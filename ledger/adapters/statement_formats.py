"""The formats a bank statement may come in, by the name `ledger reconcile --profile`
gives them; each parses a whole file or refuses it (`StatementRejected`)."""

from __future__ import annotations

from collections.abc import Callable

from ledger.adapters.statement_camt import parse_camt053
from ledger.adapters.statement_csv import parse_cn_bank, parse_statement
from ledger.adapters.statement_mt940 import parse_mt940
from ledger.domain.reconciliation import Statement

PARSERS: dict[str, Callable[[bytes], Statement]] = {
    "ledger": parse_statement,  # the ledger's own CSV layout
    "cn-bank": parse_cn_bank,
    "camt.053": parse_camt053,
    "mt940": parse_mt940,
}
