"""Matching a statement against the ledger's bank movements (docs/api.md, "Bank
statements and reconciliation"), without a database: every line lands in exactly one
bucket, and the ledger's payments of the period that the bank does not show are
`missing_in_bank`."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ledger.adapters.statement_csv import HEADER, parse_statement
from ledger.domain.reconciliation import (
    BUCKETS,
    Movement,
    Statement,
    counterparties,
    pack,
    reconcile,
    reconciliation_id,
    unpack,
    unpack_json,
)

LINE_BUCKETS = ("matched", "amount_mismatch", "date_mismatch", "unknown_in_ledger")
MONEY_RE = re.compile(r"^[0-9]+\.[0-9]{2}$")


def statement(*lines: str) -> Statement:
    text = ",".join(HEADER) + "\n" + "".join(line + "\n" for line in lines)
    return parse_statement(text.encode())


def payment(ref: str, amount: str, day: str, payment_id: str = "") -> Movement:
    return Movement(
        "payment", "debit", ref, Decimal(amount), date.fromisoformat(day), payment_id or "P" + ref
    )


def returned(ref: str, amount: str, day: str) -> Movement:
    return Movement(
        "return", "credit", ref, Decimal(amount), date.fromisoformat(day), payment_id="P" + ref
    )


def recovery(ref: str, amount: str, day: str) -> Movement:
    return Movement(
        "recovery",
        "credit",
        ref,
        Decimal(amount),
        date.fromisoformat(day),
        clawback_id="C-1",
        recovery_id="R" + ref,
    )


def where(report: dict[str, Any]) -> dict[tuple[int, str], str]:
    """(line, bank reference) -> the bucket it landed in; fails if a line is in two."""
    found: dict[tuple[int, str], str] = {}
    for bucket in LINE_BUCKETS:
        for entry in report[bucket]:
            key = (entry["line"], entry["bank_reference"])
            assert key not in found, f"line {key} in {found.get(key)} and {bucket}"
            found[key] = bucket
    return found


def assert_entries_well_formed(report: dict[str, Any]) -> None:
    for bucket in BUCKETS:
        for entry in report[bucket]:
            assert isinstance(entry["bank_reference"], str)
            assert entry["bank_reference"]
            assert MONEY_RE.fullmatch(entry["amount"]), entry
            date.fromisoformat(entry["value_date"])


# --- the statement that hits every bucket -----------------------------------------

LEDGER = [
    payment("BR-1", "5000.00", "2024-03-01"),  # bank 2 days later: matched
    payment("BR-2", "3000.00", "2024-03-05"),  # bank exactly 3 days later: matched
    payment("BR-3", "2000.00", "2024-03-10"),  # bank says 2100: amount_mismatch
    payment("BR-4", "1000.00", "2024-03-12"),  # bank 4 days later: date_mismatch
    payment("BR-5", "1500.00", "2024-03-15"),  # paid and returned: both matched
    returned("BR-5", "1500.00", "2024-03-18"),
    payment("BR-6", "800.00", "2024-03-20"),  # no line: missing_in_bank
    payment("BR-7", "700.00", "2024-06-01"),  # outside the period: not listed
    payment("BR-8", "650.00", "2024-03-02"),  # the day before the period: not listed
    payment("BR-9", "600.00", "2024-03-22"),  # bank 5 days earlier: date_mismatch
    recovery("RB-1", "500.00", "2024-03-25"),  # recovered, bank a day later: matched
]
EVERY_BUCKET = statement(
    "2024-03-03,BR-1,5000.00,debit,张伟",  # line 2
    "2024-03-08,BR-2,3000,debit,张伟",  # line 3
    "2024-03-10,BR-3,2100.00,debit,张伟",  # line 4
    "2024-03-16,BR-4,1000.00,debit,张伟",  # line 5
    "2024-03-15,BR-5,1500.00,debit,张伟",  # line 6
    "2024-03-18,BR-5,1500.00,credit,张伟",  # line 7
    "2024-03-17,BR-9,600.00,debit,张伟",  # line 8
    "2024-03-26,RB-1,500.00,credit,张伟",  # line 9
    "2024-03-22,BR-X,999.00,debit,unknown",  # line 10
    "2024-03-03,BR-1,5000.00,debit,张伟",  # line 11: a duplicate of line 2
)


def test_a_statement_hits_every_bucket() -> None:
    report = reconcile(EVERY_BUCKET, LEDGER)

    assert where(report) == {
        (2, "BR-1"): "matched",
        (3, "BR-2"): "matched",
        (4, "BR-3"): "amount_mismatch",
        (5, "BR-4"): "date_mismatch",
        (6, "BR-5"): "matched",
        (7, "BR-5"): "matched",
        (8, "BR-9"): "date_mismatch",
        (9, "RB-1"): "matched",
        (10, "BR-X"): "unknown_in_ledger",
        (11, "BR-1"): "unknown_in_ledger",
    }
    assert [e["bank_reference"] for e in report["missing_in_bank"]] == ["BR-6"]
    assert report["missing_in_bank"][0]["amount"] == "800.00"
    assert report["missing_in_bank"][0]["value_date"] == "2024-03-20"
    assert report["period"] == {"from": "2024-03-03", "to": "2024-03-26"}
    assert report["line_count"] == 10
    assert sum(len(report[b]) for b in LINE_BUCKETS) == len(EVERY_BUCKET.lines)
    assert_entries_well_formed(report)


def test_matches_name_the_ledger_movement_they_matched() -> None:
    report = reconcile(EVERY_BUCKET, LEDGER)
    ledger = {(e["line"]): e["ledger"] for e in report["matched"]}

    assert ledger[2]["kind"] == "payment"
    assert ledger[2]["payment_id"] == "PBR-1"
    assert ledger[7]["kind"] == "return"
    assert ledger[7]["value_date"] == "2024-03-18"
    assert ledger[9]["kind"] == "recovery"
    assert ledger[9]["recovery_id"] == "RRB-1"
    assert all(e["ledger"] is None for e in report["unknown_in_ledger"])


def test_dates_match_up_to_three_days_either_way() -> None:
    base = date(2024, 5, 10)
    for shift, bucket in [
        (-4, "date_mismatch"),
        (-3, "matched"),
        (0, "matched"),
        (3, "matched"),
        (4, "date_mismatch"),
        (40, "date_mismatch"),
    ]:
        day = (base + timedelta(days=shift)).isoformat()
        report = reconcile(
            statement(f"{day},BR-1,10.00,debit,x"), [payment("BR-1", "10", base.isoformat())]
        )
        assert where(report) == {(2, "BR-1"): bucket}, shift


def test_a_return_is_known_by_its_payment_reference_and_returned_on() -> None:
    ledger = [payment("BR-1", "10", "2024-05-01"), returned("BR-1", "10", "2024-05-20")]
    on_time = statement("2024-05-21,BR-1,10.00,credit,x")
    late = statement("2024-05-30,BR-1,10.00,credit,x")
    short = statement("2024-05-20,BR-1,9.00,credit,x")

    assert where(reconcile(on_time, ledger)) == {(2, "BR-1"): "matched"}
    assert where(reconcile(late, ledger)) == {(2, "BR-1"): "date_mismatch"}
    assert where(reconcile(short, ledger)) == {(2, "BR-1"): "amount_mismatch"}


def test_a_credit_for_a_payment_that_was_never_returned_is_not_matched() -> None:
    report = reconcile(
        statement("2024-05-01,BR-1,10.00,credit,x"), [payment("BR-1", "10", "2024-05-01")]
    )
    assert where(report)[2, "BR-1"] != "matched"
    assert sum(len(report[b]) for b in LINE_BUCKETS) == 1


def test_a_duplicated_line_is_unknown_because_its_movement_was_already_claimed() -> None:
    line = "2024-05-01,BR-1,10.00,debit,x"
    report = reconcile(statement(line, line, line), [payment("BR-1", "10", "2024-05-01")])

    assert where(report) == {
        (2, "BR-1"): "matched",
        (3, "BR-1"): "unknown_in_ledger",
        (4, "BR-1"): "unknown_in_ledger",
    }
    assert report["missing_in_bank"] == []


def test_missing_in_bank_lists_only_unclaimed_payments_inside_the_period() -> None:
    ledger = [
        payment("BR-0", "1", "2024-04-30"),  # the day before the period
        payment("BR-1", "1", "2024-05-01"),  # first day, on the statement
        payment("BR-2", "2", "2024-05-01"),  # first day, not on it
        payment("BR-3", "3", "2024-05-15"),  # inside, on it with another amount
        payment("BR-4", "4", "2024-05-31"),  # last day, not on it
        payment("BR-5", "5", "2024-06-01"),  # the day after
        returned("BR-6", "6", "2024-05-10"),  # a return is not a payment
        recovery("RB-7", "7", "2024-05-10"),  # nor is a recovery
    ]
    report = reconcile(
        statement(
            "2024-05-01,BR-1,1.00,debit,x",
            "2024-05-15,BR-3,3.50,debit,x",
            "2024-05-31,BR-X,9.00,credit,x",
        ),
        ledger,
    )

    assert [e["bank_reference"] for e in report["missing_in_bank"]] == ["BR-2", "BR-4"]
    assert [e["ledger"]["payment_id"] for e in report["missing_in_bank"]] == ["PBR-2", "PBR-4"]
    assert_entries_well_formed(report)


def test_the_reconciliation_id_is_named_by_the_file() -> None:
    one = statement("2024-05-01,BR-1,10.00,debit,x")
    again = statement("2024-05-01,BR-1,10.00,debit,x")
    other = statement("2024-05-01,BR-1,10.01,debit,x")

    assert reconciliation_id(one) == reconciliation_id(again)
    assert reconciliation_id(one) != reconciliation_id(other)
    assert reconcile(one, [])["reconciliation_id"] == reconciliation_id(one)
    assert reconcile(one, []) == reconcile(again, [])


# --- any statement against any ledger -----------------------------------------------

REFS = ["BR-1", "BR-2", "BR-3", "RB-1"]
days = st.integers(min_value=0, max_value=30).map(lambda n: date(2024, 5, 1) + timedelta(n))
small_amounts = st.sampled_from(["1.00", "2.00", "2.50"])
movements = st.lists(
    st.tuples(
        st.sampled_from(["payment", "return", "recovery"]),
        st.sampled_from(REFS),
        small_amounts,
        days,
    ),
    max_size=8,
)
lines = st.lists(
    st.tuples(
        days, st.sampled_from([*REFS, "BR-X"]), small_amounts, st.sampled_from(["debit", "credit"])
    ),
    min_size=1,
    max_size=12,
)


def _movement(kind: str, ref: str, amount: str, day: date) -> Movement:
    return {"payment": payment, "return": returned, "recovery": recovery}[kind](
        ref, amount, day.isoformat()
    )


@given(lines=lines, moves=movements)
def test_every_line_is_in_exactly_one_bucket_and_every_movement_claimed_once(
    lines: list[tuple[date, str, str, str]], moves: list[tuple[str, str, str, date]]
) -> None:
    parsed = statement(*(f"{d},{r},{a},{dr},x" for d, r, a, dr in lines))
    ledger = [_movement(*m) for m in moves]

    report = reconcile(parsed, ledger)

    found = where(report)
    assert sorted(line for line, _ in found) == list(range(2, len(lines) + 2))
    assert sum(len(report[b]) for b in LINE_BUCKETS) == len(lines) == report["line_count"]
    # a line is unknown only when no unclaimed movement of its reference and direction
    # was left for it: so claimed movements never outnumber the ledger's
    for direction in ("debit", "credit"):
        for ref in {r for _, r, _, _ in lines}:
            known = sum(1 for m in ledger if (m.direction, m.bank_reference) == (direction, ref))
            claimed = sum(
                1
                for b in LINE_BUCKETS[:3]
                for e in report[b]
                if (e["direction"], e["bank_reference"]) == (direction, ref)
            )
            on_statement = sum(1 for _, r, _, dr in lines if (dr, r) == (direction, ref))
            assert claimed == min(known, on_statement)
    for entry in report["matched"]:
        movement = entry["ledger"]
        assert (entry["bank_reference"], entry["amount"]) == (
            movement["bank_reference"],
            movement["amount"],
        )
        gap = date.fromisoformat(entry["value_date"]) - date.fromisoformat(movement["value_date"])
        assert abs(gap.days) <= 3
    first, last = parsed.period
    assert all(
        first <= date.fromisoformat(e["value_date"]) <= last for e in report["missing_in_bank"]
    )
    assert_entries_well_formed(report)


def test_a_packed_report_unpacks_to_the_same_report_and_never_holds_a_counterparty() -> None:
    """A counterparty is a person's name: kept only sealed, apart (`counterparties`)."""
    parsed = statement("2024-03-01,BR-1,10.00,debit,张伟", "2024-03-02,BR-2,1.00,debit,李娜")
    mine = payment("BR-1", "10.00", "2024-03-01")._replace(talent_id="T-1")
    report = reconcile(parsed, [mine])
    packed = pack(report)
    assert unpack(packed) == report
    text = unpack_json(packed)
    assert "张伟".encode() not in text and "李娜".encode() not in text
    assert report["matched"][0]["ledger"]["talent_id"] == "T-1"
    assert counterparties(parsed, report) == {2: ("T-1", "张伟")}, "a line no talent's: none"
