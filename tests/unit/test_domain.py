"""The aggregates alone, without a database: rules, state and the events they record.

Every command runs inside `acting_as`, as the application does for a request, so
that the stamp each event carries can be checked too.
"""

from __future__ import annotations

from collections.abc import Iterator
from copy import deepcopy
from datetime import date
from decimal import Decimal
from functools import reduce
from typing import Any

import pytest

from ledger.domain.base import LedgerAggregate, stream_id
from ledger.domain.budget import Appropriation, FundYear
from ledger.domain.clawbacks import Clawback, Recovery
from ledger.domain.context import acting_as, actor_cvar, request_id_cvar
from ledger.domain.dates import calendar_months
from ledger.domain.errors import (
    BudgetExceeded,
    ClawbackExceedsPaid,
    FundYearClosed,
    InvalidState,
    Overpayment,
    SelfApproval,
    ValidationFailed,
)
from ledger.domain.grants import Grant
from ledger.domain.payments import BankReference, Payment
from ledger.domain.talents import Talent
from ledger.domain.waivers import RentWaiver

D = Decimal
APPROVED_ON = date(2024, 3, 1)


def names(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def drain(aggregate: LedgerAggregate) -> list[Any]:
    return list(aggregate.collect_events())


def rebuilt(events: list[Any]) -> Any:
    """The aggregate these events describe, replayed as the repository would."""
    return reduce(lambda aggregate, e: e.mutate(aggregate), events, None)


@pytest.fixture(autouse=True)
def outside_any_request() -> Iterator[None]:
    """Each test starts (and must leave the context) as no one in particular."""
    assert (actor_cvar.get(), request_id_cvar.get()) == ("system", "-")
    yield
    assert (actor_cvar.get(), request_id_cvar.get()) == ("system", "-")


def appropriation(
    appropriation_id: str, programme: str, kind: str, amount: str, reference: str = "ref"
) -> Appropriation:
    return Appropriation(appropriation_id, programme, kind, D(amount), reference, "fp")


def open_year(cash: str = "1000.00", in_kind: str = "600.00") -> FundYear:
    """Fund year 2024 with a cash line `settling_in` and an in-kind line `housing`."""
    with acting_as("admin", "req-open"):
        fund_year = FundYear(2024, "CNY", "fp")
        fund_year.appropriate(appropriation("A-1", "settling_in", "cash", cash))
        fund_year.appropriate(appropriation("A-2", "housing", "in_kind", in_kind))
    drain(fund_year)
    return fund_year


PLAN = {"count": 12, "first_due_on": date(2024, 1, 31), "interval_months": 1}


def proposed(
    amount: str = "1000.00",
    proposer: str = "clerk",
    grant_id: str = "G-1",
    programme: str = "settling_in",
) -> Grant:
    with acting_as(proposer, "req-propose"):
        grant = Grant(grant_id, "T-1", 2024, programme, D(amount), "沪人才〔2024〕1号", "why", "fp")
    drain(grant)
    return grant


def approved(amount: str = "1000.00") -> Grant:
    grant = proposed(amount)
    with acting_as("approver", "req-approve"):
        grant.approve("ok", APPROVED_ON)
    drain(grant)
    return grant


def reserved(amount: str = "1000.00", *, approve: bool = False) -> tuple[FundYear, Grant]:
    """A grant whose amount its fund year reserved (and approved, if asked)."""
    fund_year = open_year(cash="5000.00")
    grant = approved(amount) if approve else proposed(amount)
    with acting_as("clerk", "req-reserve"):
        fund_year.reserve(grant)
    drain(fund_year)
    return fund_year, grant


def released(fund_year: FundYear) -> list[tuple[str, Decimal]]:
    """What the fund year's new events released, by benefit."""
    return [(e.benefit_id, e.amount) for e in drain(fund_year) if type(e).__name__ == "Released"]


def talent(arrived_on: date = date(2024, 3, 1)) -> Talent:
    with acting_as("clerk", "req-talent"):
        registered = Talent("T-1", "李雷", "A", "Acme", arrived_on, date(2027, 2, 28), "fp")
    drain(registered)
    return registered


def payment(amount: str = "400.00", value_date: date = date(2024, 5, 10)) -> Payment:
    grant = approved(amount)
    with acting_as("treasury", "req-pay"):
        paid = grant.pay("P-1", D(amount), value_date, "B-1", "fp")
    drain(paid)
    return paid


def pay(grant: Grant, payment_id: str, amount: str) -> Payment:
    """A payment of `grant` on a fixed value date and a bank reference of its own."""
    return grant.pay(payment_id, D(amount), date(2024, 5, 10), f"B-{payment_id}", "fp")


def waiver(
    start_on: date = date(2024, 3, 10),
    end_on: date = date(2024, 8, 20),
    monthly_rent: str = "1500.00",
    programme: str = "housing",
) -> RentWaiver:
    with acting_as("clerk", "req-waive"):
        granted = RentWaiver.grant(
            "W-1", "T-1", 2024, programme, "Apt 3-201", start_on, end_on, D(monthly_rent), "fp"
        )
    drain(granted)
    return granted


def clawback(amount: str = "300.00") -> Clawback:
    grant = approved(amount)
    with acting_as("treasury", "req-pay"):
        pay(grant, "P-1", amount)
    with acting_as("clerk", "req-claw"):
        assessed = grant.assess_clawback("C-1", D(amount), "left", "fp")
    drain(assessed)
    return assessed


def recovery(recovery_id: str, amount: str) -> Recovery:
    return Recovery(recovery_id, D(amount), date(2024, 9, 1), f"B-{recovery_id}", "fp")


# --- calendar months and stream ids --------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "months"),
    [
        (date(2024, 1, 15), date(2024, 3, 1), 3),
        (date(2024, 5, 1), date(2024, 5, 31), 1),
        (date(2024, 5, 17), date(2024, 5, 17), 1),
        (date(2024, 1, 1), date(2024, 12, 31), 12),
        (date(2024, 1, 31), date(2024, 2, 1), 2),
        (date(2024, 2, 29), date(2024, 3, 1), 2),
        (date(2023, 12, 31), date(2024, 1, 1), 2),
        (date(2023, 11, 30), date(2025, 2, 1), 16),
    ],
)
def test_calendar_months_count_whole_calendar_months_both_included(
    start: date, end: date, months: int
) -> None:
    assert calendar_months(start, end) == months


