"""Red flags an auditor must see (the exceptions report), computed from plain facts.

Pure functions: the read models gather the facts, this module judges them, so each
rule can be tested firing and not firing without a database.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import groupby, pairwise
from typing import Any

from ledger.domain.dates import whole_months
from ledger.domain.instalments import InstalmentPlan, instalment_status, schedule
from ledger.domain.money import FEN, ZERO, format_money
from ledger.domain.runs import OVERDUE_AFTER_DAYS as RUN_ITEM_OVERDUE_DAYS

CLAWBACK_OVERDUE_DAYS = 90
UNPAID_DAYS = 180
DUPLICATE_WINDOW_DAYS = 7
#: the programme whose instalments a rent waiver must not overlap
RENT_SUBSIDY = "rent_subsidy"


@dataclass(frozen=True)
class TalentFacts:
    talent_id: str
    arrived_on: date
    service_commitment_until: date
    departed_on: date | None


@dataclass(frozen=True)
class GrantFacts:
    grant_id: str
    talent_id: str
    fund_year: int
    programme: str
    amount: Decimal
    status: str
    approved_on: date | None
    net_paid: Decimal
    clawed_back: Decimal
    plan: InstalmentPlan | None = None


@dataclass(frozen=True)
class WaiverFacts:
    waiver_id: str
    talent_id: str
    fund_year: int
    start_on: date
    last_day: date  # its end, or the day it ended early


@dataclass(frozen=True)
class RunItemFacts:
    """A disbursement run's item the bank has answered neither way."""

    run_id: str
    payment_id: str
    grant_id: str
    talent_id: str
    value_date: date


@dataclass(frozen=True)
class PaymentFacts:
    payment_id: str
    talent_id: str
    fund_year: int
    programme: str
    amount: Decimal
    value_date: date
    returned: bool


@dataclass(frozen=True)
class ClawbackFacts:
    clawback_id: str
    grant_id: str
    talent_id: str
    fund_year: int
    amount: Decimal
    recovered: Decimal
    assessed_on: date


@dataclass(frozen=True)
class UnmatchedLine:
    reconciliation_id: str
    bucket: str
    bank_reference: str
    amount: Decimal
    value_date: date


@dataclass(frozen=True)
class StatementFacts:
    """An imported statement that stated its account and balances."""

    reconciliation_id: str
    account: str
    opening: Decimal
    closing: Decimal
    closing_on: date
    position: int  # when it was imported: of two closing on one day, the later counts


@dataclass(frozen=True)
class Facts:
    talents: list[TalentFacts] = field(default_factory=list)
    grants: list[GrantFacts] = field(default_factory=list)
    payments: list[PaymentFacts] = field(default_factory=list)
    clawbacks: list[ClawbackFacts] = field(default_factory=list)
    unmatched: list[UnmatchedLine] = field(default_factory=list)
    statements: list[StatementFacts] = field(default_factory=list)
    waivers: list[WaiverFacts] = field(default_factory=list)
    pending_run_items: list[RunItemFacts] = field(default_factory=list)


def pro_rata_clawback(
    net_paid: Decimal, amount: Decimal, months_served: int, commitment_months: int
) -> Decimal:
    """`max(0, net_paid - amount * served / committed)`, rounded half-up to the fen."""
    if commitment_months <= 0:
        return net_paid
    kept = amount * Decimal(months_served) / Decimal(commitment_months)
    return max(ZERO, (net_paid - kept).quantize(FEN, rounding=ROUND_HALF_UP))


def _flag(code: str, detail: str, **ids: Any) -> dict[str, Any]:
    return {"code": code, "detail": detail, **ids}


