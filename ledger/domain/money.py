"""Money is a `Decimal` of whole fen, parsed only from the strict wire form.

Parsing is deliberately narrow: a client that sends `1e3`, `-5`, full-width digits or a JSON
number has a bug, and a financial API must say so instead of guessing.
"""

from __future__ import annotations

import re
from decimal import Decimal

MONEY_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,2})?$"
ZERO_PATTERN = r"^0+(\.0{1,2})?$"  # what MONEY_PATTERN matches that is not an amount
MAXIMUM = Decimal("999999999999.99")
FEN = Decimal("0.01")
ZERO = Decimal("0.00")

_MONEY_RE = re.compile(MONEY_PATTERN, re.ASCII)


class MoneyFormatError(ValueError):
    """The text is not a positive amount in the API's wire form (docs/api.md)."""


def parse_money(value: object) -> Decimal:
    """Parse a positive amount of at most 2 decimals, as `Decimal` quantized to the fen."""
    if not isinstance(value, str):
        raise MoneyFormatError('an amount must be a JSON string such as "3000.00"')
    if _MONEY_RE.fullmatch(value) is None:
        raise MoneyFormatError(
            "an amount is 1 to 12 ASCII digits with at most 2 decimals, no sign or spaces"
        )
    amount = Decimal(value).quantize(FEN)
    if amount <= 0:
        raise MoneyFormatError("an amount must be greater than zero")
    if amount > MAXIMUM:
        raise MoneyFormatError(f"an amount is at most {MAXIMUM}")
    return amount


def format_money(amount: Decimal) -> str:
    """The wire form of an amount: always exactly 2 decimals."""
    return str(amount.quantize(FEN))
