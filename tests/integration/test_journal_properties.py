"""The double-entry journal as a property (docs/design.md, "Double-entry journal"; the chart of
accounts in projections/views/journal.py): for any sequence of commands, accepted or refused,
every posting balances, the trial balance balances, and each account's balance is
the balance-projection figure it stands for; the year-end statement balances and the
execution report agrees with both.

One database serves a test function; each hypothesis example works in a fund year,
talents and ids of its own, and looks at nothing else.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.adapters.postgres import datastore_of
from ledger.domain.clawbacks import Clawback
from ledger.domain.context import acting_as
from ledger.domain.errors import LedgerError
from ledger.domain.grants import Grant
from ledger.domain.money import ZERO
from ledger.domain.payments import Payment
from ledger.usecases.ledger import Ledger
from projections import reads, reports
from projections.worker import ProjectionWorker
from tests import commands as c

pytestmark = pytest.mark.db

CENT = Decimal("0.01")
LINES = {"settling_in": "cash", "project_support": "cash", "housing": "in_kind"}
PROPOSERS = ("clerk-a", "clerk-b")
APPROVERS = ("chief", "deputy", "clerk-a")  # clerk-a approving its own proposal is refused
TALENTS = 3
_examples = itertools.count(1)


def fen(n: int) -> Decimal:
    return (Decimal(n) / 100).quantize(CENT)


def part(whole: Decimal, percent: int) -> Decimal:
    """`percent` % of `whole` (over 100 % asks for too much), at least one fen."""
    return max(CENT, (whole * percent / 100).quantize(CENT, rounding=ROUND_DOWN))


# --- commands -----------------------------------------------------------------------

AMOUNT = st.integers(min_value=1, max_value=5_000_000).map(fen)
PERCENT = st.sampled_from([10, 25, 50, 99, 100, 100, 130])
# which existing id a command names: mostly one of the latest (see `Example.pick`)
INDEX = st.one_of(st.integers(min_value=0, max_value=2), st.integers(min_value=0, max_value=50))
MONTH = st.integers(min_value=1, max_value=12)
PROGRAMME = st.sampled_from([*LINES, "unknown"])  # the wrong kind or unknown: refused
CASH = st.sampled_from(["settling_in", "settling_in", "project_support", "housing", "unknown"])
IN_KIND = st.sampled_from(["housing", "housing", "housing", "settling_in"])

STRATEGIES = {
    "propose": st.tuples(st.just("propose"), INDEX, CASH, AMOUNT, st.sampled_from(PROPOSERS)),
    "approve": st.tuples(st.just("approve"), INDEX, st.sampled_from(APPROVERS)),
    "pay": st.tuples(st.just("pay"), INDEX, PERCENT, MONTH),
    "return": st.tuples(st.just("return"), INDEX, st.integers(min_value=0, max_value=5)),
    "waiver": st.tuples(st.just("waiver"), INDEX, IN_KIND, MONTH, MONTH, AMOUNT),
    "end_waiver": st.tuples(st.just("end_waiver"), INDEX, MONTH),
    "clawback": st.tuples(st.just("clawback"), INDEX, PERCENT),
    "recover": st.tuples(st.just("recover"), INDEX, PERCENT),
    "reject": st.tuples(st.just("reject"), INDEX),
    "revoke": st.tuples(st.just("revoke"), INDEX),
    "appropriate": st.tuples(st.just("appropriate"), PROGRAMME, AMOUNT),
    "depart": st.tuples(st.just("depart"), INDEX, MONTH),
}
# how often each is drawn: enough proposals and approvals for payments to apply
WEIGHTS = {
    "propose": 5,
    "approve": 5,
    "pay": 6,
    "return": 3,
    "waiver": 2,
    "end_waiver": 1,
    "clawback": 3,
    "recover": 3,
    "reject": 1,
    "revoke": 1,
    "appropriate": 1,
    "depart": 1,
}
COMMANDS = st.sampled_from([k for k, w in WEIGHTS.items() for _ in range(w)]).flatmap(
    STRATEGIES.__getitem__
)


@dataclass
class Example:
    """One hypothesis example's fund year and ids."""

    app: Ledger
    year: int
    prefix: str
    serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    grants: list[str] = field(default_factory=list)
    approved: list[str] = field(default_factory=list)
    payments: list[str] = field(default_factory=list)
    waivers: list[str] = field(default_factory=list)
    clawbacks: list[str] = field(default_factory=list)
    accepted: int = 0
    refused: int = 0

    @property
    def talents(self) -> list[str]:
        return [f"{self.prefix}T{n}" for n in range(TALENTS)]

    def new(self, kind: str) -> str:
        return f"{self.prefix}{kind}{next(self.serial)}"

    def day(self, month: int, day: int = 15) -> date:
        return date(self.year, month, day)

    def send(self, actor: str, call: Callable[[], Any], created: list[str] | None = None,
             new_id: str = "") -> None:  # fmt: skip
        """Run a command as `actor`; a created id joins `created` when accepted."""
        try:
            with acting_as(actor, self.new("req")):
                call()
        except LedgerError:
            self.refused += 1
        else:
            self.accepted += 1
            if created is not None:
                created.append(new_id)

    def start(self) -> None:
        a = self.app
        self.send("admin", lambda: a.execute(c.OpenFundYear(self.year, "CNY")))
        for programme, kind in LINES.items():
            self.send(
                "admin",
                lambda p=programme, k=kind: a.execute(
                    c.Appropriate(self.year, self.new("AP"), p, k, Decimal(100_000), "初始预算")
                ),
            )
        for talent in self.talents:
            self.send(
                "clerk-a",
                lambda t=talent: a.execute(
                    c.RegisterTalent(
                        t, "测试", "doctorate", "某单位", self.day(1, 1), date(self.year + 5, 1, 1)
                    )
                ),
            )

    def run(self, command: tuple[Any, ...]) -> None:  # noqa: PLR0912, PLR0915 - a branch per command
        a = self.app
        kind, *args = command

        def pick(ids: list[str], i: int) -> str:
            """The `i`-th latest of `ids` (wrapping), or an id that names nothing."""
            return ids[-1 - i % len(ids)] if ids else self.new("none")

        if kind == "appropriate":
            programme, amount = args
            ap_kind = LINES.get(programme, "cash")
            self.send(
                "admin",
                lambda: a.execute(
                    c.Appropriate(self.year, self.new("AP"), programme, ap_kind, amount, "追加")
                ),
            )
        elif kind == "propose":
            i, programme, amount, proposer = args
            grant_id = self.new("G")
            cmd = c.ProposeGrant(
                grant_id, pick(self.talents, i), self.year, programme, amount, "政策", "补贴"
            )
            self.send(proposer, lambda: a.execute(cmd), self.grants, grant_id)
        elif kind == "approve":
            i, approver = args
            grant_id = pick(self.grants, i)
            approve = c.ApproveGrant(grant_id, None)
            self.send(approver, lambda: a.execute(approve), self.approved, grant_id)
        elif kind == "reject":
            grant_id = pick(self.grants, args[0])
            self.send("chief", lambda: a.execute(c.RejectGrant(grant_id, "不符合")))
        elif kind == "revoke":
            paid = [g for g in self.approved if self._claimable(g) != Decimal(100)]
            grant_id = pick(paid or self.approved, args[0])  # partly paid ones first
            self.send("chief", lambda: a.execute(c.RevokeGrant(grant_id, "撤销")))
        elif kind == "pay":
            i, percent, month = args
            grant_id = pick(self.approved, i)
            amount = part(self._payable(grant_id), percent)
            payment_id = self.new("P")
            cmd = c.RecordPayment(payment_id, grant_id, amount, self.day(month), self.new("BR"))
            self.send("treasury", lambda: a.execute(cmd), self.payments, payment_id)
        elif kind == "return":
            i, days = args
            payment_id = pick(self.payments, i)
            returned_on = self._value_date(payment_id)
            if returned_on.day + days <= 28:
                returned_on = returned_on.replace(day=returned_on.day + days)
            cmd = c.ReturnPayment(payment_id, returned_on, "退票")
            self.send("treasury", lambda: a.execute(cmd))
        elif kind == "waiver":
            i, programme, start, end, rent = args
            waiver_id = self.new("W")
            cmd = c.GrantWaiver(
                waiver_id,
                pick(self.talents, i),
                self.year,
                programme,
                "人才公寓",
                self.day(min(start, end), 1),
                self.day(max(start, end), 28),
                (rent / 100).quantize(CENT) or CENT,
            )
            self.send("clerk-b", lambda: a.execute(cmd), self.waivers, waiver_id)
        elif kind == "end_waiver":
            i, month = args
            cmd = c.EndWaiver(pick(self.waivers, i), self.day(month, 10))
            self.send("clerk-b", lambda: a.execute(cmd))
        elif kind == "depart":
            i, month = args
            cmd = c.DepartTalent(pick(self.talents, i), self.day(month), "离职")
            self.send("clerk-a", lambda: a.execute(cmd))
        elif kind == "clawback":
            i, percent = args
            paid = [g for g in self.approved if self._claimable(g) != Decimal(100)]
            grant_id = pick(paid or self.approved, i)
            clawback_id = self.new("C")
            amount = part(self._claimable(grant_id), percent)
            cmd = c.AssessClawback(clawback_id, grant_id, amount, "服务期未满")
            self.send("clerk-b", lambda: a.execute(cmd), self.clawbacks, clawback_id)
        elif kind == "recover":
            i, percent = args
            open_ = [k for k in self.clawbacks if self._due(k) != Decimal(100)]
            clawback_id = pick(open_ or self.clawbacks, i)
            amount = part(self._due(clawback_id), percent)
            cmd = c.RecordRecovery(
                clawback_id, self.new("R"), amount, self.day(12, 20), self.new("RB")
            )
            self.send("treasury", lambda: a.execute(cmd))
        elif kind == "close":
            self.send("admin", lambda: a.execute(c.CloseFundYear(self.year, "决算")))
        else:  # pragma: no cover
            raise AssertionError(kind)

    # what the application says now, to ask for amounts that often fit (100 when
    # there is nothing to ask for: the command will be refused)

    def _payable(self, grant_id: str) -> Decimal:
        try:
            return self.app.load(Grant, grant_id, "grant").payable or Decimal(100)
        except LedgerError:
            return Decimal(100)

    def _claimable(self, grant_id: str) -> Decimal:
        try:
            grant = self.app.load(Grant, grant_id, "grant")
        except LedgerError:
            return Decimal(100)
        return (grant.net_paid - grant.clawed_back) or Decimal(100)

    def _due(self, clawback_id: str) -> Decimal:
        try:
            return self.app.load(Clawback, clawback_id, "clawback").due or Decimal(100)
        except LedgerError:
            return Decimal(100)

    def _value_date(self, payment_id: str) -> date:
        try:
            return self.app.load(Payment, payment_id, "payment").value_date
        except LedgerError:
            return self.day(6)