def _departures(facts: Facts) -> list[dict[str, Any]]:
    talents = {t.talent_id: t for t in facts.talents}
    flags = []
    for g in facts.grants:
        t = talents.get(g.talent_id)
        if t is None or t.departed_on is None or t.departed_on >= t.service_commitment_until:
            continue
        if g.net_paid <= 0 or g.clawed_back > 0:
            continue
        served = whole_months(t.arrived_on, t.departed_on)
        committed = whole_months(t.arrived_on, t.service_commitment_until)
        proposed = pro_rata_clawback(g.net_paid, g.amount, served, committed)
        flags.append(
            _flag(
                "departed_without_clawback",
                f"talent {t.talent_id} left on {t.departed_on}, before the commitment end "
                f"{t.service_commitment_until}; grant {g.grant_id} has {format_money(g.net_paid)} "
                f"net paid and no clawback; proposed clawback {format_money(proposed)}",
                talent_id=t.talent_id,
                grant_id=g.grant_id,
                fund_year=g.fund_year,
                programme=g.programme,
                proposed_clawback=format_money(proposed),
                inputs={
                    "net_paid": format_money(g.net_paid),
                    "amount": format_money(g.amount),
                    "arrived_on": t.arrived_on.isoformat(),
                    "departed_on": t.departed_on.isoformat(),
                    "service_commitment_until": t.service_commitment_until.isoformat(),
                    "months_served": served,
                    "commitment_months": committed,
                },
            )
        )
    return flags


def _overdue_clawbacks(facts: Facts, today: date) -> list[dict[str, Any]]:
    return [
        _flag(
            "clawback_overdue",
            f"clawback {c.clawback_id} assessed on {c.assessed_on} still has "
            f"{format_money(c.amount - c.recovered)} due after {CLAWBACK_OVERDUE_DAYS} days",
            clawback_id=c.clawback_id,
            grant_id=c.grant_id,
            talent_id=c.talent_id,
            fund_year=c.fund_year,
        )
        for c in facts.clawbacks
        if c.recovered < c.amount and today > c.assessed_on + timedelta(CLAWBACK_OVERDUE_DAYS)
    ]


def _duplicate_payments(facts: Facts) -> list[dict[str, Any]]:
    """Same talent, line and amount within 7 days; a returned payment and its
    re-payment are not suspicious, so returned payments are left out."""
    groups: dict[tuple[str, int, str, Decimal], list[PaymentFacts]] = defaultdict(list)
    for p in facts.payments:
        if not p.returned:
            groups[p.talent_id, p.fund_year, p.programme, p.amount].append(p)
    flags = []
    for (talent_id, year, programme, amount), payments in groups.items():
        payments.sort(key=lambda p: (p.value_date, p.payment_id))
        for first, second in pairwise(payments):
            if (second.value_date - first.value_date).days <= DUPLICATE_WINDOW_DAYS:
                flags.append(
                    _flag(
                        "duplicate_payment_suspected",
                        f"payments {first.payment_id} and {second.payment_id} pay "
                        f"{format_money(amount)} to talent {talent_id} on {programme} "
                        f"{(second.value_date - first.value_date).days} days apart",
                        talent_id=talent_id,
                        fund_year=year,
                        programme=programme,
                        payment_ids=[first.payment_id, second.payment_id],
                    )
                )
    return flags


def _first_due(g: GrantFacts) -> date | None:
    """When a grant's money first falls due: its approval, or its plan's first
    instalment if that is later."""
    if g.approved_on is None or g.plan is None:
        return g.approved_on
    return max(g.approved_on, g.plan.first_due_on)


def _unpaid_grants(facts: Facts, today: date) -> list[dict[str, Any]]:
    return [
        _flag(
            "approved_unpaid",
            f"grant {g.grant_id} was approved on {g.approved_on}, due from {due}, and is "
            f"unpaid after {UNPAID_DAYS} days",
            grant_id=g.grant_id,
            talent_id=g.talent_id,
            fund_year=g.fund_year,
            programme=g.programme,
        )
        for g in facts.grants
        if g.status == "approved"
        and (due := _first_due(g)) is not None
        and g.net_paid == 0
        and today > due + timedelta(UNPAID_DAYS)
    ]


def _clawbacks_above_net_paid(facts: Facts) -> list[dict[str, Any]]:
    """A bank return after a clawback can leave more assessed than was net paid."""
    return [
        _flag(
            "clawback_exceeds_net_paid",
            f"grant {g.grant_id} has {format_money(g.clawed_back)} clawed back but only "
            f"{format_money(g.net_paid)} net paid",
            grant_id=g.grant_id,
            talent_id=g.talent_id,
            fund_year=g.fund_year,
            programme=g.programme,
        )
        for g in facts.grants
        if g.clawed_back > g.net_paid
    ]


def _unmatched_lines(facts: Facts) -> list[dict[str, Any]]:
    return [
        _flag(
            "reconciliation_unmatched",
            f"{u.bucket}: bank reference {u.bank_reference}, {format_money(u.amount)} "
            f"on {u.value_date} (reconciliation {u.reconciliation_id})",
            reconciliation_id=u.reconciliation_id,
            bank_reference=u.bank_reference,
            bucket=u.bucket,
        )
        for u in facts.unmatched
    ]


