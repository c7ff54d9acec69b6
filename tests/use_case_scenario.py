"""Every use case and rule, as one scenario class run on two stores: in memory
(`tests/unit/test_use_cases.py`, milliseconds) and on PostgreSQL
(`tests/integration/test_use_cases_on_postgres.py`), as the eventsourcing library
tests its applications on POPO and on PostgreSQL. A subclass provides `ledger`.

Each test checks what a use case answers, what it records (events, by type) and what
a refusal leaves: nothing.
"""

from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent

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
    NameTaken,
    NotFound,
    Overpayment,
    SelfApproval,
    SeparationOfDuties,
    TalentDeparted,
    ValidationFailed,
)
from ledger.domain.grants import Grant
from ledger.domain.talents import Talent
from ledger.engine.engine import AtomicRefusal
from ledger.engine.outcome import Outcome
from ledger.engine.store import Overtaken
from ledger.engine.unit_of_work import UnitOfWork
from ledger.usecases.ledger import Ledger
from tests import commands as c

D = Decimal
YEAR = 2024


def events_of(ledger: Ledger, after: int = 0) -> list[str]:
    """The types of the events recorded after position `after`, in order (the events of
    one decision in the order the unit of work met their aggregates)."""
    notifications = ledger.recorder.select_notifications(start=after + 1, limit=10_000)
    return [n.topic.rpartition(":")[2] for n in notifications]


def head(ledger: Ledger) -> int:
    return ledger.store.max_notification_id() or 0