def test_stream_ids_are_deterministic_and_namespaced_by_kind() -> None:
    assert stream_id("grants", "G-1") == stream_id("grants", "G-1")
    assert stream_id("grants", "G-1") != stream_id("grants", "G-2")
    assert stream_id("grants", "G-1") != stream_id("payments", "G-1")
    assert str(stream_id("grants", "G-1")) == "d9cf19b4-5ba6-5500-b77d-1ceeaad880f1"


def test_each_aggregate_lives_in_the_stream_of_its_business_key() -> None:
    assert open_year().id == FundYear.create_id(2024) == stream_id("fund-years", "2024")
    assert proposed().id == Grant.create_id("G-1") == stream_id("grants", "G-1")
    assert talent().id == Talent.create_id("T-1") == stream_id("talents", "T-1")
    assert payment().id == Payment.create_id("P-1") == stream_id("payments", "P-1")
    assert waiver().id == RentWaiver.create_id("W-1") == stream_id("rent-waivers", "W-1")
    assert clawback().id == Clawback.create_id("C-1") == stream_id("clawbacks", "C-1")
    with acting_as("treasury", "req-ref"):
        claim = BankReference.claim(None, "B-1", payment_id="P-1")
    assert claim.id == BankReference.create_id("B-1") == stream_id("bank-references", "B-1")
    ids = {FundYear.create_id(2024), Grant.create_id("2024"), Talent.create_id("2024")}
    assert len(ids) == 3


# --- fund years -----------------------------------------------------------------------


def test_a_fund_year_opens_empty_and_appropriations_add_to_a_line() -> None:
    with acting_as("admin", "req-1"):
        fund_year = FundYear(2024, "CNY", "fp")
        assert (fund_year.year, fund_year.currency, fund_year.status) == (2024, "CNY", "open")
        assert fund_year.lines == {}
        fund_year.appropriate(appropriation("A-1", "settling_in", "cash", "1000.00"))
        fund_year.appropriate(appropriation("A-2", "settling_in", "cash", "250.50"))
    line = fund_year.lines["settling_in"]
    assert (line.kind, line.appropriated, line.committed, line.available) == (
        "cash",
        D("1250.50"),
        D("0"),
        D("1250.50"),
    )
    assert set(fund_year.appropriations) == {"A-1", "A-2"}
    events = drain(fund_year)
    assert names(events) == ["Opened", "Appropriated", "Appropriated"]
    assert events[2].amount == D("250.50")


def test_an_appropriation_of_the_other_kind_to_a_line_is_refused() -> None:
    fund_year = open_year()
    with acting_as("admin", "req-1"), pytest.raises(ValidationFailed) as refused:
        fund_year.appropriate(appropriation("A-3", "settling_in", "in_kind", "10.00"))
    assert refused.value.field == "kind"
    assert drain(fund_year) == []
    assert fund_year.lines["settling_in"].appropriated == D("1000.00")