def _discontinuities(facts: Facts) -> list[dict[str, Any]]:
    """A statement that does not open where the previous one of its account closed (the
    latest closing before it closes), judged over every statement imported so far: a
    statement imported late fills the gap it explains."""
    by_account: dict[str, list[StatementFacts]] = defaultdict(list)
    for statement in facts.statements:
        by_account[statement.account].append(statement)
    flags = []
    for account, statements in sorted(by_account.items()):
        statements.sort(key=lambda s: (s.closing_on, s.position))
        previous: StatementFacts | None = None
        for _, same_day in groupby(statements, key=lambda s: s.closing_on):
            closing_together = list(same_day)
            for s in closing_together:
                if previous is not None and s.opening != previous.closing:
                    flags.append(
                        _flag(
                            "statement_discontinuity",
                            f"statement {s.reconciliation_id} of account {account} opens at "
                            f"{format_money(s.opening)}, but the previous one, "
                            f"{previous.reconciliation_id}, closed at "
                            f"{format_money(previous.closing)} on {previous.closing_on}",
                            reconciliation_id=s.reconciliation_id,
                            previous_reconciliation_id=previous.reconciliation_id,
                            account=account,
                        )
                    )
            previous = closing_together[-1]
    return flags


def _months(first: date, last: date) -> set[tuple[int, int]]:
    """The calendar months a period touches, as (year, month)."""
    return {
        (y, m)
        for y in range(first.year, last.year + 1)
        for m in range(1, 13)
        if (first.year, first.month) <= (y, m) <= (last.year, last.month)
    }


def _double_housing(facts: Facts) -> list[dict[str, Any]]:
    """A rent-subsidy instalment (paid or to be paid; a cancelled one is neither) falling
    in a month one of the talent's rent waivers touches: two housing benefits for one
    month (重复享受)."""
    waivers: dict[str, list[WaiverFacts]] = defaultdict(list)
    for w in facts.waivers:
        waivers[w.talent_id].append(w)
    flags = []
    for g in facts.grants:
        if g.programme != RENT_SUBSIDY or not waivers.get(g.talent_id):
            continue
        due = [
            i.due_on
            for i in schedule(g.amount, g.plan, g.approved_on, g.net_paid)
            if i.due_on is not None and instalment_status(g.status, i) != "cancelled"
        ]
        for w in waivers[g.talent_id]:
            covered = _months(w.start_on, w.last_day)
            both = sorted({f"{d.year}-{d.month:02d}" for d in due if (d.year, d.month) in covered})
            if both:
                flags.append(
                    _flag(
                        "double_housing_benefit",
                        f"grant {g.grant_id} pays rent subsidy for {', '.join(both)}, months "
                        f"rent waiver {w.waiver_id} also covers",
                        talent_id=g.talent_id,
                        grant_id=g.grant_id,
                        waiver_id=w.waiver_id,
                        fund_year=g.fund_year,
                        programme=g.programme,
                        months=both,
                    )
                )
    return flags


def _overdue_run_items(facts: Facts, today: date) -> list[dict[str, Any]]:
    return [
        _flag(
            "run_item_overdue",
            f"item {i.payment_id} of run {i.run_id}, paid on {i.value_date}, is neither "
            f"settled nor rejected after {RUN_ITEM_OVERDUE_DAYS} days",
            run_id=i.run_id,
            payment_id=i.payment_id,
            grant_id=i.grant_id,
            talent_id=i.talent_id,
        )
        for i in facts.pending_run_items
        if today > i.value_date + timedelta(RUN_ITEM_OVERDUE_DAYS)
    ]


def find_exceptions(facts: Facts, today: date) -> list[dict[str, Any]]:
    """Every red flag of the exceptions report in `facts`, as of `today`."""
    return [
        *_departures(facts),
        *_overdue_clawbacks(facts, today),
        *_duplicate_payments(facts),
        *_unpaid_grants(facts, today),
        *_double_housing(facts),
        *_overdue_run_items(facts, today),
        *_clawbacks_above_net_paid(facts),
        *_unmatched_lines(facts),
        *_discontinuities(facts),
    ]