class UseCaseScenario:
    ledger: Ledger

    # --- set-up, through the use cases as any caller ------------------------------

    def as_(self, actor: str, command: object) -> Outcome[Any]:
        with acting_as(actor, f"req-{actor}"):
            return self.ledger.execute(command)

    def refused(self, actor: str, command: object, error: type[LedgerError]) -> LedgerError:
        """`command` is refused with `error`, and records nothing."""
        before = head(self.ledger)
        with pytest.raises(error) as refusal:
            self.as_(actor, command)
        assert head(self.ledger) == before
        return refusal.value

    def funded(self, cash: str = "1000.00", in_kind: str = "9000.00") -> None:
        """Fund year 2024 with a cash line and an in-kind line, and talent T-1."""
        self.as_("admin", c.OpenFundYear(YEAR, "CNY"))
        self.as_("admin", c.Appropriate(YEAR, "A-1", "settling_in", "cash", D(cash), "预算"))
        self.as_("admin", c.Appropriate(YEAR, "A-2", "housing", "in_kind", D(in_kind), "预算"))
        self.as_(
            "clerk",
            c.RegisterTalent("T-1", "王芳", "master", "研究院", date(2024, 1, 5), date(2027, 1, 4)),
        )

    def proposal(self, grant_id: str = "G-1", amount: str = "600.00") -> c.ProposeGrant:
        return c.ProposeGrant(grant_id, "T-1", YEAR, "settling_in", D(amount), "细则", "安家")

    def approved(self, grant_id: str = "G-1", amount: str = "600.00") -> None:
        self.as_("clerk", self.proposal(grant_id, amount))
        self.as_("approver", c.ApproveGrant(grant_id))

    def payment(
        self, payment_id: str, amount: str, reference: str, grant_id: str = "G-1"
    ) -> c.RecordPayment:
        return c.RecordPayment(payment_id, grant_id, D(amount), date(2024, 3, 1), reference)

    def line(self, programme: str = "settling_in") -> tuple[Decimal, Decimal]:
        fund_year = self.ledger.load(FundYear, YEAR, "fund year")
        line = fund_year.lines[programme]
        return line.committed, line.available

    # --- fund years ------------------------------------------------------------------

    def test_a_fund_year_is_opened_once_and_a_retry_answers_the_original(self) -> None:
        first = self.as_("admin", c.OpenFundYear(YEAR, "CNY"))
        again = self.as_("admin", c.OpenFundYear(YEAR, "CNY"))
        assert (first.replayed, again.replayed) == (False, True)
        assert again.value.year == YEAR and again.position >= first.position
        assert events_of(self.ledger) == ["FundYear.Opened"]

    def test_appropriations_add_to_a_line_whose_kind_the_first_one_fixes(self) -> None:
        self.funded(cash="1000.00")
        self.as_("admin", c.Appropriate(YEAR, "A-3", "settling_in", "cash", D("250.50"), "追加"))
        assert self.line() == (D("0"), D("1250.50"))
        retry = self.as_(
            "admin", c.Appropriate(YEAR, "A-3", "settling_in", "cash", D("250.50"), "追加")
        )
        assert retry.replayed and retry.value.amount == D("250.50")
        self.refused(
            "admin",
            c.Appropriate(YEAR, "A-3", "settling_in", "cash", D("1.00"), "追加"),
            IdempotencyConflict,
        )
        wrong = self.refused(
            "admin",
            c.Appropriate(YEAR, "A-4", "settling_in", "in_kind", D("1.00"), "r"),
            ValidationFailed,
        )
        assert isinstance(wrong, ValidationFailed) and wrong.field == "kind"
        self.refused(
            "admin", c.Appropriate(2099, "A-1", "settling_in", "cash", D("1"), "r"), NotFound
        )

    def test_a_closed_year_takes_no_appropriation_or_proposal(self) -> None:
        self.funded()
        self.as_("admin", c.CloseFundYear(YEAR, "决算"))
        assert self.as_("admin", c.CloseFundYear(YEAR, "决算")).replayed
        self.refused("admin", c.CloseFundYear(YEAR, "another"), InvalidState)
        self.refused(
            "admin",
            c.Appropriate(YEAR, "A-9", "settling_in", "cash", D("1"), "r"),
            FundYearClosed,
        )
        self.refused("clerk", self.proposal(), FundYearClosed)

    # --- talents ----------------------------------------------------------------------

    def test_a_registration_seals_the_name_and_a_retry_is_recognised_without_it(self) -> None:
        self.funded()
        talent = self.ledger.load(Talent, "T-1", "talent")
        assert talent.sealed_name.startswith("pd1:") and "王芳" not in talent.sealed_name
        assert (
            self.ledger.vault.open("T-1", self.ledger.vault.wrapped_key("T-1"), talent.sealed_name)
            == "王芳"
        )
        retry = self.as_(
            "clerk",
            c.RegisterTalent("T-1", "王芳", "master", "研究院", date(2024, 1, 5), date(2027, 1, 4)),
        )
        assert retry.replayed
        self.refused(
            "clerk",
            c.RegisterTalent("T-1", "李雷", "master", "研究院", date(2024, 1, 5), date(2027, 1, 4)),
            IdempotencyConflict,
        )

    def test_a_service_commitment_ending_before_arrival_is_refused(self) -> None:
        refusal = self.refused(
            "clerk",
            c.RegisterTalent("T-9", "某", "master", "某", date(2024, 5, 1), date(2024, 4, 30)),
            ValidationFailed,
        )
        assert isinstance(refusal, ValidationFailed)
        assert refusal.field == "service_commitment_until"

    def test_forgetting_a_talent_erases_its_name_and_records_it_once(self) -> None:
        self.funded()
        with acting_as("dpo", "req-forget"):
            self.ledger.forget_talent("T-1")
            self.ledger.forget_talent("T-1")
        talent = self.ledger.load(Talent, "T-1", "talent")
        assert (
            self.ledger.vault.open("T-1", self.ledger.vault.wrapped_key("T-1"), talent.sealed_name)
            is None
        )
        assert events_of(self.ledger).count("Talent.PersonalDataErased") == 1
        with pytest.raises(NotFound):
            self.ledger.forget_talent("T-404")

    # --- grants -----------------------------------------------------------------------

    def test_a_proposal_reserves_budget_up_to_what_is_available(self) -> None:
        self.funded(cash="1000.00")
        before = head(self.ledger)
        self.as_("clerk", self.proposal("G-1", "999.99"))
        assert sorted(events_of(self.ledger, before)) == ["FundYear.Reserved", "Grant.Proposed"]
        assert self.line() == (D("999.99"), D("0.01"))
        self.refused("clerk", self.proposal("G-2", "0.02"), BudgetExceeded)
        self.as_("clerk", self.proposal("G-2", "0.01"))
        assert self.line() == (D("1000.00"), D("0.00"))

    @pytest.mark.parametrize(
        ("talent_id", "year", "programme", "field"),
        [
            ("T-404", YEAR, "settling_in", "talent_id"),
            ("T-1", 2099, "settling_in", "fund_year"),
            ("T-1", YEAR, "leading_talent", "programme"),
            ("T-1", YEAR, "housing", "programme"),
        ],
    )
    def test_a_proposal_naming_what_is_not_there_is_refused_naming_the_field(
        self, talent_id: str, year: int, programme: str, field: str
    ) -> None:
        self.funded()
        refusal = self.refused(
            "clerk",
            c.ProposeGrant("G-1", talent_id, year, programme, D("1"), "p", "r"),
            ValidationFailed,
        )
        assert isinstance(refusal, ValidationFailed) and refusal.field == field

    def test_approval_is_by_the_acting_principal_never_the_proposer(self) -> None:
        self.funded()
        self.as_("clerk", self.proposal())
        self.refused("clerk", c.ApproveGrant("G-1", "mine"), SelfApproval)
        approved = self.as_("approver", c.ApproveGrant("G-1", "ok"))
        assert (approved.value.status, approved.value.decision_by) == ("approved", "approver")
        assert self.as_("approver", c.ApproveGrant("G-1", "ok")).replayed
        self.refused("approver", c.ApproveGrant("G-1", "another"), InvalidState)
        self.refused("approver", c.ApproveGrant("G-404"), NotFound)

    def test_the_approver_of_a_grant_cannot_pay_it(self) -> None:
        self.funded()
        self.approved()
        self.refused("approver", self.payment("P-1", "100.00", "BR-1"), SeparationOfDuties)
        assert not self.as_("treasury", self.payment("P-1", "100.00", "BR-1")).replayed

    def test_a_key_is_issued_once_by_name_and_never_with_both_duties(self) -> None:
        issued = self.as_("admin", c.IssueKey("wu", ("auditor",), None))
        assert (issued.value.name, issued.value.roles) == ("wu", ["auditor"])
        self.refused("admin", c.IssueKey("wu", ("clerk",), None), NameTaken)
        both = c.IssueKey("chen", ("approver", "treasury"), None)
        self.refused("admin", both, SeparationOfDuties)
        assert self.as_("admin", c.RevokeKey("wu", ("auditor",), None)).value.revoked
        assert self.as_("admin", c.RevokeKey("wu", ("auditor",), None)).replayed
        assert events_of(self.ledger) == ["ApiKey.Issued", "ApiKey.Revoked"]

    def test_rejection_and_revocation_give_back_what_the_grant_no_longer_holds(self) -> None:
        self.funded(cash="1000.00")
        self.as_("clerk", self.proposal("G-1", "600.00"))
        self.as_("approver", c.RejectGrant("G-1", "材料不全"))
        assert self.line() == (D("0.00"), D("1000.00"))
        self.approved("G-2", "700.00")
        self.as_("treasury", self.payment("P-1", "200.00", "BR-1", "G-2"))
        before = head(self.ledger)
        revoked = self.as_("approver", c.RevokeGrant("G-2", "终止"))
        assert sorted(events_of(self.ledger, before)) == ["FundYear.Released", "Grant.Revoked"]
        assert (revoked.value.effective_amount, revoked.value.payable) == (D("200.00"), D("0"))
        assert self.line() == (D("200.00"), D("800.00"))
        self.refused("treasury", self.payment("P-2", "1.00", "BR-2", "G-2"), InvalidState)

    # --- payments -----------------------------------------------------------------------

    def test_payments_never_exceed_the_grant_and_each_claims_its_bank_reference(self) -> None:
        self.funded()
        self.approved("G-1", "600.00")
        before = head(self.ledger)
        paid = self.as_("treasury", self.payment("P-1", "400.00", "BR-1"))
        assert sorted(events_of(self.ledger, before)) == [
            "BankReference.Claimed",
            "Grant.Paid",
            "Payment.Recorded",
        ]
        assert (paid.value.talent_id, paid.value.fund_year, paid.value.programme) == (
            "T-1",
            YEAR,
            "settling_in",
        )
        self.refused("treasury", self.payment("P-2", "200.01", "BR-2"), Overpayment)
        self.refused("treasury", self.payment("P-2", "1.00", "BR-1"), DuplicateBankReference)
        assert self.as_("treasury", self.payment("P-1", "400.00", "BR-1")).replayed
        self.refused("treasury", self.payment("P-1", "400.00", "BR-9"), IdempotencyConflict)
        self.as_("treasury", self.payment("P-2", "200.00", "BR-2"))

    def test_a_payment_for_a_grant_not_approved_or_unknown_is_refused(self) -> None:
        self.funded()
        self.as_("clerk", self.proposal())
        self.refused("treasury", self.payment("P-1", "1.00", "BR-1"), InvalidState)
        refusal = self.refused(
            "treasury", self.payment("P-1", "1.00", "BR-1", "G-404"), ValidationFailed
        )
        assert isinstance(refusal, ValidationFailed) and refusal.field == "grant_id"

    def test_a_returned_payment_is_payable_again(self) -> None:
        self.funded()
        self.approved("G-1", "600.00")
        self.as_("treasury", self.payment("P-1", "600.00", "BR-1"))
        returned = self.as_("treasury", c.ReturnPayment("P-1", date(2024, 3, 4), "户名不符"))
        assert returned.value.status == "returned"
        assert self.as_("treasury", c.ReturnPayment("P-1", date(2024, 3, 4), "户名不符")).replayed
        self.refused("treasury", c.ReturnPayment("P-1", date(2024, 3, 5), "x"), InvalidState)
        self.as_("treasury", self.payment("P-2", "600.00", "BR-2"))
        grant = self.ledger.load(Grant, "G-1", "grant")
        assert (grant.paid, grant.returned, grant.net_paid) == (
            D("1200.00"),
            D("600.00"),
            D("600.00"),
        )

    def test_a_return_on_a_revoked_grant_gives_its_amount_back_to_the_budget(self) -> None:
        self.funded(cash="1000.00")
        self.approved("G-1", "600.00")
        self.as_("treasury", self.payment("P-1", "250.00", "BR-1"))
        self.as_("approver", c.RevokeGrant("G-1", "终止"))
        assert self.line() == (D("250.00"), D("750.00"))
        self.as_("treasury", c.ReturnPayment("P-1", date(2024, 3, 4), "退票"))
        assert self.line() == (D("0.00"), D("1000.00"))

    def test_a_departed_talent_receives_nothing_new_and_no_money_dated_after(self) -> None:
        self.funded()
        self.approved("G-1", "600.00")
        self.as_("clerk", c.DepartTalent("T-1", date(2024, 3, 1), "辞职"))
        self.refused("clerk", self.proposal("G-2", "1.00"), TalentDeparted)
        self.refused(
            "clerk",
            c.GrantWaiver(
                "W-1", "T-1", YEAR, "housing", "A 301", date(2024, 1, 1), date(2024, 2, 1), D(1)
            ),
            TalentDeparted,
        )
        late = c.RecordPayment("P-2", "G-1", D("1.00"), date(2024, 3, 2), "BR-2")
        self.refused("treasury", late, TalentDeparted)
        self.as_("treasury", self.payment("P-1", "100.00", "BR-1"))  # on the departure day

    # --- rent waivers ---------------------------------------------------------------------

    def test_a_waiver_reserves_whole_months_of_rent_and_ending_it_releases_the_rest(
        self,
    ) -> None:
        self.funded(in_kind="9000.00")
        waiver = c.GrantWaiver(
            "W-1", "T-1", YEAR, "housing", "A 301", date(2024, 3, 10), date(2024, 8, 20), D(1500)
        )
        granted = self.as_("clerk", waiver)
        assert (granted.value.months, granted.value.value) == (6, D("9000.00"))
        assert self.line("housing") == (D("9000.00"), D("0.00"))
        self.as_("clerk", c.EndWaiver("W-1", date(2024, 4, 30)))
        assert self.line("housing") == (D("3000.00"), D("6000.00"))
        self.refused("clerk", c.EndWaiver("W-1", date(2024, 5, 31)), InvalidState)

    @pytest.mark.parametrize(
        ("start_on", "end_on", "field"),
        [
            (date(2024, 5, 1), date(2024, 4, 30), "end_on"),
            (date(2023, 12, 1), date(2024, 1, 31), "start_on"),
            (date(2024, 12, 1), date(2025, 1, 31), "end_on"),
        ],
    )
    def test_a_waiver_lies_inside_its_fund_year(
        self, start_on: date, end_on: date, field: str
    ) -> None:
        self.funded()
        refusal = self.refused(
            "clerk",
            c.GrantWaiver("W-1", "T-1", YEAR, "housing", "A", start_on, end_on, D(1)),
            ValidationFailed,
        )
        assert isinstance(refusal, ValidationFailed) and refusal.field == field

    # --- clawbacks ------------------------------------------------------------------------

    def test_clawbacks_and_recoveries_stay_within_what_was_paid_and_is_due(self) -> None:
        self.funded()
        self.approved("G-1", "600.00")
        self.as_("treasury", self.payment("P-1", "500.00", "BR-1"))
        self.refused(
            "clerk", c.AssessClawback("C-1", "G-1", D("500.01"), "离职"), ClawbackExceedsPaid
        )
        self.as_("clerk", c.AssessClawback("C-1", "G-1", D("300.00"), "离职"))
        recovery = c.RecordRecovery("C-1", "R-1", D("100.00"), date(2024, 6, 1), "BR-R1")
        self.as_("treasury", recovery)
        assert self.as_("treasury", recovery).replayed
        self.refused(
            "treasury",
            c.RecordRecovery("C-1", "R-2", D("200.01"), date(2024, 6, 2), "BR-R2"),
            Overpayment,
        )
        self.refused(  # recoveries and payments share one space of bank references
            "treasury",
            c.RecordRecovery("C-1", "R-2", D("1.00"), date(2024, 6, 2), "BR-1"),
            DuplicateBankReference,
        )

    # --- atomic runs and groups -----------------------------------------------------------

    def test_an_atomic_run_records_all_or_nothing(self) -> None:
        self.funded(cash="1000.00")
        before = head(self.ledger)
        with acting_as("clerk", "req-batch"), pytest.raises(AtomicRefusal) as refusal:
            self.ledger.execute_atomic(
                [self.proposal("G-1", "600.00"), self.proposal("G-2", "600.00")]
            )
        assert (refusal.value.index, refusal.value.code) == (1, "budget_exceeded")
        assert head(self.ledger) == before
        with acting_as("clerk", "req-batch"):
            outcomes = self.ledger.execute_atomic(
                [self.proposal("G-1", "600.00"), self.proposal("G-2", "400.00")]
            )
        assert len({o.position for o in outcomes}) == 1
        assert self.line() == (D("1000.00"), D("0.00"))

    def test_a_refusal_in_a_group_leaves_the_other_commands_as_if_alone(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An overpayment refused after its bank reference was claimed: the claim goes
        with the refusal, so the next command of the same group may claim it, and the
        group still commits once (no command had to run again alone)."""
        self.funded()
        self.approved("G-1", "600.00")
        self.ledger.start_group_commit()
        gate, started = threading.Event(), threading.Event()
        recorder = self.ledger.recorder
        appends: list[str] = []
        for name in ("append_session", "append_checked"):
            real = getattr(recorder, name)

            def counted(*args: Any, name: str = name, real: Any = real) -> Any:
                appends.append(name)
                return real(*args)

            monkeypatch.setattr(recorder, name, counted)

        def hold(uow: UnitOfWork, _: None) -> None:
            started.set()
            gate.wait(10)

        first = self.ledger.run_later(hold, None)
        started.wait(10)  # the writer is busy: the next two wait for it, as one group
        with acting_as("treasury", "req-group"):
            steps = [
                self.ledger.step(self.payment("P-1", "600.01", "BR-1")),
                self.ledger.step(self.payment("P-2", "600.00", "BR-1")),
            ]
            too_much, fits = [self.ledger.execute_later(step) for step in steps]
        gate.set()
        first.result(10)
        with pytest.raises(Overpayment):
            too_much.result(10)
        assert fits.result(10).value.bank_reference == "BR-1"
        assert sorted(events_of(self.ledger)[-3:]) == [
            "BankReference.Claimed",
            "Grant.Paid",
            "Payment.Recorded",
        ]
        # the held group's (decided on current copies, recorded in one statement), and
        # the pair's (with a refusal, checked under the lock)
        assert appends == ["append_checked", "append_session"]

    # --- the store's check ahead of the events (`AppendSession.expect_current`) ----

    def test_a_session_expecting_a_version_no_longer_current_records_nothing(self) -> None:
        self.funded()
        year = FundYear.create_id(YEAR)
        version = self.ledger.load(FundYear, YEAR, "fund year").version
        stored = StoredEvent(uuid4(), 1, "tests:Nothing", b"{}")  # never recorded
        before = head(self.ledger)
        with pytest.raises(Overtaken), self.ledger.store.append_session() as session:
            session.expect_current({year: version - 1})
            session.append([stored])
        assert head(self.ledger) == before
        with self.ledger.store.append_session() as session:  # current: nothing to say
            session.expect_current({year: version, Grant.create_id("G-never"): 0})
        assert head(self.ledger) == before
