"""The ledger application: every command's use case, run by the engine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from functools import cache
from typing import Any

from eventsourcing.persistence import JSONTranscoder

import ledger.usecases
from ledger.domain.budget import Appropriation, Line
from ledger.domain.errors import LedgerError
from ledger.domain.reconciliation import (
    Movement,
    PreviousStatement,
    Reconciliation,
    Statement,
    counterparties,
    pack,
    reconcile,
    reconciliation_id,
)
from ledger.domain.runs import DisbursementRun
from ledger.domain.talents import Talent
from ledger.engine.engine import Decide, Engine, ValueAsDict
from ledger.engine.outcome import Outcome
from ledger.engine.unit_of_work import UnitOfWork
from ledger.usecases.checkpoints import Notary
from ledger.usecases.personal import Vault
from ledger.usecases.reconciliations import MatchedStatement, record_reconciliation
from ledger.usecases.registry import UseCase, modules_of
from ledger.usecases.runs import PrepareRun, RunCandidates
from ledger.usecases.talents import record_erasure


@cache
def use_cases() -> dict[type, UseCase[Any, Any]]:
    """Every write a client may ask for, by its command's type: each module of this
    package declares its own (found once every module is loaded, this one too)."""
    return {
        use_case.command: use_case
        for module in modules_of(ledger.usecases)
        for use_case in vars(module).values()
        if isinstance(use_case, UseCase)
    }


Step = tuple[Decide[Any, Any], Any]


def _refused(uow: UnitOfWork, refusal: LedgerError) -> None:
    """The decision of a command refused before it could be decided."""
    raise refusal


class Ledger(Engine):
    name = "Ledger"  # names the event table: ledger_events
    vault: Vault  # set by whoever opens the ledger, which holds the master key
    notary: Notary  # likewise, with the signing key

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        for value in (Line, Appropriation):  # a fund year's state, in its snapshots
            transcoder.register(ValueAsDict(value))

    def step(self, command: object) -> Step:
        """`command`'s decision, ready to run: what its use case prepares with I/O
        (sealing a name) is done here, outside any lock."""
        use_case = use_cases()[type(command)]
        prepared = use_case.prepare(self.vault, command) if use_case.prepare else command
        return use_case.decide, prepared

    def execute(self, command: object) -> Outcome[Any]:
        """Run `command`'s use case (through the group committer, if started)."""
        return self.run(*self.step(command))

    def execute_later(self, step: Step) -> Future[Outcome[Any]]:
        """Run a prepared step in the next group commit, without waiting."""
        return self.run_later(*step)

    def execute_atomic(self, commands: Sequence[object]) -> list[Outcome[Any]]:
        """Run several commands as one unit of work: all are recorded, or none. A
        refusal while preparing one counts as that command's, in its place."""
        steps: list[Step] = []
        for command in commands:
            try:
                steps.append(self.step(command))
            except LedgerError as refusal:
                steps.append((_refused, refusal))
        return self.run_atomic(steps)

    def forget_talent(self, talent_id: str) -> Outcome[Talent]:
        """Erase a talent's personal data: destroy its data key, then record that it
        was done. Running it again finishes an erasure that stopped half-way."""
        self.load(Talent, talent_id, "talent")
        self.vault.forget(talent_id)
        return self.run(record_erasure, talent_id)

    def import_statement(
        self,
        statement: Statement,
        movements: Callable[[Statement], list[Movement]],
        previous: Callable[[Statement], PreviousStatement | None],
    ) -> Outcome[Reconciliation]:
        """Reconcile and record a statement; the same file again answers its first
        report. `movements` are the ledger's bank movements a statement may match, and
        `previous` the statement of its account it carries on from (the read models
        know them)."""
        key = reconciliation_id(statement)
        packed, sealed = "", ""
        if Reconciliation.create_id(key) not in self.repository:
            report = reconcile(statement, movements(statement), previous(statement))
            packed, sealed = pack(report), pack(self._sealed(counterparties(statement, report)))
        return self.run(record_reconciliation, MatchedStatement(key, statement, packed, sealed))

    def prepare_run(
        self, run: PrepareRun, candidates: Callable[[PrepareRun], list[str]]
    ) -> Outcome[DisbursementRun]:
        """Prepare a disbursement run from the grants the read models find approved
        (`candidates`): each is read from its events before one of its instalments is
        taken, so a grant the read models show out of date is judged as it is."""
        return self.execute(RunCandidates(run, tuple(candidates(run))))

    def _sealed(self, named: dict[int, tuple[str, str]]) -> dict[str, str]:
        """Each counterparty sealed with its talent's data key; one whose talent's key
        was destroyed is not kept."""
        keys = self.vault.keys_of({talent_id for talent_id, _ in named.values()})
        return {
            str(line): keys[talent_id].seal(counterparty)
            for line, (talent_id, counterparty) in named.items()
            if talent_id in keys
        }
