"""Matching a statement against the ledger's bank movements (docs/api.md, "Bank
statements and reconciliation"), without a database: every line lands in exactly one
bucket, and the ledger's payments of the period that the bank does not show are
`missing_in_bank`."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent
from hypothesis import given
from hypothesis import strategies as st

from ledger.adapters.statement_csv import HEADER, parse_statement
from ledger.domain.context import acting_as
from ledger.domain.errors import StatementUnbalanced
from ledger.domain.reconciliation import (
    BUCKETS,
    Balance,
    Movement,
    PreviousStatement,
    Reconciliation,
    Statement,
    balanced,
    counterparties,
    pack,
    reconcile,
    reconciliation_id,
    unpack,
    unpack_json,
)
from ledger.entrypoints.runtime import open_memory_ledger

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


# --- candidates and continuity (CONTRACT §6, second edition) -------------------------


def test_an_unknown_debit_lists_the_open_payments_of_its_amount_within_three_days() -> None:
    parsed = statement(
        "2024-03-10,BX-1,800.00,debit,x",  # line 2: unknown reference
        "2024-03-10,BR-C,800.00,debit,x",  # line 3: claims BR-C
        "2024-03-10,BX-2,800.00,credit,x",  # line 4: a credit is no payment
        "2024-03-10,BX-3,801.00,debit,x",  # line 5: no payment of its amount
    )
    ledger = [
        payment("BR-A", "800.00", "2024-03-13", "P-A"),  # 3 days after: a candidate
        payment("BR-B", "800.00", "2024-03-09", "P-B"),  # a day before: the nearest
        payment("BR-C", "800.00", "2024-03-10", "P-C"),  # claimed by line 3
        payment("BR-D", "800.00", "2024-03-06", "P-D"),  # 4 days before: too far
        payment("BR-E", "800.00", "2024-03-11", "P-E")._replace(reconciled=True),  # earlier
        payment("BR-F", "80.00", "2024-03-10", "P-F"),  # another amount
    ]

    report = reconcile(parsed, ledger)

    candidates = {e["line"]: e["candidates"] for e in report["unknown_in_ledger"]}
    assert candidates == {2: ["P-B", "P-A"], 4: [], 5: []}
    assert "candidates" not in report["matched"][0]


def test_of_many_candidates_the_nearest_ten_are_listed_and_all_counted() -> None:
    parsed = statement("2024-03-10,BX-1,1500.00,debit,x")
    run = [  # a run paid 30 the same on the 8th, and 30 on the 12th
        payment(f"BR-{n}", "1500.00", f"2024-03-{8 + 4 * (n % 2):02d}", f"P-{n:02d}")
        for n in range(60)
    ]

    (unknown,) = reconcile(parsed, run)["unknown_in_ledger"]

    assert unknown["candidates"] == [f"P-{n:02d}" for n in range(0, 20, 2)], "the 8th first"
    assert unknown["candidates_total"] == 60
    small = reconcile(parsed, run[:3])["unknown_in_ledger"][0]
    assert small["candidates"] == ["P-00", "P-02", "P-01"]
    assert "candidates_total" not in small


def test_a_payment_another_line_of_the_statement_claims_later_is_no_candidate() -> None:
    parsed = statement("2024-03-10,BX-1,800.00,debit,x", "2024-03-12,BR-A,800.00,debit,x")
    report = reconcile(parsed, [payment("BR-A", "800.00", "2024-03-10", "P-A")])
    assert report["unknown_in_ledger"][0]["candidates"] == []


def with_balances(parsed: Statement, opening: str, closing: str) -> Statement:
    first, last = parsed.period
    return replace(
        parsed,
        account="31050161373600001234",
        opening=Balance(Decimal(opening), first),
        closing=Balance(Decimal(closing), last),
    )


def test_a_statement_with_balances_reports_them_and_whether_it_carries_on() -> None:
    parsed = with_balances(statement("2024-04-02,BR-1,10.00,debit,x"), "990.00", "980.00")
    previous = PreviousStatement("R-march", Decimal("990.00"), date(2024, 3, 31))

    carried_on = reconcile(parsed, [], previous)
    broken = reconcile(parsed, [], previous._replace(closing=Decimal("-5.00")))

    assert carried_on["account"] == "31050161373600001234"
    assert carried_on["balances"] == {
        "opening": "990.00",
        "opening_on": "2024-04-02",
        "closing": "980.00",
        "closing_on": "2024-04-02",
    }
    assert carried_on["continuity"] == {
        "previous_reconciliation_id": "R-march",
        "previous_closing": "990.00",
        "opening": "990.00",
        "ok": True,
    }
    assert broken["continuity"]["ok"] is False
    assert broken["continuity"]["previous_closing"] == "-5.00"
    assert "continuity" not in reconcile(parsed, [], None), "no statement before it"
    no_balances = reconcile(statement("2024-04-02,BR-1,10.00,debit,x"), [], previous)
    assert not {"account", "balances", "continuity"} & no_balances.keys()


def test_balances_that_do_not_add_up_are_refused_naming_where_the_closing_is() -> None:
    parsed = statement("2024-04-02,BR-1,10.00,debit,x", "2024-04-03,BR-2,2.50,credit,x")
    assert balanced(with_balances(parsed, "100.00", "92.50"), 9, ":62F:") is not None
    with pytest.raises(StatementUnbalanced) as refused:
        balanced(with_balances(parsed, "100.00", "92.00"), 9, ":62F:")
    assert (refused.value.line, refused.value.field) == (9, ":62F:")
    assert refused.value.detail == (
        "line 9: the opening balance 100.00 and the lines (-7.50) make 92.50, but the closing "
        "balance is 92.00"
    )


def test_a_reconciliation_recorded_before_statements_had_balances_still_loads() -> None:
    """Its event as the code before the balances stored it (class version 2)."""
    mapper = open_memory_ledger().mapper
    balance, day = Decimal("100.00"), date(2024, 3, 31)
    with acting_as("treasury", "req-1"):
        recorded = Reconciliation(
            "R-1", "ab" * 32, pack({}), pack({}), "A-1", balance, day, balance, day
        )
    stored = mapper.to_stored_event(recorded.collect_events()[0])
    state = json.loads(stored.state)
    for name in ("account", "opening", "opening_on", "closing", "closing_on"):
        del state[name]
    state["class_version"] = 2
    old = StoredEvent(
        stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode()
    )

    loaded = mapper.to_domain_event(old)

    assert isinstance(loaded, Reconciliation.Imported)
    assert (loaded.account, loaded.opening, loaded.closing_on) == (None, None, None)
    assert loaded.mutate(None).sealed_counterparties == pack({})


def test_a_line_may_name_a_payment_by_its_id_as_a_runs_end_to_end_id_does() -> None:
    parsed = statement(
        "2024-03-01,P-1,100.00,debit,x",  # line 2: the EndToEndId a pain.001 gave P-1
        "2024-03-01,BK-1,100.00,debit,x",  # line 3: P-1 again, by its bank reference
        "2024-03-05,P-1,100.00,credit,x",  # line 4: P-1's return, by its id too
    )
    paid = payment("BK-1", "100.00", "2024-03-01", "P-1")
    back = returned("BK-1", "100.00", "2024-03-05")._replace(payment_id="P-1")

    report = reconcile(parsed, [paid, back])

    assert where(report) == {
        (2, "P-1"): "matched",
        (3, "BK-1"): "unknown_in_ledger",  # claimed once only
        (4, "P-1"): "matched",
    }
    assert report["matched"][0]["ledger"]["bank_reference"] == "BK-1"