# --- the properties -----------------------------------------------------------------


def check_journal(app: Ledger, year: int, talents: list[str]) -> None:
    datastore = datastore_of(app)
    with datastore.transaction(commit=False) as curs:
        # every posting (one event's lines) balances
        curs.execute(
            "SELECT position, sum(debit) AS dr, sum(credit) AS cr FROM rm_journal "
            "WHERE year = %s GROUP BY position HAVING sum(debit) <> sum(credit)",
            (year,),
        )
        assert curs.fetchall() == []
        # every line is one-sided and positive
        curs.execute(
            "SELECT * FROM rm_journal WHERE year = %s AND NOT "
            "((debit > 0 AND credit = 0) OR (credit > 0 AND debit = 0))",
            (year,),
        )
        assert curs.fetchall() == []
        # the accounts are the sums of the journal
        curs.execute(
            "SELECT account, programme, sum(debit) AS debit, sum(credit) AS credit "
            "FROM rm_journal WHERE year = %s GROUP BY account, programme",
            (year,),
        )
        journal = {(r["account"], r["programme"]): (r["debit"], r["credit"]) for r in curs}
        curs.execute(
            "SELECT account, programme, debit, credit FROM rm_accounts WHERE year = %s", (year,)
        )
        accounts = {(r["account"], r["programme"]): (r["debit"], r["credit"]) for r in curs}
    assert accounts == journal

    trial = reads.trial_balance(datastore, year)
    assert trial["total_debit"] == trial["total_credit"]
    debit_balance: dict[tuple[str, str], Decimal] = {}
    for entry in trial["accounts"]:
        assert min(entry["debit"], entry["credit"]) == ZERO, entry
        account, _, programme = entry["account"].partition(":")
        assert programme == entry["programme"]
        debit_balance[account, programme] = entry["debit"] - entry["credit"]
    assert sum(debit_balance.values(), ZERO) == ZERO

    def dr(account: str, programme: str) -> Decimal:
        return debit_balance.get((account, programme), ZERO)

    def cr(account: str, programme: str) -> Decimal:
        return -dr(account, programme)

    fund_year = reads.fund_year(datastore, year)
    balances = [
        b for t in talents for b in reads.talent(datastore, t)["balances"] if b["fund_year"] == year
    ]
    programmes = {line["programme"] for line in fund_year["lines"]}
    assert {programme for _, programme in debit_balance} <= programmes
    for line in fund_year["lines"]:
        p = line["programme"]
        mine = [b for b in balances if b["programme"] == p]
        assert dr("appropriation", p) == line["appropriated"], p
        assert cr("available", p) == line["available"], p
        assert cr("commitment", p) == line["committed"], p
        assert cr("payable", p) == sum((b["outstanding"] for b in mine), ZERO), p
        assert dr("expense", p) == sum((b["approved"] for b in mine), ZERO), p
        assert cr("bank", p) == line["net_paid"] - line["clawback_recovered"], p
        assert dr("receivable", p) == line["clawback_assessed"] - line["clawback_recovered"], p
        assert cr("clawback_recovery", p) == line["clawback_assessed"], p
        assert dr("in_kind_expense", p) == line["in_kind_value"], p
        assert cr("in_kind_provided", p) == line["in_kind_value"], p
        # and the talents' figures add up to the line's
        for name in ("paid", "returned", "in_kind_value", "clawback_assessed"):
            assert sum((b[name] for b in mine), ZERO) == line[name], (p, name)
    check_reports(app, year, fund_year, balances)