def test_reserve_commits_budget_up_to_exactly_what_is_available() -> None:
    fund_year = open_year(cash="1000.00")
    with acting_as("clerk", "req-1"):
        fund_year.reserve(proposed("999.99", grant_id="G-1"))
        fund_year.reserve(proposed("0.01", grant_id="G-2"))
    line = fund_year.lines["settling_in"]
    assert (line.committed, line.available) == (D("1000.00"), D("0.00"))
    events = drain(fund_year)
    assert names(events) == ["Reserved", "Reserved"]
    assert (events[0].programme, events[0].amount, events[0].benefit, events[0].benefit_id) == (
        "settling_in",
        D("999.99"),
        "grant",
        "G-1",
    )


def test_a_waiver_reserves_its_value_on_an_in_kind_line_within_its_year() -> None:
    fund_year = open_year(in_kind="9000.00")
    with acting_as("clerk", "req-1"):
        fund_year.reserve(waiver(date(2024, 3, 10), date(2024, 8, 20), "1500.00"))
    assert fund_year.lines["housing"].committed == D("9000.00")
    (reserved,) = drain(fund_year)
    assert (reserved.benefit, reserved.benefit_id, reserved.amount) == (
        "waiver",
        "W-1",
        D("9000.00"),
    )
    for start_on, end_on, field in [
        (date(2023, 12, 1), date(2024, 1, 31), "start_on"),
        (date(2024, 12, 1), date(2025, 1, 31), "end_on"),
    ]:
        with acting_as("clerk", "req-2"), pytest.raises(ValidationFailed) as refused:
            fund_year.reserve(waiver(start_on, end_on, "1.00"))
        assert refused.value.field == field
    assert drain(fund_year) == []


def test_a_copy_shares_no_mutable_state_with_its_original() -> None:
    fund_year = open_year(cash="1000.00")
    with acting_as("clerk", "req-1"):
        fund_year.reserve(proposed("100.00", grant_id="G-1"))
    copy = fund_year.copy()
    assert copy is not fund_year and vars(copy).keys() == vars(fund_year).keys()
    assert copy.version == fund_year.version and copy.lines == fund_year.lines
    with acting_as("clerk", "req-2"):
        copy.reserve(proposed("900.00", grant_id="G-2"))
    assert fund_year.lines["settling_in"].committed == D("100.00")
    assert copy.lines["settling_in"].committed == D("1000.00")
    assert names(drain(fund_year)) == ["Reserved"]
    assert [e.benefit_id for e in drain(copy)] == ["G-1", "G-2"]


def test_a_copy_shares_the_values_that_never_change_and_copies_what_can() -> None:
    """The engine's copies (`LedgerAggregate.copy`): a grant's instalment plan is
    shared, its holdings (a dict of dicts) are not, and the copy is what `deepcopy`
    makes of it."""
    with acting_as("clerk", "req-propose"):
        grant = Grant("G-1", "T-1", 2024, "rent_subsidy", D("1200.00"), "p", "r", "fp", PLAN)
    with acting_as("approver", "req-approve"):
        grant.approve("ok", APPROVED_ON)
    with acting_as("treasury", "req-hold"):
        grant.hold("R-1", grant.payable_instalments(date(2024, 2, 29)))
    drain(grant)
    copy = grant.copy()
    assert vars(copy) == vars(deepcopy(grant)) == vars(grant)
    assert copy.plan is grant.plan
    assert copy.held is not grant.held and copy.held["R-1"] is not grant.held["R-1"]
    with acting_as("treasury", "req-settle"):
        copy.release("R-1", 1, D("100.00"))
    assert grant.held == {"R-1": {1: D("100.00"), 2: D("100.00")}}
    assert copy.held == {"R-1": {2: D("100.00")}}
    assert drain(grant) == [] and names(drain(copy)) == ["Released"]


def test_reserving_more_than_available_is_budget_exceeded_and_records_nothing() -> None:
    fund_year = open_year(cash="1000.00")
    with acting_as("clerk", "req-1"):
        fund_year.reserve(proposed("600.00", grant_id="G-1"))
        drain(fund_year)
        with pytest.raises(BudgetExceeded):
            fund_year.reserve(proposed("400.01", grant_id="G-2"))
    assert drain(fund_year) == []
    assert fund_year.lines["settling_in"].committed == D("600.00")


@pytest.mark.parametrize(
    ("programme", "kind"),
    [("settling_in", "in_kind"), ("housing", "cash"), ("project_support", "cash")],
)
def test_reserving_on_a_missing_line_or_one_of_the_other_kind_is_refused(
    programme: str, kind: str
) -> None:
    fund_year = open_year()
    benefit = (
        proposed("1.00", programme=programme)
        if kind == "cash"
        else waiver(monthly_rent="1.00", programme=programme)
    )
    with acting_as("clerk", "req-1"), pytest.raises(ValidationFailed) as refused:
        fund_year.reserve(benefit)
    assert refused.value.field == "programme"
    assert drain(fund_year) == []


