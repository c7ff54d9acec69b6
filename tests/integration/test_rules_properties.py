"""Budget and payment rules as properties, on the real application and PostgreSQL.

A hypothesis state machine sends random commands through `Ledger` and
keeps its own small model of docs/api.md, "What the reads answer": plain dicts and Decimal sums that
decide, for every command, whether it must be accepted or refused (and with which
error), and what every balance must then read. The model never calls the domain
code; amounts are derived from their definitions on each check, not kept as
running totals, so a wrong delta in the ledger cannot hide in an equally wrong one.

One database serves a whole test function; each example works in a fund year, a
talent and ids of its own, and the model looks at nothing else.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledger.adapters.postgres import datastore_of
from ledger.domain.budget import FundYear
from ledger.domain.context import acting_as
from ledger.domain.errors import (
    BudgetExceeded,
    ClawbackExceedsPaid,
    DuplicateBankReference,
    FundYearClosed,
    IdempotencyConflict,
    InvalidState,
    LedgerError,
    Overpayment,
    SelfApproval,
    TalentDeparted,
    ValidationFailed,
)
from ledger.domain.grants import Grant
from ledger.engine.outcome import Outcome
from ledger.usecases.ledger import Ledger
from projections import reads
from projections.worker import ProjectionWorker
from tests import commands as c

pytestmark = pytest.mark.db

ZERO = Decimal("0.00")
CENT = Decimal("0.01")
KIND = {"settling_in": "cash", "project_support": "cash", "housing": "in_kind"}
OTHER_KIND = {"cash": "in_kind", "in_kind": "cash"}
PROPOSERS = ["clerk-a", "clerk-b"]
APPROVERS = ["clerk-a", "clerk-b", "chief"]  # a clerk approving their own proposal is refused
NOTES = [None, "ok", "checked"]
REASONS = ["bounced", "account closed"]
TALENT_AMOUNTS = (
    *("granted", "approved", "paid", "returned", "outstanding", "in_kind_value"),
    *("clawback_assessed", "clawback_recovered", "clawback_due"),
)

STEPS = 50
LATE = 20  # commands sent before the talent may depart or the year close
_examples = itertools.count(1)


def fen(n: int) -> Decimal:
    """An amount of `n` fen: Decimal with exactly 2 places, never through a float."""
    return (Decimal(n) / 100).quantize(CENT)


FEN = st.integers(min_value=1, max_value=300_000).map(fen)
BUDGET = st.integers(min_value=50_000, max_value=5_000_000).map(fen)
# proposals and waivers also try a line never appropriated, and a line of the other kind
TARGET = st.sampled_from(["settling_in", "settling_in", "project_support", "housing", "talent"])
# how an amount is picked, against what is left: a part of it, all of it, one fen too
# much, or any amount at all
SIZE = st.sampled_from(["part", "part", "part", "all", "over", "any"])
# (month, day) of the example's year: days up to the 28th, so that every fund year
# (leap or not) gives the same answers to the same draws, as hypothesis requires
DAY = st.tuples(st.integers(min_value=1, max_value=12), st.integers(min_value=1, max_value=28))
MonthDay = tuple[int, int]
# which existing resource a command names: mostly one it suits (see `pick`), else any
PICK = st.tuples(st.integers(min_value=0, max_value=10_000), st.sampled_from([1, 1, 1, 0]))
Pick = tuple[int, int]


def sized(size: str, random_amount: Decimal, left: Decimal) -> Decimal:
    if size == "part" and left > 0:
        return CENT + (random_amount - CENT) % left  # from one fen up to all that is left
    if size == "all" and left > 0:
        return left
    if size == "over":
        return max(left, ZERO) + CENT
    return random_amount


def months_between(start: date, end: date) -> int:
    """Calendar months touched by the days from `start` to `end`, both included."""
    touched = set()
    day = start
    while day <= end:
        touched.add((day.year, day.month))
        day += timedelta(days=1)
    return len(touched)


def total(amounts: Iterable[Decimal]) -> Decimal:
    return sum(amounts, ZERO)


# --- the model ---------------------------------------------------------------------------


@dataclass
class MGrant:
    command: c.ProposeGrant
    proposer: str
    status: str = "proposed"
    decision: str | None = None  # the approval note, rejection or revocation reason


@dataclass
class MPayment:
    grant_id: str
    amount: Decimal
    value_date: date
    returned: tuple[date, str] | None = None


@dataclass
class MWaiver:
    programme: str
    start_on: date
    end_on: date
    monthly_rent: Decimal
    ended_on: date | None = None

    @property
    def value(self) -> Decimal:
        return self.monthly_rent * months_between(self.start_on, self.ended_on or self.end_on)


@dataclass
class MClawback:
    grant_id: str
    amount: Decimal
    recovered: list[Decimal] = field(default_factory=list)

    @property
    def due(self) -> Decimal:
        return self.amount - total(self.recovered)


@dataclass
class Model:
    year: int
    talent_id: str
    arrived_on: date
    closed: str | None = None
    departed: tuple[date, str] | None = None
    lines: dict[str, tuple[str, list[Decimal]]] = field(default_factory=dict)
    grants: dict[str, MGrant] = field(default_factory=dict)
    payments: dict[str, MPayment] = field(default_factory=dict)
    waivers: dict[str, MWaiver] = field(default_factory=dict)
    clawbacks: dict[str, MClawback] = field(default_factory=dict)
    bank_references: list[str] = field(default_factory=list)

    # docs/api.md, "What the reads answer", from the definitions

    def paid(self, grant_id: str) -> Decimal:
        return total(p.amount for p in self.payments.values() if p.grant_id == grant_id)

    def returned(self, grant_id: str) -> Decimal:
        return total(
            p.amount for p in self.payments.values() if p.grant_id == grant_id and p.returned
        )

    def net_paid(self, grant_id: str) -> Decimal:
        return self.paid(grant_id) - self.returned(grant_id)

    def effective(self, grant_id: str) -> Decimal:
        grant = self.grants[grant_id]
        if grant.status == "rejected":
            return ZERO
        if grant.status == "revoked":
            return self.net_paid(grant_id)
        return grant.command.amount

    def assessed(self, grant_id: str) -> Decimal:
        return total(k.amount for k in self.clawbacks.values() if k.grant_id == grant_id)

    def claimable(self, grant_id: str) -> Decimal:
        """What a new clawback on the grant may still assess (§1: at most net paid)."""
        return self.net_paid(grant_id) - self.assessed(grant_id)

    def appropriated(self, programme: str) -> Decimal:
        return total(self.lines[programme][1])

    def committed(self, programme: str) -> Decimal:
        grants = total(
            self.effective(g) for g, m in self.grants.items() if m.command.programme == programme
        )
        return grants + total(w.value for w in self.waivers.values() if w.programme == programme)

    def available(self, programme: str) -> Decimal:
        return self.appropriated(programme) - self.committed(programme)

    def amounts(self, programme: str) -> dict[str, Decimal]:
        """The line's figures, which are also the (only) talent's on that line.

        `approved` counts a revoked grant too, at its effective amount (its net paid):
        it was approved, and §4 says revoking leaves nothing more payable, so its
        `outstanding` (approved - net paid) is zero, never negative.
        """
        grants = [g for g, m in self.grants.items() if m.command.programme == programme]
        clawbacks = [k for k in self.clawbacks.values() if k.grant_id in grants]
        paid = total(self.paid(g) for g in grants)
        returned = total(self.returned(g) for g in grants)
        approved = total(
            self.effective(g) for g in grants if self.grants[g].status in ("approved", "revoked")
        )
        assessed = total(k.amount for k in clawbacks)
        recovered = total(total(k.recovered) for k in clawbacks)
        return {
            "granted": total(self.effective(g) for g in grants),
            "approved": approved,
            "paid": paid,
            "returned": returned,
            "net_paid": paid - returned,
            "outstanding": approved - (paid - returned),
            "in_kind_value": total(
                w.value for w in self.waivers.values() if w.programme == programme
            ),
            "clawback_assessed": assessed,
            "clawback_recovered": recovered,
            "clawback_due": assessed - recovered,
        }


# --- the machine ---------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    """Random commands against one fund year and one talent, checked against `Model`."""

    app: ClassVar[Ledger]
    worker: ClassVar[ProjectionWorker]

    def __init__(self) -> None:
        super().__init__()
        n = next(_examples)
        self.prefix = f"x{n}"
        self.serial = itertools.count(1)
        self.commands = 0
        self.model = Model(
            year=2100 + n, talent_id=f"{self.prefix}-T", arrived_on=date(2100 + n, 3, 1)
        )

    # helpers

    def new_id(self, kind: str) -> str:
        return f"{self.prefix}-{kind}{next(self.serial)}"

    def day(self, month_day: MonthDay, months_later: int = 0) -> date:
        """That day of the fund year, or of a month before or after it."""
        month = month_day[0] + months_later
        return date(self.model.year + (month - 1) // 12, (month - 1) % 12 + 1, month_day[1])

    def count_events(self) -> int:
        with datastore_of(self.app).transaction(commit=False) as curs:
            curs.execute("SELECT count(*) AS n FROM ledger_events")
            row = curs.fetchone()
        assert row is not None
        return int(row["n"])

    def send(
        self,
        actor: str,
        refusals: set[type[LedgerError]],
        call: Callable[[], Outcome[Any]],
        *,
        records: bool = True,
    ) -> bool:
        """Run a command as `actor`; True if accepted. `refusals` are the errors the
        model says apply (any one of them is a correct answer, since the API
        does not order them); none means it must be accepted, and then record new
        events unless `records` is False (a repeat, which answers without any)."""
        self.commands += 1
        before = self.count_events()
        expected = sorted(e.__name__ for e in refusals)
        try:
            with acting_as(actor, self.new_id("req-")):
                outcome = call()
        except LedgerError as refused:
            assert type(refused) in refusals, f"refused with {refused!r}, expected {expected}"
            assert self.count_events() == before, "a refused command recorded events"
            return False
        assert not refusals, f"accepted, expected a refusal: one of {expected}"
        assert outcome.replayed is not records
        assert (self.count_events() > before) is records
        return True

    def pick(self, ids: Iterable[str], chosen: Pick, suits: Callable[[str], bool]) -> str:
        """One of `ids`: of those that `suits` when the draw says so and there are any."""
        i, focused = chosen
        ordered = sorted(ids)
        suited = [x for x in ordered if suits(x)]
        if focused and suited:
            ordered = suited
        return ordered[i % len(ordered)]

    def unused_reference(self, reuse: bool) -> str:
        if reuse and self.model.bank_references:
            return self.model.bank_references[-1]
        return self.new_id("B")

    # rules

    @initialize(
        budgets=st.lists(BUDGET, min_size=len(KIND), max_size=len(KIND)),
        seed=st.lists(FEN, min_size=1, max_size=3),
    )
    def open_year_register_talent_approve_grants(
        self, budgets: list[Decimal], seed: list[Decimal]
    ) -> None:
        """Every example starts with budget on each line and a few approved grants."""
        m = self.model
        with acting_as("admin", self.new_id("req-")):
            self.app.execute(c.OpenFundYear(m.year, "CNY"))
            for (programme, kind), budget in zip(sorted(KIND.items()), budgets, strict=True):
                appropriation_id = self.new_id("A")
                self.app.execute(
                    c.Appropriate(m.year, appropriation_id, programme, kind, budget, "初始")
                )
                m.lines[programme] = (kind, [budget])
        with acting_as("clerk-a", self.new_id("req-")):
            self.app.execute(
                c.RegisterTalent(
                    m.talent_id, "王芳", "B", "Acme", m.arrived_on, date(m.year + 3, 2, 28)
                )
            )
        for amount in seed:
            self.propose("settling_in", amount, "any", "clerk-a", "new", (0, 0))
        for i in range(len(m.grants)):
            self.decide("approve", (i, 0), "chief", "ok", "-")

    @precondition(lambda self: sum(len(line[1]) for line in self.model.lines.values()) < 8)
    @rule(programme=st.sampled_from(sorted(KIND)), amount=FEN, wrong_kind=st.booleans())
    def appropriate(self, programme: str, amount: Decimal, wrong_kind: bool) -> None:
        m = self.model
        kind = KIND[programme]
        refusals: set[type[LedgerError]] = set()
        if m.closed:
            refusals.add(FundYearClosed)
        if wrong_kind and programme in m.lines:
            kind = OTHER_KIND[kind]
            refusals.add(ValidationFailed)
        cmd = c.Appropriate(m.year, self.new_id("A"), programme, kind, amount, "财预〔2100〕1号")
        if self.send("admin", refusals, lambda: self.app.execute(cmd)):
            m.lines.setdefault(programme, (kind, []))[1].append(amount)

    @rule(
        programme=TARGET,
        amount=FEN,
        size=SIZE,
        proposer=st.sampled_from(PROPOSERS),
        retry=st.sampled_from(["new", "new", "new", "new", "same", "conflicting"]),
        i=PICK,
    )
    def propose(
        self, programme: str, amount: Decimal, size: str, proposer: str, retry: str, i: Pick
    ) -> None:
        m = self.model
        if retry != "new" and m.grants:
            self.propose_again(m.grants[self.pick(m.grants, i, lambda _: True)], retry)
            return
        refusals: set[type[LedgerError]] = set()
        if m.departed:
            refusals.add(TalentDeparted)
        if m.closed:
            refusals.add(FundYearClosed)
        if programme not in m.lines or m.lines[programme][0] != "cash":
            refusals.add(ValidationFailed)  # no such line, or not a cash line
        else:
            amount = sized(size, amount, m.available(programme))
            if amount > m.available(programme):
                refusals.add(BudgetExceeded)
        cmd = c.ProposeGrant(
            self.new_id("G"), m.talent_id, m.year, programme, amount, "人才政策 §3", "引进"
        )
        if self.send(proposer, refusals, lambda: self.app.execute(cmd)):
            m.grants[cmd.grant_id] = MGrant(cmd, proposer)

    def propose_again(self, grant: MGrant, retry: str) -> None:
        """A retry with the same body answers the original; another body is a conflict."""
        cmd = grant.command
        refusals: set[type[LedgerError]] = set()
        if retry == "conflicting":
            cmd = replace(cmd, amount=cmd.amount + CENT)
            refusals.add(IdempotencyConflict)
        self.send(grant.proposer, refusals, lambda: self.app.execute(cmd), records=False)

    @precondition(lambda self: self.model.grants)
    @rule(
        action=st.sampled_from(["approve", "approve", "reject", "revoke"]),
        i=PICK,
        approver=st.sampled_from(APPROVERS),
        note=st.sampled_from(NOTES),
        reason=st.sampled_from(REASONS),
    )
    def decide(self, action: str, i: Pick, approver: str, note: str | None, reason: str) -> None:
        """Approve, reject or revoke a grant: mostly one in the state the action needs."""
        m = self.model
        needs, becomes = {
            "approve": ("proposed", "approved"),
            "reject": ("proposed", "rejected"),
            "revoke": ("approved", "revoked"),
        }[action]
        grant_id = self.pick(m.grants, i, lambda g: m.grants[g].status == needs)
        grant = m.grants[grant_id]
        decision = note if action == "approve" else reason
        repeat = grant.status == becomes and grant.decision == decision
        refusals: set[type[LedgerError]] = set()
        if grant.status != needs and not repeat:
            refusals.add(InvalidState)
        if action == "approve" and grant.status == needs and approver == grant.proposer:
            refusals.add(SelfApproval)
        call: Callable[[], Outcome[Grant]]
        if action == "approve":
            call = lambda: self.app.execute(c.ApproveGrant(grant_id, note))  # noqa: E731
        elif action == "reject":
            call = lambda: self.app.execute(c.RejectGrant(grant_id, reason))  # noqa: E731
        else:
            call = lambda: self.app.execute(c.RevokeGrant(grant_id, reason))  # noqa: E731
        if self.send(approver, refusals, call, records=not repeat):
            grant.status, grant.decision = becomes, decision

    @precondition(lambda self: self.model.grants)
    @rule(
        i=PICK,
        amount=FEN,
        size=SIZE,
        day=DAY,
        reuse_reference=st.sampled_from([False, False, False, True]),
    )
    def pay(
        self, i: Pick, amount: Decimal, size: str, day: MonthDay, reuse_reference: bool
    ) -> None:
        m = self.model
        grant_id = self.pick(m.grants, i, lambda g: m.grants[g].status == "approved")
        grant = m.grants[grant_id]
        left = grant.command.amount - m.net_paid(grant_id)
        amount = sized(size, amount, left)
        value_date = self.day(day)
        reference = self.unused_reference(reuse_reference)
        refusals: set[type[LedgerError]] = set()
        if grant.status != "approved":
            refusals.add(InvalidState)
        elif amount > left:
            refusals.add(Overpayment)
        if m.departed and value_date > m.departed[0]:
            refusals.add(TalentDeparted)
        if reference in m.bank_references:
            refusals.add(DuplicateBankReference)
        cmd = c.RecordPayment(self.new_id("P"), grant_id, amount, value_date, reference)
        if self.send("treasury", refusals, lambda: self.app.execute(cmd)):
            m.payments[cmd.payment_id] = MPayment(grant_id, amount, value_date)
            m.bank_references.append(reference)

    @precondition(lambda self: any(not p.returned for p in self.model.payments.values()))
    @rule(
        i=PICK,
        days_after=st.integers(min_value=-3, max_value=60),
        reason=st.sampled_from(REASONS),
        same_as_before=st.booleans(),
    )
    def return_payment(self, i: Pick, days_after: int, reason: str, same_as_before: bool) -> None:
        payment_id = self.pick(
            self.model.payments, i, lambda p: not self.model.payments[p].returned
        )
        payment = self.model.payments[payment_id]
        returned = (payment.value_date + timedelta(days=days_after), reason)
        if same_as_before and payment.returned:
            returned = payment.returned
        repeat = payment.returned == returned
        refusals: set[type[LedgerError]] = set()
        if payment.returned and not repeat:
            refusals.add(InvalidState)
        elif returned[0] < payment.value_date:
            refusals.add(ValidationFailed)
        cmd = c.ReturnPayment(payment_id, *returned)
        call = lambda: self.app.execute(cmd)  # noqa: E731
        if self.send("treasury", refusals, call, records=not repeat):
            payment.returned = returned

    @precondition(lambda self: any(self.model.claimable(g) > 0 for g in self.model.grants))
    @rule(i=PICK, amount=FEN, size=SIZE)
    def assess_clawback(self, i: Pick, amount: Decimal, size: str) -> None:
        m = self.model
        grant_id = self.pick(m.grants, i, lambda g: m.claimable(g) > 0)
        amount = sized(size, amount, m.claimable(grant_id))
        refusals: set[type[LedgerError]] = set()
        if m.assessed(grant_id) + amount > m.net_paid(grant_id):
            refusals.add(ClawbackExceedsPaid)
        cmd = c.AssessClawback(self.new_id("C"), grant_id, amount, "服务期未满")
        if self.send("clerk-a", refusals, lambda: self.app.execute(cmd)):
            m.clawbacks[cmd.clawback_id] = MClawback(grant_id, amount)

    @precondition(lambda self: any(k.due > 0 for k in self.model.clawbacks.values()))
    @rule(
        i=PICK,
        amount=FEN,
        size=SIZE,
        day=DAY,
        reuse_reference=st.sampled_from([False, False, False, True]),
    )
    def recover(
        self, i: Pick, amount: Decimal, size: str, day: MonthDay, reuse_reference: bool
    ) -> None:
        m = self.model
        clawback_id = self.pick(m.clawbacks, i, lambda k: m.clawbacks[k].due > 0)
        clawback = m.clawbacks[clawback_id]
        due = clawback.due
        amount = sized(size, amount, due)
        reference = self.unused_reference(reuse_reference)
        refusals: set[type[LedgerError]] = set()
        if amount > due:
            refusals.add(Overpayment)
        if reference in m.bank_references:
            refusals.add(DuplicateBankReference)
        cmd = c.RecordRecovery(clawback_id, self.new_id("R"), amount, self.day(day), reference)
        if self.send("treasury", refusals, lambda: self.app.execute(cmd)):
            clawback.recovered.append(amount)
            m.bank_references.append(reference)

    @rule(
        programme=st.sampled_from(["housing"] * 6 + ["settling_in", "talent"]),
        start=DAY,
        length=st.integers(min_value=-1, max_value=4),
        end_day_of_month=st.integers(min_value=1, max_value=28),
        rent=st.integers(min_value=1, max_value=60_000).map(fen),
    )
    def grant_waiver(
        self, programme: str, start: MonthDay, length: int, end_day_of_month: int, rent: Decimal
    ) -> None:
        m = self.model
        start_on = self.day(start)
        # may run into the next year, or end before it starts
        end_on = self.day((start[0], end_day_of_month), months_later=length)
        refusals: set[type[LedgerError]] = set()
        if end_on < start_on or end_on.year != m.year:
            refusals.add(ValidationFailed)
        if m.departed:
            refusals.add(TalentDeparted)
        if m.closed:
            refusals.add(FundYearClosed)
        if programme not in m.lines or m.lines[programme][0] != "in_kind":
            refusals.add(ValidationFailed)
        elif start_on <= end_on and end_on.year == m.year:
            value = rent * months_between(start_on, end_on)
            if value > m.available(programme):
                refusals.add(BudgetExceeded)
        cmd = c.GrantWaiver(
            self.new_id("W"), m.talent_id, m.year, programme, "公寓 3-201", start_on, end_on, rent
        )
        if self.send("clerk-b", refusals, lambda: self.app.execute(cmd)):
            m.waivers[cmd.waiver_id] = MWaiver(programme, start_on, end_on, rent)

    @precondition(lambda self: any(not w.ended_on for w in self.model.waivers.values()))
    @rule(
        i=PICK,
        months_after_start=st.integers(min_value=-1, max_value=5),
        day=st.integers(min_value=1, max_value=28),
        again=st.booleans(),
    )
    def end_waiver(self, i: Pick, months_after_start: int, day: int, again: bool) -> None:
        waiver_id = self.pick(self.model.waivers, i, lambda w: not self.model.waivers[w].ended_on)
        waiver = self.model.waivers[waiver_id]
        ended_on = self.day((waiver.start_on.month, day), months_later=months_after_start)
        if again and waiver.ended_on:
            ended_on = waiver.ended_on
        repeat = waiver.ended_on == ended_on
        refusals: set[type[LedgerError]] = set()
        if waiver.ended_on and not repeat:
            refusals.add(InvalidState)
        elif not waiver.start_on <= ended_on <= waiver.end_on:
            refusals.add(ValidationFailed)
        cmd = c.EndWaiver(waiver_id, ended_on)
        call = lambda: self.app.execute(cmd)  # noqa: E731
        if self.send("clerk-b", refusals, call, records=not repeat):
            waiver.ended_on = ended_on

    @precondition(
        lambda self: self.commands >= LATE and not (self.model.departed and self.model.closed)
    )
    @rule(
        what=st.sampled_from(["depart", "depart", "close"]),
        day=DAY,
        reason=st.sampled_from(["year end", "moved away"]),
    )
    def depart_or_close(self, what: str, day: MonthDay, reason: str) -> None:
        """The talent leaves, or the fund year closes: both end new commitments."""
        m = self.model
        refusals: set[type[LedgerError]] = set()
        if what == "close":
            repeat = m.closed == reason
            if m.closed and not repeat:
                refusals.add(InvalidState)
            close = c.CloseFundYear(m.year, reason)
            if self.send("admin", refusals, lambda: self.app.execute(close), records=not repeat):
                m.closed = reason
            return
        departed = (self.day(day), reason)
        repeat = m.departed == departed
        if m.departed and not repeat:
            refusals.add(InvalidState)
        elif departed[0] < m.arrived_on:
            refusals.add(ValidationFailed)
        depart = c.DepartTalent(m.talent_id, *departed)
        if self.send("clerk-a", refusals, lambda: self.app.execute(depart), records=not repeat):
            m.departed = departed

    # invariants

    @invariant()
    def model_keeps_the_rules(self) -> None:
        m = self.model
        for programme in m.lines:
            assert ZERO <= m.committed(programme) <= m.appropriated(programme)
        for grant_id, grant in m.grants.items():
            assert ZERO <= m.net_paid(grant_id) <= grant.command.amount
            if grant.status == "rejected":
                assert m.paid(grant_id) == ZERO

    @invariant()
    def aggregates_agree_with_the_model(self) -> None:
        m = self.model
        fund_year = self.app.load(FundYear, m.year, "fund year")
        assert fund_year.status == ("closed" if m.closed else "open")
        assert {
            p: (ln.kind, ln.appropriated, ln.committed) for p, ln in fund_year.lines.items()
        } == {p: (m.lines[p][0], m.appropriated(p), m.committed(p)) for p in m.lines}
        for grant_id, grant in m.grants.items():
            loaded = self.app.load(Grant, grant_id, "grant")
            assert (loaded.status, loaded.net_paid, loaded.effective_amount) == (
                grant.status,
                m.net_paid(grant_id),
                m.effective(grant_id),
            )
            assert loaded.net_paid <= loaded.amount

    @invariant()
    def read_models_equal_the_model(self) -> None:
        m = self.model
        self.worker.catch_up()
        datastore = datastore_of(self.app)

        fund_year = reads.fund_year(datastore, m.year)
        assert fund_year["status"] == ("closed" if m.closed else "open")
        line_names = (
            *("paid", "returned", "net_paid", "in_kind_value"),
            *("clawback_assessed", "clawback_recovered"),
        )
        expected_lines: list[dict[str, Any]] = [
            {
                "programme": p,
                "kind": m.lines[p][0],
                "appropriated": m.appropriated(p),
                "committed": m.committed(p),
                "available": m.available(p),
                **{name: m.amounts(p)[name] for name in line_names},
            }
            for p in sorted(m.lines)
        ]
        assert fund_year["lines"] == expected_lines
        for name in ("appropriated", "committed", "available", *line_names):
            assert fund_year["totals"][name] == total(line[name] for line in expected_lines)
        for line in fund_year["lines"]:
            assert line["committed"] <= line["appropriated"]

        balance = reads.trial_balance(datastore, m.year)
        assert balance["total_debit"] == balance["total_credit"]

        read = {
            row.pop("programme"): row for row in reads.talent(datastore, m.talent_id)["balances"]
        }
        assert set(read) <= set(m.lines)
        for programme in sorted(m.lines):
            expected = {name: m.amounts(programme)[name] for name in TALENT_AMOUNTS}
            nothing_yet = dict.fromkeys(TALENT_AMOUNTS, ZERO)
            assert read.get(programme, {"fund_year": m.year, **nothing_yet}) == {
                "fund_year": m.year,
                **expected,
            }, programme


def test_random_commands_keep_the_budget_and_payment_rules(
    ledger: Ledger, worker: ProjectionWorker
) -> None:
    class Machine(LedgerMachine):
        app = ledger

    Machine.worker = worker
    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )


# --- payments against one grant ------------------------------------------------------------


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    amount=st.integers(min_value=1, max_value=100_000).map(fen),
    payments=st.lists(st.integers(min_value=1, max_value=40_000).map(fen), max_size=10),
)
def test_payments_are_accepted_exactly_while_they_fit_the_grant(
    ledger: Ledger, worker: ProjectionWorker, amount: Decimal, payments: list[Decimal]
) -> None:
    n = next(_examples)
    year, talent_id, grant_id = 2100 + n, f"y{n}-T", f"y{n}-G"
    with acting_as("admin", f"y{n}-req-0"):
        ledger.execute(c.OpenFundYear(year, "CNY"))
        ledger.execute(c.Appropriate(year, f"y{n}-A", "settling_in", "cash", amount, "ref"))
    with acting_as("clerk", f"y{n}-req-1"):
        ledger.execute(
            c.RegisterTalent(talent_id, "张伟", "A", "Acme", date(2000, 1, 1), date(9999, 12, 31))
        )
        ledger.execute(
            c.ProposeGrant(grant_id, talent_id, year, "settling_in", amount, "ref", "why")
        )
    with acting_as("approver", f"y{n}-req-2"):
        ledger.execute(c.ApproveGrant(grant_id, None))

    accepted: list[Decimal] = []
    refused: list[int] = []
    paid_so_far = ZERO
    would_exceed: list[int] = []
    for k, payment in enumerate(payments):
        if paid_so_far + payment > amount:
            would_exceed.append(k)
        else:
            paid_so_far += payment
        cmd = c.RecordPayment(f"y{n}-P{k}", grant_id, payment, date(year, 6, 1), f"y{n}-B{k}")
        try:
            with acting_as("treasury", f"y{n}-req-p{k}"):
                ledger.execute(cmd)
        except Overpayment:
            refused.append(k)
        else:
            accepted.append(payment)

    assert total(accepted) <= amount
    assert refused == would_exceed
    assert total(accepted) == paid_so_far
    worker.catch_up()
    (line,) = reads.fund_year(datastore_of(ledger), year)["lines"]
    assert (line["paid"], line["committed"], line["available"]) == (paid_so_far, amount, ZERO)
    (balance,) = reads.talent(datastore_of(ledger), talent_id)["balances"]
    assert balance["outstanding"] == amount - paid_so_far