def check_reports(
    ledger: Ledger, year: int, fund_year: dict[str, Any], balances: list[dict[str, Any]]
) -> None:
    """The year-end statement balances (it refuses to answer otherwise) and agrees with
    the balances; the execution report after every date counts what they count."""
    datastore = datastore_of(ledger)
    statement = reports.year_end_report(datastore, year)
    executed = reports.execution_report(datastore, year, date(year + 1, 12, 31))
    assert executed["elapsed_share"] == "1.0000"
    lines = {line["programme"]: line for line in fund_year["lines"]}
    assert {line["programme"] for line in statement["lines"]} == lines.keys()
    for end, run in zip(statement["lines"], executed["lines"], strict=True):
        p = end["programme"]
        mine = [b for b in balances if b["programme"] == p]
        assert end["lapsed"] == lines[p]["available"], p
        assert end["net_paid"] == run["net_paid"] == lines[p]["net_paid"], p
        assert end["in_kind_value"] == run["in_kind_value"] == lines[p]["in_kind_value"], p
        assert end["carried_forward"] == sum((b["outstanding"] for b in mine), ZERO), p
        assert end["pending"] == sum((b["granted"] - b["approved"] for b in mine), ZERO), p
        assert end["clawback_recovered"] == lines[p]["clawback_recovered"], p


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    commands=st.lists(COMMANDS, min_size=8, max_size=60),
    close_at=st.integers(min_value=6, max_value=100),  # past the end: the year stays open
)
def test_any_commands_keep_the_journal_balanced_and_equal_to_the_balances(
    ledger: Ledger,
    worker: ProjectionWorker,
    commands: list[tuple[Any, ...]],
    close_at: int,
) -> None:
    n = next(_examples)
    example = Example(ledger, 2200 + n, f"j{n}-")
    example.start()
    for i, command in enumerate(commands):
        if i == close_at:
            example.run(("close",))
        example.run(command)
    worker.catch_up()
    check_journal(ledger, example.year, example.talents)