def test_release_gives_budget_back_and_releasing_nothing_records_nothing() -> None:
    fund_year = open_year(in_kind="600.00")
    granted = waiver(date(2024, 1, 1), date(2024, 6, 30), "100.00")
    with acting_as("clerk", "req-1"):
        fund_year.reserve(granted)
        fund_year.release(granted, D("200.00"))
        fund_year.release(granted, D("0.00"))
    assert fund_year.lines["housing"].committed == D("400.00")
    events = drain(fund_year)
    assert names(events) == ["Reserved", "Released"]
    assert (events[1].amount, events[1].benefit, events[1].benefit_id) == (
        D("200.00"),
        "waiver",
        "W-1",
    )


def test_a_closed_fund_year_refuses_new_commitments_but_still_releases() -> None:
    fund_year = open_year()
    grant = proposed("100.00")
    with acting_as("clerk", "req-1"):
        fund_year.reserve(grant)
    with acting_as("admin", "req-2"):
        fund_year.close("year end")
    assert fund_year.status == "closed"
    drain(fund_year)
    with acting_as("admin", "req-3"):
        with pytest.raises(FundYearClosed):
            fund_year.appropriate(appropriation("A-9", "settling_in", "cash", "1.00"))
        with pytest.raises(FundYearClosed):
            fund_year.reserve(proposed("1.00", grant_id="G-2"))
        fund_year.release(grant, D("100.00"))
    assert names(drain(fund_year)) == ["Released"]
    assert fund_year.lines["settling_in"].committed == D("0")


def test_closing_again_with_the_same_reason_records_nothing_another_reason_is_refused() -> None:
    fund_year = open_year()
    with acting_as("admin", "req-1"):
        fund_year.close("year end")
        assert names(drain(fund_year)) == ["Closed"]
        fund_year.close("year end")
        assert drain(fund_year) == []
        with pytest.raises(InvalidState):
            fund_year.close("another reason")
    assert drain(fund_year) == []
    assert fund_year.close_reason == "year end"


@pytest.mark.parametrize("day", [date(2024, 1, 1), date(2024, 2, 29), date(2024, 12, 31)])
def test_dates_inside_the_fund_year_are_accepted(day: date) -> None:
    open_year().check_date("start_on", day)


@pytest.mark.parametrize(
    ("field", "day"), [("start_on", date(2023, 12, 31)), ("end_on", date(2025, 1, 1))]
)
def test_dates_outside_the_fund_year_are_refused_naming_their_field(field: str, day: date) -> None:
    with pytest.raises(ValidationFailed) as refused:
        open_year().check_date(field, day)
    assert refused.value.field == field


# --- grants ---------------------------------------------------------------------------


def test_a_proposed_grant_holds_its_amount_and_is_not_payable() -> None:
    grant = proposed("1000.00", proposer="clerk")
    assert (grant.status, grant.proposed_by) == ("proposed", "clerk")
    assert (grant.effective_amount, grant.payable, grant.net_paid) == (D("1000.00"), D("0"), D("0"))
    with acting_as("treasury", "req-1"), pytest.raises(InvalidState):
        pay(grant, "P-1", "1.00")
    assert drain(grant) == []


def test_approval_by_another_principal_makes_the_grant_payable() -> None:
    grant = proposed("1000.00", proposer="clerk")
    with acting_as("approver", "req-1"):
        grant.approve("checked", APPROVED_ON)
    assert (grant.status, grant.decision_by, grant.decision_note) == (
        "approved",
        "approver",
        "checked",
    )
    assert (grant.effective_amount, grant.payable) == (D("1000.00"), D("1000.00"))
    events = drain(grant)
    assert names(events) == ["Approved"]
    assert events[0].note == "checked"


def test_the_proposer_cannot_approve_their_own_grant() -> None:
    grant = proposed(proposer="clerk")
    with acting_as("clerk", "req-1"), pytest.raises(SelfApproval):
        grant.approve("mine", APPROVED_ON)
    assert grant.status == "proposed"
    assert drain(grant) == []


@pytest.mark.parametrize("note", ["ok", None])
def test_approving_again_with_the_same_note_records_nothing(note: str | None) -> None:
    grant = proposed()
    with acting_as("approver", "req-1"):
        grant.approve(note, APPROVED_ON)
    drain(grant)
    with acting_as("approver", "req-2"):
        grant.approve(note, APPROVED_ON)
    assert drain(grant) == []
    assert grant.status == "approved"


