"""Money parsing: the strict wire form of docs/api.md, "Conventions", and nothing else."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.domain.money import MAXIMUM, MoneyFormatError, format_money, parse_money


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3000.00", "3000.00"),
        ("12.5", "12.50"),
        ("200000", "200000.00"),
        ("0.01", "0.01"),
        ("999999999999.99", "999999999999.99"),
        ("007", "7.00"),
    ],
)
def test_accepts_the_contract_forms(text: str, expected: str) -> None:
    assert format_money(parse_money(text)) == expected


@pytest.mark.parametrize(
    "value",
    [
        1,
        1.5,
        None,
        True,
        "0",
        "0.00",
        "-1",
        "+1",
        "1e3",
        "1E3",
        "NaN",
        "Infinity",
        "1.234",
        "１００",
        "1 000",
        " 1",
        "1 ",
        "",
        "1.",
        ".5",
        "1,00",
        "1000000000000",
        "1\n",
        "٣",
        "1_000",
    ],
)
def test_refuses_everything_else(value: object) -> None:
    with pytest.raises(MoneyFormatError):
        parse_money(value)


@given(st.integers(min_value=1, max_value=int(MAXIMUM * 100)))
def test_every_fen_amount_round_trips(fen: int) -> None:
    text = f"{fen // 100}.{fen % 100:02d}"
    amount = parse_money(text)
    assert amount == Decimal(fen) / 100
    assert format_money(amount) == text
    assert parse_money(format_money(amount)) == amount


@given(st.text(max_size=20))
def test_any_text_parses_to_a_positive_fen_amount_or_is_refused(text: str) -> None:
    try:
        amount = parse_money(text)
    except MoneyFormatError:
        return
    assert Decimal("0.01") <= amount <= MAXIMUM
    assert amount == amount.quantize(Decimal("0.01"))
    assert text.isascii()