def test_a_full_life_keeps_the_journal_balanced(ledger: Ledger, worker: ProjectionWorker) -> None:
    """One fixed, long sequence where every kind of command is accepted at least once."""
    example = Example(ledger, 2199, "life-")
    example.start()
    script: list[tuple[Any, ...]] = [  # index 0: the latest id of its kind
        ("propose", 0, "settling_in", Decimal(30000), "clerk-a"),
        ("approve", 0, "chief"),
        ("pay", 0, 50, 3),
        ("pay", 0, 50, 4),
        ("return", 0, 2),
        ("propose", 0, "settling_in", Decimal(20000), "clerk-b"),
        ("approve", 0, "clerk-a"),
        ("pay", 0, 40, 5),
        ("revoke", 0),
        ("return", 0, 1),  # a return after the revoke
        ("propose", 0, "project_support", Decimal(5000), "clerk-a"),
        ("reject", 0),
        ("waiver", 0, "housing", 1, 12, Decimal(150000)),
        ("end_waiver", 0, 6),
        ("depart", 0, 9),
        ("clawback", 0, 50),  # on the first grant: the only one with net paid left
        ("recover", 0, 40),
        ("recover", 0, 100),
        ("close",),
        ("appropriate", "settling_in", Decimal(1)),
    ]
    for command in script:
        example.run(command)
    assert example.accepted >= len(script) - 1 + 7  # only the appropriation after closing
    worker.catch_up()
    check_journal(ledger, example.year, example.talents)
    trial = reads.trial_balance(datastore_of(ledger), example.year)
    assert trial["total_debit"] > 0