def test_approving_again_with_another_note_is_invalid_state() -> None:
    grant = approved()
    with acting_as("approver", "req-2"), pytest.raises(InvalidState):
        grant.approve("another note", APPROVED_ON)
    assert drain(grant) == []
    assert grant.decision_note == "ok"


def test_rejection_releases_the_whole_amount_and_repeats_answer_without_events() -> None:
    fund_year, grant = reserved("1000.00")
    with acting_as("approver", "req-1"):
        grant.reject("no budget line for this", fund_year)
    assert (grant.status, grant.effective_amount, grant.payable) == ("rejected", D("0"), D("0"))
    events = drain(grant)
    assert names(events) == ["Rejected"]
    assert events[0].reason == "no budget line for this"
    assert released(fund_year) == [("G-1", D("1000.00"))]
    with acting_as("approver", "req-2"):
        grant.reject("no budget line for this", fund_year)
        assert drain(grant) == drain(fund_year) == []
        with pytest.raises(InvalidState):
            grant.reject("another reason", fund_year)
    assert drain(grant) == drain(fund_year) == []


@pytest.mark.parametrize(
    ("setup", "action"),
    [
        ("rejected", "approve"),
        ("rejected", "revoke"),
        ("approved", "reject"),
        ("proposed", "revoke"),
        ("revoked", "approve"),
        ("revoked", "reject"),
    ],
)
def test_decisions_out_of_order_are_invalid_state(setup: str, action: str) -> None:
    fund_year, grant = reserved()
    with acting_as("approver", "req-1"):
        if setup == "rejected":
            grant.reject("no", fund_year)
        if setup in ("approved", "revoked"):
            grant.approve("ok", APPROVED_ON)
        if setup == "revoked":
            grant.revoke("fraud", fund_year)
    drain(grant)
    drain(fund_year)
    with acting_as("approver", "req-2"), pytest.raises(InvalidState):
        if action == "approve":
            grant.approve("ok", APPROVED_ON)
        elif action == "reject":
            grant.reject("fraud", fund_year)
        else:
            grant.revoke("ok", fund_year)
    assert grant.status == setup
    assert drain(grant) == drain(fund_year) == []


def test_payments_are_refused_beyond_the_grant_amount() -> None:
    grant = approved("1000.00")
    with acting_as("treasury", "req-1"):
        pay(grant, "P-1", "600.00")
        assert grant.payable == D("400.00")
        drain(grant)
        with pytest.raises(Overpayment):
            pay(grant, "P-2", "400.01")
        assert drain(grant) == []
        paid = grant.pay("P-2", D("400.00"), date(2024, 6, 1), "B-7", "fp-p2")
    assert (grant.paid, grant.net_paid, grant.payable) == (D("1000.00"), D("1000.00"), D("0"))
    events = drain(grant)
    assert names(events) == ["Paid"]
    assert (events[0].payment_id, events[0].amount) == ("P-2", D("400.00"))
    assert (paid.payment_id, paid.grant_id, paid.talent_id, paid.fund_year, paid.programme) == (
        "P-2",
        "G-1",
        "T-1",
        2024,
        "settling_in",
    )
    assert (paid.amount, paid.value_date, paid.bank_reference, paid.fingerprint) == (
        D("400.00"),
        date(2024, 6, 1),
        "B-7",
        "fp-p2",
    )
    with acting_as("treasury", "req-2"), pytest.raises(Overpayment):
        pay(grant, "P-3", "0.01")


def test_a_returned_payment_is_payable_again() -> None:
    fund_year, grant = reserved("1000.00", approve=True)
    with acting_as("treasury", "req-1"):
        paid = pay(grant, "P-1", "1000.00")
        grant.return_payment(paid, date(2024, 5, 12), "bounced", fund_year)
    assert (grant.returned, grant.net_paid, grant.payable) == (D("1000.00"), D("0"), D("1000.00"))
    assert grant.effective_amount == D("1000.00")
    assert paid.status == "returned"
    events = drain(grant)
    assert names(events) == ["Paid", "PaymentReturned"]
    assert (events[1].amount, events[1].released) == (D("1000.00"), D("0"))
    assert released(fund_year) == []
    with acting_as("treasury", "req-2"):
        grant.return_payment(paid, date(2024, 5, 12), "bounced", fund_year)  # the same again
        assert drain(grant) == []
        pay(grant, "P-2", "1000.00")
    assert grant.net_paid == D("1000.00")


