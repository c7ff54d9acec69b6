"""A create command's fingerprint is stored with what it created and compared on every
retry: the same command must fingerprint to the same value in every release."""

from datetime import date
from decimal import Decimal

import pytest

from ledger.usecases.registry import fingerprint
from tests import commands as c


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            c.ProposeGrant(
                "G-1", "T-1", 2026, "settling_in", Decimal("1200.50"), "P-7", "新来的人才"
            ),
            "b47ed6200be3271fc304ab27134f5f97912ec8b7b71d5db5c9c42b3cf7d15afd",
        ),
        (
            c.GrantWaiver(
                "W-1",
                "T-1",
                2026,
                "rent",
                "A-101",
                date(2026, 1, 1),
                date(2026, 6, 30),
                Decimal("3000.00"),
            ),
            "fc44f10d49d6d733872cf3764ee96bc1fe65bf4ea1180c26464fd59037359f06",
        ),
        (
            c.ApproveGrant("G-1", None),
            "9dc88aa46c7a7a1592fe72fd87de1b51373103bd864044296133b9288a52bac1",
        ),
    ],
)
def test_fingerprints_never_change(command: object, expected: str) -> None:
    assert fingerprint(command) == expected


def test_fingerprint_tells_apart_amounts_that_differ_in_the_fen() -> None:
    one = c.ProposeGrant("G-1", "T-1", 2026, "settling_in", Decimal("1200.50"), "P-7", "r")
    other = c.ProposeGrant("G-1", "T-1", 2026, "settling_in", Decimal("1200.51"), "P-7", "r")
    assert fingerprint(one) != fingerprint(other)
