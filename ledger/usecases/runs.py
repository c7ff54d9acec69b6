"""Disbursement runs: prepared from every unpaid instalment due, settled from what the
bank answered, each settled item recorded as the payment `POST /v1/payments` would."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated

from ledger.domain.errors import (
    DuplicateBankReference,
    IdempotencyConflict,
    InvalidState,
    NotFound,
    Overpayment,
    SeparationOfDuties,
    TalentDeparted,
    ValidationFailed,
)
from ledger.domain.grants import Grant
from ledger.domain.payments import Payment
from ledger.domain.runs import (
    MAX_RUN_ITEMS,
    RUN_ID_PATTERN,
    DisbursementRun,
    RunItem,
    Settlement,
)
from ledger.domain.talents import Talent
from ledger.domain.values import Identifier, MaxItems, Slug, Text, TextFormat, Year
from ledger.engine.unit_of_work import UnitOfWork
from ledger.usecases.payments import RecordPayment, record_payment
from ledger.usecases.registry import fingerprint, use_case

RunId = Annotated[str, TextFormat(RUN_ID_PATTERN)]


@dataclass(frozen=True)
class PrepareRun:
    run_id: RunId
    due_on: date
    value_date: date
    fund_year: Year | None = None
    programme: Slug | None = None


@dataclass(frozen=True)
class RunCandidates:
    """A run to prepare, with the grants the read models know to be approved in its
    fund year and programme: each is read again from its events before it is taken."""

    request: PrepareRun
    grant_ids: tuple[str, ...]


@dataclass(frozen=True)
class SettledItem:
    payment_id: Identifier
    bank_reference: Identifier


@dataclass(frozen=True)
class RejectedItem:
    payment_id: Identifier
    reason: Text


@dataclass(frozen=True)
class SettleRun:
    run_id: RunId
    settled: Annotated[tuple[SettledItem, ...], MaxItems(MAX_RUN_ITEMS)] = ()
    rejected: Annotated[tuple[RejectedItem, ...], MaxItems(MAX_RUN_ITEMS)] = ()


def _excluded(talent: Talent | None, value_date: date) -> str | None:
    """Why a talent's instalments cannot be in a run paid on `value_date`, if so."""
    if talent is None:
        return "talent_unknown"
    if talent.departed_on is not None and talent.departed_on <= value_date:
        return "talent_departed"
    if talent.sealed_bank_account is None or talent.personal_data_erased:
        return "no_bank_account"
    return None


@use_case(RunCandidates, role="treasury", refuses=(IdempotencyConflict,))
def prepare_run(uow: UnitOfWork, cmd: RunCandidates) -> DisbursementRun:
    run = cmd.request
    fp = fingerprint(run)
    if (original := uow.created_by(DisbursementRun, run.run_id, fp)) is not None:
        return original
    if run.value_date < run.due_on:
        raise ValidationFailed("value_date", "a run cannot be paid before its due date")
    uow.read_all((Grant, grant_id) for grant_id in cmd.grant_ids)
    grants = [uow.get(Grant, grant_id, "grant") for grant_id in sorted(cmd.grant_ids)]
    uow.read_all((Talent, grant.talent_id) for grant in grants)
    items: list[RunItem] = []
    excluded: list[dict[str, str]] = []
    for grant in grants:
        grant_id = grant.grant_id
        if run.fund_year not in (None, grant.fund_year) or run.programme not in (
            None,
            grant.programme,
        ):
            continue
        due = grant.payable_instalments(run.due_on)
        if not due:
            continue
        reason = _excluded(uow.find(Talent, grant.talent_id), run.value_date)
        if reason is not None:
            excluded.append({"grant_id": grant_id, "reason": reason})
            continue
        grant.hold(run.run_id, due)
        first = len(items) + 1
        items.extend(
            RunItem(f"{run.run_id}-{n}", grant_id, grant.talent_id, i.number, i.unpaid)
            for n, i in enumerate(due, start=first)
        )
    if taken := [i.payment_id for i in items if uow.find(Payment, i.payment_id) is not None]:
        raise ValidationFailed(
            "run_id", f"payment {taken[0]} exists: the run's payments need another run id"
        )
    if len(items) > MAX_RUN_ITEMS:
        raise ValidationFailed(
            "due_on",
            f"{len(items)} instalments are due: a run holds at most {MAX_RUN_ITEMS}; "
            "prepare it by fund year or programme",
        )
    if not items:
        raise ValidationFailed(
            "due_on", f"no unpaid instalment due by {run.due_on} is free to be paid"
        )
    return uow.add(
        DisbursementRun(
            run.run_id,
            run.due_on,
            run.value_date,
            run.fund_year,
            run.programme,
            [list(item) for item in items],
            excluded,
            fp,
        )
    )


@use_case(
    SettleRun,
    role="treasury",
    refuses=(
        NotFound,
        InvalidState,
        IdempotencyConflict,
        Overpayment,
        DuplicateBankReference,
        TalentDeparted,
        SeparationOfDuties,
    ),
)
def settle_run(uow: UnitOfWork, cmd: SettleRun) -> DisbursementRun:
    """All or nothing: one item the rules of a payment refuse refuses the settlement."""
    run = uow.get(DisbursementRun, cmd.run_id, "disbursement run")
    settlement = Settlement(
        {s.payment_id: s.bank_reference for s in cmd.settled},
        {r.payment_id: r.reason for r in cmd.rejected},
    )
    if len(settlement.settled) + len(settlement.rejected) != len(cmd.settled) + len(cmd.rejected):
        raise ValidationFailed("settled", "an item is answered more than once")
    settled, rejected = run.settle(settlement)
    # what it creates (payments, bank references) is checked absent under the lock,
    # all at once, like any version read
    uow.read_all(
        wanted
        for item, _ in settled
        for wanted in ((Grant, item.grant_id), (Talent, item.talent_id))
    )
    for item, bank_reference in settled:
        # released first: what the run held becomes the payment's to take
        uow.get(Grant, item.grant_id, "grant").release(run.run_id, item.instalment, item.amount)
        payment = RecordPayment(
            item.payment_id, item.grant_id, item.amount, run.value_date, bank_reference
        )
        record_payment.decide(uow, payment)
    for item in rejected:
        uow.get(Grant, item.grant_id, "grant").release(run.run_id, item.instalment, item.amount)
    return run