def test_revoking_releases_the_amount_less_net_paid_and_ends_payments() -> None:
    fund_year, grant = reserved("1000.00", approve=True)
    with acting_as("treasury", "req-1"):
        pay(grant, "P-1", "300.00")
        returned = pay(grant, "P-2", "200.00")
        grant.return_payment(returned, date(2024, 5, 12), "bounced", fund_year)
    drain(grant)
    with acting_as("approver", "req-2"):
        grant.revoke("fraud", fund_year)
    assert (grant.status, grant.effective_amount, grant.payable) == ("revoked", D("300.00"), D("0"))
    events = drain(grant)
    assert names(events) == ["Revoked"]
    assert (events[0].reason, events[0].released) == ("fraud", D("700.00"))
    assert released(fund_year) == [("G-1", D("700.00"))]
    with acting_as("treasury", "req-3"), pytest.raises(InvalidState):
        pay(grant, "P-3", "1.00")
    with acting_as("approver", "req-4"):
        grant.revoke("fraud", fund_year)
        assert drain(grant) == drain(fund_year) == []
        with pytest.raises(InvalidState):
            grant.revoke("another reason", fund_year)
    assert drain(grant) == drain(fund_year) == []


def test_a_return_after_revocation_releases_the_returned_amount() -> None:
    fund_year, grant = reserved("1000.00", approve=True)
    with acting_as("treasury", "req-1"):
        paid = pay(grant, "P-1", "300.00")
    with acting_as("approver", "req-2"):
        grant.revoke("fraud", fund_year)
    drain(grant)
    drain(fund_year)
    with acting_as("treasury", "req-3"):
        grant.return_payment(paid, date(2024, 5, 12), "bounced", fund_year)
    assert (grant.net_paid, grant.effective_amount, grant.payable) == (D("0"), D("0"), D("0"))
    events = drain(grant)
    assert names(events) == ["PaymentReturned"]
    assert events[0].released == D("300.00")
    assert released(fund_year) == [("G-1", D("300.00"))]


def test_clawbacks_are_limited_to_the_net_paid_not_yet_clawed_back() -> None:
    grant = approved("1000.00")
    fund_year = open_year()
    with acting_as("clerk", "req-1"):
        with pytest.raises(ClawbackExceedsPaid):
            grant.assess_clawback("C-0", D("0.01"), "left", "fp")
        pay(grant, "P-1", "500.00")
        returned = pay(grant, "P-2", "100.00")
        grant.return_payment(returned, date(2024, 5, 12), "bounced", fund_year)
        drain(grant)
        with pytest.raises(ClawbackExceedsPaid):
            grant.assess_clawback("C-1", D("500.01"), "left", "fp")
        assert drain(grant) == []
        assessed = grant.assess_clawback("C-1", D("200.00"), "left early", "fp-c1")
        grant.assess_clawback("C-2", D("300.00"), "left", "fp")
        with pytest.raises(ClawbackExceedsPaid):
            grant.assess_clawback("C-3", D("0.01"), "left", "fp")
    assert grant.clawed_back == D("500.00")
    events = drain(grant)
    assert names(events) == ["ClawbackAssessed", "ClawbackAssessed"]
    assert (events[0].clawback_id, events[0].amount) == ("C-1", D("200.00"))
    assert (assessed.clawback_id, assessed.grant_id, assessed.talent_id, assessed.amount) == (
        "C-1",
        "G-1",
        "T-1",
        D("200.00"),
    )
    assert (assessed.reason, assessed.fingerprint, assessed.due) == (
        "left early",
        "fp-c1",
        D("200.00"),
    )


def test_a_rebuilt_grant_equals_the_one_that_recorded_the_events() -> None:
    with acting_as("clerk", "req-1"):
        grant = Grant("G-1", "T-1", 2024, "settling_in", D("1000.00"), "ref", "why", "fp")
    fund_year = open_year()
    with acting_as("approver", "req-2"):
        grant.approve("ok", APPROVED_ON)
    with acting_as("treasury", "req-3"):
        paid = pay(grant, "P-1", "400.00")
        grant.return_payment(paid, date(2024, 5, 12), "bounced", fund_year)
        pay(grant, "P-2", "250.00")
    with acting_as("approver", "req-4"):
        grant.revoke("fraud", fund_year)
    copy = rebuilt(drain(grant))  # replayed as no one: the stamps come from the events
    assert copy.__dict__ == grant.__dict__
    assert (copy.proposed_by, copy.decision_by) == ("clerk", "approver")


# --- talents, payments, waivers, clawbacks --------------------------------------------


def test_a_talent_cannot_depart_before_arriving() -> None:
    registered = talent(arrived_on=date(2024, 3, 1))
    with acting_as("clerk", "req-1"), pytest.raises(ValidationFailed) as refused:
        registered.depart(date(2024, 2, 29), "never came")
    assert refused.value.field == "departed_on"
    assert (registered.status, registered.departed_on) == ("active", None)
    assert drain(registered) == []


def test_departure_is_recorded_once_and_only_the_same_departure_repeats() -> None:
    registered = talent(arrived_on=date(2024, 3, 1))
    with acting_as("clerk", "req-1"):
        registered.depart(date(2024, 3, 1), "moved to 上海")
    assert (registered.status, registered.departed_on) == ("departed", date(2024, 3, 1))
    events = drain(registered)
    assert names(events) == ["Departed"]
    assert (events[0].departed_on, events[0].reason) == (date(2024, 3, 1), "moved to 上海")
    with acting_as("clerk", "req-2"):
        registered.depart(date(2024, 3, 1), "moved to 上海")
        assert drain(registered) == []
        with pytest.raises(InvalidState):
            registered.depart(date(2024, 4, 1), "moved to 上海")
        with pytest.raises(InvalidState):
            registered.depart(date(2024, 3, 1), "another reason")
    assert drain(registered) == []


def test_a_payment_cannot_return_before_its_value_date() -> None:
    paid = payment(value_date=date(2024, 5, 10))
    with acting_as("treasury", "req-1"), pytest.raises(ValidationFailed) as refused:
        paid.return_(date(2024, 5, 9), "bounced")
    assert refused.value.field == "returned_on"
    assert (paid.status, drain(paid)) == ("paid", [])


def test_a_return_is_recorded_once_and_only_the_same_return_repeats() -> None:
    paid = payment(value_date=date(2024, 5, 10))
    with acting_as("treasury", "req-1"):
        assert paid.return_(date(2024, 5, 10), "bounced") is True
    assert (paid.status, paid.returned_on, paid.return_reason) == (
        "returned",
        date(2024, 5, 10),
        "bounced",
    )
    assert names(drain(paid)) == ["Returned"]
    with acting_as("treasury", "req-2"):
        assert paid.return_(date(2024, 5, 10), "bounced") is False
        assert drain(paid) == []
        with pytest.raises(InvalidState):
            paid.return_(date(2024, 5, 11), "bounced")
        with pytest.raises(InvalidState):
            paid.return_(date(2024, 5, 10), "account closed")
    assert drain(paid) == []


def test_a_waiver_is_worth_whole_months_of_rent() -> None:
    granted = waiver(date(2024, 3, 10), date(2024, 8, 20), "1500.00")
    assert (granted.months, granted.value, granted.status) == (6, D("9000.00"), "active")


@pytest.mark.parametrize(
    ("ended_on", "months", "released"),
    [
        (date(2024, 5, 2), 3, "4500.00"),
        (date(2024, 3, 10), 1, "7500.00"),
        (date(2024, 3, 31), 1, "7500.00"),
        (date(2024, 8, 1), 6, "0.00"),
        (date(2024, 8, 20), 6, "0.00"),
    ],
)
def test_ending_a_waiver_keeps_the_months_up_to_its_month_and_releases_the_rest(
    ended_on: date, months: int, released: str
) -> None:
    granted = waiver(date(2024, 3, 10), date(2024, 8, 20), "1500.00")
    fund_year = open_year()
    with acting_as("clerk", "req-1"):
        granted.end(ended_on, fund_year)
    assert [e.amount for e in drain(fund_year)] == ([D(released)] if D(released) else [])
    assert (granted.status, granted.ended_on, granted.months) == ("ended", ended_on, months)
    assert granted.value == D("1500.00") * months
    events = drain(granted)
    assert names(events) == ["Ended"]
    assert (events[0].ended_on, events[0].months, events[0].released) == (
        ended_on,
        months,
        D(released),
    )


@pytest.mark.parametrize("ended_on", [date(2024, 3, 9), date(2024, 8, 21), date(2025, 3, 1)])
def test_a_waiver_cannot_end_outside_its_dates(ended_on: date) -> None:
    granted = waiver(date(2024, 3, 10), date(2024, 8, 20))
    with acting_as("clerk", "req-1"), pytest.raises(ValidationFailed) as refused:
        granted.end(ended_on, open_year())
    assert refused.value.field == "ended_on"
    assert (granted.status, granted.value, drain(granted)) == ("active", D("9000.00"), [])


def test_ending_a_waiver_again_on_the_same_day_releases_nothing() -> None:
    granted = waiver(date(2024, 3, 10), date(2024, 8, 20), "1500.00")
    fund_year = open_year()
    with acting_as("clerk", "req-1"):
        granted.end(date(2024, 4, 30), fund_year)
    drain(granted)
    drain(fund_year)
    with acting_as("clerk", "req-2"):
        granted.end(date(2024, 4, 30), fund_year)
        assert drain(granted) == drain(fund_year) == []
        with pytest.raises(InvalidState):
            granted.end(date(2024, 5, 31), fund_year)
    assert (granted.months, granted.value, drain(granted)) == (2, D("3000.00"), [])


def test_a_waiver_cannot_end_before_it_starts() -> None:
    with acting_as("clerk", "req-1"), pytest.raises(ValidationFailed) as refused:
        RentWaiver.grant(
            "W-1", "T-1", 2024, "housing", "Apt", date(2024, 5, 1), date(2024, 4, 30), D("1"), "fp"
        )
    assert refused.value.field == "end_on"


def test_recoveries_are_limited_to_what_is_due() -> None:
    assessed = clawback("300.00")
    assert (assessed.due, assessed.recovered, assessed.status) == (D("300.00"), D("0"), "open")
    with acting_as("treasury", "req-1"):
        assessed.recover(recovery("R-1", "100.00"))
        drain(assessed)
        with pytest.raises(Overpayment):
            assessed.recover(recovery("R-2", "200.01"))
        assert drain(assessed) == []
        assessed.recover(recovery("R-2", "200.00"))
    assert (assessed.recovered, assessed.due, assessed.status) == (D("300.00"), D("0"), "recovered")
    events = drain(assessed)
    assert names(events) == ["Recovered"]
    assert (events[0].recovery_id, events[0].amount, events[0].bank_reference) == (
        "R-2",
        D("200.00"),
        "B-R-2",
    )
    with acting_as("treasury", "req-2"), pytest.raises(Overpayment):
        assessed.recover(recovery("R-3", "0.01"))


# --- who recorded what ------------------------------------------------------------------


def test_every_event_carries_the_actor_and_request_of_its_context() -> None:
    recorded: list[tuple[str, str, str]] = []

    def stamps(aggregate: LedgerAggregate) -> None:
        recorded.extend((type(e).__name__, e.actor, e.request_id) for e in drain(aggregate))

    with acting_as("admin", "req-1"):
        fund_year = FundYear(2024, "CNY", "fp")
        fund_year.appropriate(appropriation("A-1", "settling_in", "cash", "1000.00"))
    with acting_as("clerk", "req-2"):
        grant = Grant("G-1", "T-1", 2024, "settling_in", D("500.00"), "ref", "why", "fp")
        fund_year.reserve(grant)
    stamps(fund_year)
    with acting_as("approver", "req-3"):
        grant.approve("ok", APPROVED_ON)
    with acting_as("treasury", "req-4"):
        claim = BankReference.claim(None, "B", payment_id="P-1")
        paid = grant.pay("P-1", D("200.00"), date(2024, 5, 1), "B", "fp")
    with acting_as("auditor", "req-5"):
        pass  # a context that records nothing leaves no trace
    with acting_as("treasury", "req-6"):
        grant.return_payment(paid, date(2024, 5, 2), "bounced", fund_year)
    with acting_as("approver", "req-7"):
        grant.revoke("fraud", fund_year)
    for aggregate in (grant, paid, claim, fund_year):
        stamps(aggregate)

    assert sorted(recorded) == sorted(
        [
            ("Opened", "admin", "req-1"),
            ("Appropriated", "admin", "req-1"),
            ("Reserved", "clerk", "req-2"),
            ("Proposed", "clerk", "req-2"),
            ("Approved", "approver", "req-3"),
            ("Paid", "treasury", "req-4"),
            ("PaymentReturned", "treasury", "req-6"),
            ("Revoked", "approver", "req-7"),
            ("Recorded", "treasury", "req-4"),
            ("Returned", "treasury", "req-6"),
            ("Claimed", "treasury", "req-4"),
            ("Released", "approver", "req-7"),
        ]
    )


def test_talents_waivers_and_clawbacks_stamp_their_events_too() -> None:
    with acting_as("someone", "req-42"):
        registered = Talent("T-1", "韩梅梅", "B", "Acme", date(2024, 1, 1), date(2026, 1, 1), "fp")
        registered.depart(date(2024, 6, 1), "left")
        granted = RentWaiver.grant(
            "W-1",
            "T-1",
            2024,
            "housing",
            "Apt 1",
            date(2024, 1, 1),
            date(2024, 6, 30),
            D("100"),
            "fp",
        )
        granted.end(date(2024, 4, 1), open_year())
        assessed = Clawback("C-1", "G-1", "T-1", 2024, "settling_in", D("5.00"), "left", "fp")
        assessed.recover(recovery("R-1", "1.00"))
    events = [e for a in (registered, granted, assessed) for e in drain(a)]
    assert names(events) == ["Registered", "Departed", "Granted", "Ended", "Assessed", "Recovered"]
    assert {(e.actor, e.request_id) for e in events} == {("someone", "req-42")}


def test_events_outside_any_request_are_stamped_as_the_system() -> None:
    fund_year = FundYear(2024, "CNY", "fp")
    (opened,) = drain(fund_year)
    assert (opened.actor, opened.request_id) == ("system", "-")
