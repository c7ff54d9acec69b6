"""The ledger application: one method per use case, each an atomic, race-free unit.

Every use case runs as a unit of work: decide on this process's copies of what the
rules need, then, holding the store's append lock, check that every aggregate read
(or found missing) is still at the version read. Whatever changed meanwhile, in this
or any other process, is read there and the work decides again before it appends. So
a rule checked here holds under any concurrency, and a decision is never thrown away
for a lost race.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from contextvars import ContextVar
from copy import deepcopy
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import JSONTranscoder, RecordConflictError, Recording, Transcoding

from ledger import commands as c
from ledger.domain import (
    Appropriation,
    BankReference,
    Clawback,
    FundYear,
    Grant,
    LedgerAggregate,
    Payment,
    Reconciliation,
    Recovery,
    RentWaiver,
    Talent,
    calendar_months,
)
from ledger.errors import (
    DuplicateBankReference,
    IdempotencyConflict,
    InvalidState,
    LedgerError,
    NotFound,
    TalentDeparted,
    ValidationFailed,
)
from ledger.group_commit import GroupCommitter
from ledger.personal import PersonalDataErased, Vault
from ledger.reconciliation import Movement, pack, reconcile, reconciliation_id
from ledger.statements import Statement
from ledger.store import AppendSession, LedgerRecorder, Reads

T = TypeVar("T")
A = TypeVar("A", bound=LedgerAggregate)

CONFLICT_DEADLINE_SECONDS = 10.0
# A copy further behind than this many events catches up with the append lock
# released, a shorter tail under it (`LedgerApplication.commit`).
CATCH_UP_UNDER_LOCK = 1_000

_ambient_uow: ContextVar[UnitOfWork | None] = ContextVar("ambient_uow", default=None)


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class Contended(LedgerError):
    """Conflicting writers kept winning for the whole deadline: try again later."""

    code = "contended"


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a use case answers: the resource, the position to read after, and
    whether it was a replay (nothing new recorded)."""

    value: T
    position: int
    replayed: bool


@dataclass(frozen=True)
class Attempt(Generic[T]):
    """One run of a unit of work: its answer, whether some command in it was refused
    (a refusal may rest on an aggregate this process has not seen yet), and whether
    what it changed is to be recorded."""

    value: T
    refused: bool = False
    record: bool = True


@dataclass(frozen=True)
class Committed(Generic[T]):
    value: T
    recordings: list[Recording[UUID]]
    position: int  # the last event recorded, else the head once the decision held


class AtomicRefusal(LedgerError):
    """One call of an atomic run was refused, so none of them was recorded."""

    def __init__(self, index: int, error: LedgerError) -> None:
        super().__init__(f"operation {index} was refused: {error.detail}")
        self.index = index
        self.error = error
        self.code = error.code


class UnitOfWork:
    """The aggregates one attempt of a use case read and wrote, with their versions.

    It reads no database: it hands out copies of `known` aggregates (read under the
    append lock, or a long history just before it) or else of this process's cache,
    and takes an aggregate it has never seen to be missing. `LedgerApplication.commit`
    checks every version it read before anything is recorded."""

    def __init__(
        self, app: LedgerApplication, known: Mapping[UUID, LedgerAggregate | None] | None = None
    ) -> None:
        self._app = app
        self._known = known or {}
        self._versions: dict[UUID, int] = {}
        self._aggregates: dict[UUID, LedgerAggregate] = {}
        # every aggregate handed out or added, with its version then: what a command
        # changed is found among those handed out since it started, not all of them
        self._handed_out: list[tuple[LedgerAggregate, int]] = []
        # taken to be missing for want of a copy, with the class asked for
        self.unseen: dict[UUID, type[LedgerAggregate]] = {}

    def find(self, cls: type[A], key: Any) -> A | None:
        aggregate_id: UUID = cls.create_id(key)
        if aggregate_id in self._aggregates:
            found = self._aggregates[aggregate_id]
            assert isinstance(found, cls)
            self._handed_out.append((found, found.version))
            return found
        if aggregate_id in self._known:
            aggregate = deepcopy(self._known[aggregate_id])
        else:
            aggregate = self._app.cached_copy(aggregate_id)
            if aggregate is None:
                self.unseen[aggregate_id] = cls
        if aggregate is None:
            self._versions[aggregate_id] = 0
            return None
        if not isinstance(aggregate, cls):
            raise InvalidState(f"{key!r} names a {type(aggregate).__name__}")
        self._versions[aggregate_id] = aggregate.version
        self._aggregates[aggregate_id] = aggregate
        self._handed_out.append((aggregate, aggregate.version))
        return aggregate

    def remember(self) -> None:
        """Keep what was just recorded (or checked) as this process's latest copies."""
        cache = self._app.repository.cache
        if cache is not None:
            for aggregate in self._aggregates.values():
                if not aggregate.pending_events:  # a refusal's changes are not kept
                    cache.put(aggregate.id, deepcopy(aggregate))

    def get(self, cls: type[A], key: Any, what: str) -> A:
        """Load an aggregate named in the path: missing is `not_found`."""
        found = self.find(cls, key)
        if found is None:
            raise NotFound(f"no {what} {key}")
        return found

    def refer(self, cls: type[A], key: Any, field: str, what: str) -> A:
        """Load an aggregate a body field refers to: missing is a `validation_error`."""
        found = self.find(cls, key)
        if found is None:
            raise ValidationFailed(field, f"no {what} {key}")
        return found

    def add(self, aggregate: LedgerAggregate) -> None:
        self._aggregates[aggregate.id] = aggregate
        self._handed_out.append((aggregate, aggregate.version - len(aggregate.pending_events)))

    @property
    def aggregates(self) -> list[LedgerAggregate]:
        return list(self._aggregates.values())

    def mark(self) -> int:
        """A point in this unit of work to ask `events_since` about."""
        return len(self._handed_out)

    def events_since(self, mark: int) -> list[Any]:
        """The events added since `mark`, by commands that can only have changed what
        they were handed since."""
        first: dict[UUID, tuple[LedgerAggregate, int]] = {}
        for aggregate, version in self._handed_out[mark:]:
            first.setdefault(aggregate.id, (aggregate, version))
        # an aggregate's pending events end with its newest: take only those past `v`
        return [
            e for a, v in first.values() if a.version > v for e in a.pending_events[v - a.version :]
        ]

    @property
    def read_versions(self) -> Mapping[UUID, int]:
        return self._versions


def _is_retry(existing: Any, fingerprint: str, what: str) -> bool:
    """True when `existing` was created by this very request; another body under the
    same id is an `idempotency_conflict`."""
    if existing is None:
        return False
    if existing.fingerprint != fingerprint:
        raise IdempotencyConflict(f"{what} exists with a different body")
    return True


def _long_unseen(uow: UnitOfWork, known: Mapping[UUID, object]) -> set[UUID]:
    """What `uow` took to be missing for want of a copy, has a long history, and is
    not read yet."""
    return {i for i, cls in uow.unseen.items() if cls.LONG_HISTORY and i not in known}


def run_in(uow: UnitOfWork, call: Callable[[], T]) -> T:
    """Run `call` (use cases of the application) inside `uow`, saving nothing."""
    token = _ambient_uow.set(uow)
    try:
        return call()
    finally:
        _ambient_uow.reset(token)


class LedgerApplication(Application[UUID]):
    name = "Ledger"
    vault: Vault  # set by `ledger.runtime.open_ledger`, which holds the master key

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    # --- the unit of work ---------------------------------------------------

    _committer: GroupCommitter | None = None

    def start_group_commit(self) -> None:
        """From now on, concurrent use cases of this process share transactions."""
        self._committer = GroupCommitter(self)

    def submit(self, call: Callable[[], Outcome[T]]) -> Future[Outcome[T]]:
        """Run `call` (calls of use cases) in the next group commit, without waiting:
        for a caller that must not block, such as an event loop."""
        if self._committer is None:
            raise RuntimeError("group commit is not started")
        return self._committer.submit(call)

    def close(self) -> None:
        if self._committer is not None:
            self._committer.close()
            self._committer = None
        super().close()

    def _run(self, work: Callable[[UnitOfWork], T]) -> Outcome[T]:
        """Run one use case: inside the ambient unit of work of a group or an atomic
        run (which saves everything at once), through the group committer, or alone."""
        ambient = _ambient_uow.get()
        if ambient is not None:
            mark = ambient.mark()
            value = work(ambient)
            # a snapshot: later commands of the same unit may change the same aggregate
            return Outcome(deepcopy(value), 0, replayed=not ambient.events_since(mark))
        committer = self._committer
        if committer is not None and not committer.in_writer:
            return committer.run(lambda: self._run(work))

        def attempt(uow: UnitOfWork) -> Attempt[T | LedgerError]:
            try:
                return Attempt(work(uow))
            except LedgerError as e:
                return Attempt(e, refused=True, record=False)

        done = self.commit(attempt)
        if isinstance(done.value, LedgerError):
            raise done.value
        return Outcome(done.value, done.position, replayed=not done.recordings)

    def run_atomic(self, calls: Sequence[Callable[[], Outcome[Any]]]) -> list[Outcome[Any]]:
        """Run several use cases (calls of this application's methods) as one unit of
        work: all are recorded in one transaction, or none is. A refusal raises
        `AtomicRefusal` naming the first call that failed."""

        def attempt(uow: UnitOfWork) -> Attempt[list[Outcome[Any]] | AtomicRefusal]:
            outcomes = []
            refusal = None
            for index, call in enumerate(calls):
                try:
                    outcomes.append(run_in(uow, call))
                except LedgerError as e:
                    # the calls after it still run, so that everything the whole run
                    # reads is known when it is checked, not one refusal at a time
                    refusal = refusal or AtomicRefusal(index, e)
            if refusal is not None:
                return Attempt(refusal, refused=True, record=False)
            return Attempt(outcomes)

        done = self.commit(attempt)
        if isinstance(done.value, AtomicRefusal):
            raise done.value
        return [replace(o, position=done.position) for o in done.value]

    def commit(self, run: Callable[[UnitOfWork], Attempt[T]]) -> Committed[T]:
        """Decide with `run`, then record what it changed, race-free.

        `run` first decides on this process's copies, without a query. Then, holding
        the append lock, every version it read is checked; what changed (or what a
        refusal may have missed) is read there, and `run` decides again, until a
        decision rests only on what is current. Under the lock nothing can change any
        more, so that decision is recorded as it stands. A fund year this process has
        never seen, or any copy more than CATCH_UP_UNDER_LOCK events behind, is read
        with the lock released (once per decision), and checked under it like any
        other."""
        deadline = time.monotonic() + CONFLICT_DEADLINE_SECONDS
        while True:
            try:
                return self._commit_once(run)
            except RecordConflictError:  # something wrote an aggregate it never read
                if time.monotonic() > deadline:
                    raise Contended("too many concurrent writers; retry") from None
                time.sleep(random.uniform(0.001, 0.02))  # noqa: S311 - jitter, not crypto

    def _commit_once(self, run: Callable[[UnitOfWork], Attempt[T]]) -> Committed[T]:
        known: dict[UUID, LedgerAggregate | None] = {}
        recorder = self.recorder
        assert isinstance(recorder, LedgerRecorder)
        uow = UnitOfWork(self)
        attempt = run(uow)
        # A decision may rest on a fund year this process has never seen (taken to be
        # missing), or on a copy far behind. Its first read replays all its events,
        # seconds for a long year, which every writer of every process would wait out
        # under the lock: it is read with the lock released, each at most once (so
        # that writers elsewhere cannot keep it behind), and under the lock only what
        # changed since is read.
        ahead = _long_unseen(uow, known)
        read_ahead: set[UUID] = set()
        while True:
            while ahead:
                read_ahead |= ahead
                with recorder.reads() as reads:
                    self._read_current(reads, self._bases(dict.fromkeys(ahead), known), known)
                uow = UnitOfWork(self, known)
                attempt = run(uow)
                ahead = _long_unseen(uow, known)
            with recorder.append_session() as session:
                uow, attempt, ahead = self._decide_again(
                    session, run, uow, attempt, known, read_ahead
                )
                if not ahead:
                    # what `save` would do here (no snapshots, a fast-forwarding
                    # cache), less its protocol checks of every aggregate, 6 % of a
                    # batch's time
                    events = (
                        [e for a in uow.aggregates for e in a.collect_events()]
                        if attempt.record
                        else []
                    )
                    recordings = self.events.put(events, session=session) if events else []
                    break
        uow.remember()
        # When nothing was recorded, any position at or after the decision will do for
        # read-your-writes, and the head is one index lookup away.
        position = max((r.notification.id for r in recordings), default=0) or (
            recorder.max_notification_id() or 0
        )
        return Committed(attempt.value, recordings, position)

    def _decide_again(
        self,
        session: AppendSession,
        run: Callable[[UnitOfWork], Attempt[T]],
        uow: UnitOfWork,
        attempt: Attempt[T],
        known: dict[UUID, LedgerAggregate | None],
        read_ahead: set[UUID],
    ) -> tuple[UnitOfWork, Attempt[T], set[UUID]]:
        """Under the lock, read what changed since `uow` read it and, for a refusal,
        what it took to be missing (in the version check's query), and decide again,
        until the decision rests only on what is current (answering no aggregate).
        Or stop early, before reading anything, answering the aggregates better read
        with the lock released: a fund year never seen, or any copy more than
        CATCH_UP_UNDER_LOCK events behind the base it would be read from, unless it
        was read ahead already."""
        while True:
            if unseen := _long_unseen(uow, known):  # what is read ahead is known
                return uow, attempt, unseen
            versions: dict[UUID, int | None] = dict(session.changed(uow.read_versions))
            if attempt.refused:
                versions.update(dict.fromkeys(uow.unseen.keys() - known.keys() - versions.keys()))
            if not versions:
                return uow, attempt, set()
            bases = self._bases(versions, known)
            behind = {
                i
                for i, version in versions.items()
                if version is not None
                and version - (base.version if (base := bases[i]) else 0) > CATCH_UP_UNDER_LOCK
            } - read_ahead
            if behind:
                return uow, attempt, behind
            self._read_current(session, bases, known)
            uow = UnitOfWork(self, known)
            attempt = run(uow)

    def _bases(
        self, versions: Mapping[UUID, int | None], known: Mapping[UUID, LedgerAggregate | None]
    ) -> dict[UUID, LedgerAggregate | None]:
        """What to bring the given aggregates up to date from (at their current
        version, when known): the copy in `known` or else in the cache when it is not
        ahead, else nothing (from their first event)."""
        bases: dict[UUID, LedgerAggregate | None] = {}
        for aggregate_id, version in versions.items():
            base = known.get(aggregate_id) or self.cached_copy(aggregate_id)
            bases[aggregate_id] = (
                base if base is not None and (version is None or base.version <= version) else None
            )
        return bases

    def _read_current(
        self,
        session: Reads,
        bases: Mapping[UUID, LedgerAggregate | None],
        known: dict[UUID, LedgerAggregate | None],
    ) -> None:
        """Bring `known` up to date with the store from `bases`, in one query."""
        events: dict[UUID | str, list[Any]] = {i: [] for i in bases}
        for stored in session.events_after({i: b.version if b else 0 for i, b in bases.items()}):
            events[stored.originator_id].append(self.mapper.to_domain_event(stored))
        for aggregate_id, base in bases.items():
            aggregate = base
            for event in events[aggregate_id]:
                aggregate = event.mutate(aggregate)
            known[aggregate_id] = aggregate

    def cached_copy(self, aggregate_id: UUID) -> LedgerAggregate | None:
        """A copy of this process's latest copy of an aggregate, if it has one."""
        cache = self.repository.cache
        try:
            copy = deepcopy(cache.get(aggregate_id)) if cache is not None else None
        except (KeyError, RuntimeError):  # RuntimeError: raced a fast-forward in place
            return None
        return copy if isinstance(copy, LedgerAggregate) else None

    def _create(
        self,
        uow: UnitOfWork,
        cls: type[A],
        key: Any,
        command: object,
        build: Callable[[str], A],
    ) -> A:
        """Create `cls` under `key`, or answer the original if this is a retry of it."""
        fp = c.fingerprint(command)
        existing = uow.find(cls, key)
        if _is_retry(existing, fp, str(key)):
            assert existing is not None
            if existing.pending_events and existing.pending_events[0].originator_version == 1:
                return existing  # created earlier in this same unit of work
            original: A = self.repository.get(existing.id, version=cls.INITIAL_VERSION)
            assert isinstance(original, cls)
            return original
        created = build(fp)
        uow.add(created)
        return created

    # --- fund years ---------------------------------------------------------

    def open_fund_year(self, cmd: c.OpenFundYear) -> Outcome[FundYear]:
        def work(uow: UnitOfWork) -> FundYear:
            return self._create(
                uow, FundYear, cmd.year, cmd, lambda fp: FundYear(cmd.year, cmd.currency, fp)
            )

        return self._run(work)

    def appropriate(self, cmd: c.Appropriate) -> Outcome[Appropriation]:
        def work(uow: UnitOfWork) -> Appropriation:
            fund_year = uow.get(FundYear, cmd.year, "fund year")
            fp = c.fingerprint(cmd)
            existing = fund_year.appropriations.get(cmd.appropriation_id)
            if _is_retry(existing, fp, f"appropriation {cmd.appropriation_id}"):
                assert existing is not None
                return existing
            appropriation = Appropriation(
                cmd.appropriation_id, cmd.programme, cmd.kind, cmd.amount, cmd.reference, fp
            )
            fund_year.appropriate(appropriation)
            return appropriation

        return self._run(work)

    def close_fund_year(self, cmd: c.CloseFundYear) -> Outcome[FundYear]:
        def work(uow: UnitOfWork) -> FundYear:
            fund_year = uow.get(FundYear, cmd.year, "fund year")
            fund_year.close(cmd.reason)
            return fund_year

        return self._run(work)

    # --- talents ------------------------------------------------------------

    def register_talent(self, cmd: c.RegisterTalent) -> Outcome[Talent]:
        if cmd.service_commitment_until < cmd.arrived_on:
            raise ValidationFailed(
                "service_commitment_until", "the service commitment ends before arrival"
            )
        try:
            key = self.vault.key_for_new(cmd.talent_id)
        except PersonalDataErased as e:
            raise IdempotencyConflict(f"{e}: its registration cannot be compared") from None
        # a retry is recognised by a keyed digest of the name, never by the name
        keyed = replace(cmd, name=key.digest(cmd.name))

        def work(uow: UnitOfWork) -> Talent:
            return self._create(
                uow,
                Talent,
                cmd.talent_id,
                keyed,
                lambda fp: Talent(
                    cmd.talent_id,
                    key.seal(cmd.name),
                    cmd.category,
                    cmd.employer,
                    cmd.arrived_on,
                    cmd.service_commitment_until,
                    fp,
                ),
            )

        return self._run(work)

    def depart_talent(self, cmd: c.DepartTalent) -> Outcome[Talent]:
        def work(uow: UnitOfWork) -> Talent:
            talent = uow.get(Talent, cmd.talent_id, "talent")
            talent.depart(cmd.departed_on, cmd.reason)
            return talent

        return self._run(work)

    def forget_talent(self, talent_id: str) -> Outcome[Talent]:
        """Erase a talent's personal data: destroy its data key, then record that it
        was done. Running it again finishes an erasure that stopped half-way."""
        self.load(Talent, talent_id, "talent")
        self.vault.forget(talent_id)

        def work(uow: UnitOfWork) -> Talent:
            talent = uow.get(Talent, talent_id, "talent")
            talent.record_erasure()
            return talent

        return self._run(work)

    # --- grants -------------------------------------------------------------

    def propose_grant(self, cmd: c.ProposeGrant) -> Outcome[Grant]:
        def build(uow: UnitOfWork, fp: str) -> Grant:
            talent = uow.refer(Talent, cmd.talent_id, "talent_id", "talent")
            if talent.departed_on is not None:
                raise TalentDeparted(f"talent {cmd.talent_id} departed on {talent.departed_on}")
            fund_year = uow.refer(FundYear, cmd.fund_year, "fund_year", "fund year")
            fund_year.reserve(cmd.programme, "cash", cmd.amount, grant_id=cmd.grant_id)
            return Grant(
                cmd.grant_id,
                cmd.talent_id,
                cmd.fund_year,
                cmd.programme,
                cmd.amount,
                cmd.policy_reference,
                cmd.reason,
                fp,
            )

        return self._run(
            lambda uow: self._create(uow, Grant, cmd.grant_id, cmd, lambda fp: build(uow, fp))
        )

    def approve_grant(self, cmd: c.ApproveGrant, approver: str) -> Outcome[Grant]:
        def work(uow: UnitOfWork) -> Grant:
            grant = uow.get(Grant, cmd.grant_id, "grant")
            grant.approve(cmd.note, approver)
            return grant

        return self._run(work)

    def reject_grant(self, cmd: c.RejectGrant) -> Outcome[Grant]:
        def work(uow: UnitOfWork) -> Grant:
            grant = uow.get(Grant, cmd.grant_id, "grant")
            fund_year = uow.get(FundYear, grant.fund_year, "fund year")  # loads before changes
            if grant.reject(cmd.reason):
                fund_year.release(grant.programme, grant.amount, grant_id=grant.grant_id)
            return grant

        return self._run(work)

    def revoke_grant(self, cmd: c.RevokeGrant) -> Outcome[Grant]:
        def work(uow: UnitOfWork) -> Grant:
            grant = uow.get(Grant, cmd.grant_id, "grant")
            fund_year = uow.get(FundYear, grant.fund_year, "fund year")
            released = grant.revoke(cmd.reason)
            fund_year.release(grant.programme, released, grant_id=grant.grant_id)
            return grant

        return self._run(work)

    # --- rent waivers -------------------------------------------------------

    def grant_waiver(self, cmd: c.GrantWaiver) -> Outcome[RentWaiver]:
        if cmd.end_on < cmd.start_on:
            raise ValidationFailed("end_on", "end_on is before start_on")

        def build(uow: UnitOfWork, fp: str) -> RentWaiver:
            talent = uow.refer(Talent, cmd.talent_id, "talent_id", "talent")
            if talent.departed_on is not None:
                raise TalentDeparted(f"talent {cmd.talent_id} departed on {talent.departed_on}")
            fund_year = uow.refer(FundYear, cmd.fund_year, "fund_year", "fund year")
            fund_year.check_date("start_on", cmd.start_on)
            fund_year.check_date("end_on", cmd.end_on)
            months = calendar_months(cmd.start_on, cmd.end_on)
            value = cmd.monthly_rent * months
            fund_year.reserve(cmd.programme, "in_kind", value, waiver_id=cmd.waiver_id)
            return RentWaiver(
                cmd.waiver_id,
                cmd.talent_id,
                cmd.fund_year,
                cmd.programme,
                cmd.apartment,
                cmd.start_on,
                cmd.end_on,
                cmd.monthly_rent,
                months,
                value,
                fp,
            )

        return self._run(
            lambda uow: self._create(uow, RentWaiver, cmd.waiver_id, cmd, lambda fp: build(uow, fp))
        )

    def end_waiver(self, cmd: c.EndWaiver) -> Outcome[RentWaiver]:
        def work(uow: UnitOfWork) -> RentWaiver:
            waiver = uow.get(RentWaiver, cmd.waiver_id, "rent waiver")
            fund_year = uow.get(FundYear, waiver.fund_year, "fund year")
            released = waiver.end(cmd.ended_on)
            fund_year.release(waiver.programme, released, waiver_id=waiver.waiver_id)
            return waiver

        return self._run(work)

    # --- payments -----------------------------------------------------------

    @staticmethod
    def _check_bank_reference_unused(uow: UnitOfWork, bank_reference: str) -> None:
        """Checked before any change, and again by the store at commit (the claim's id)."""
        if uow.find(BankReference, bank_reference) is not None:
            raise DuplicateBankReference(f"bank reference {bank_reference} is already recorded")

    def record_payment(self, cmd: c.RecordPayment) -> Outcome[Payment]:
        def build(uow: UnitOfWork, fp: str) -> Payment:
            grant = uow.refer(Grant, cmd.grant_id, "grant_id", "grant")
            talent = uow.get(Talent, grant.talent_id, "talent")
            if talent.departed_on is not None and cmd.value_date > talent.departed_on:
                raise TalentDeparted(
                    f"talent {talent.talent_id} departed on {talent.departed_on}, "
                    f"before value date {cmd.value_date}"
                )
            self._check_bank_reference_unused(uow, cmd.bank_reference)
            grant.pay(cmd.payment_id, cmd.amount)
            uow.add(BankReference(cmd.bank_reference, cmd.payment_id, None, None))
            return Payment(
                cmd.payment_id,
                cmd.grant_id,
                grant.talent_id,
                grant.fund_year,
                grant.programme,
                cmd.amount,
                cmd.value_date,
                cmd.bank_reference,
                fp,
            )

        return self._run(
            lambda uow: self._create(uow, Payment, cmd.payment_id, cmd, lambda fp: build(uow, fp))
        )

    def return_payment(self, cmd: c.ReturnPayment) -> Outcome[Payment]:
        def work(uow: UnitOfWork) -> Payment:
            payment = uow.get(Payment, cmd.payment_id, "payment")
            grant = uow.get(Grant, payment.grant_id, "grant")
            fund_year = uow.get(FundYear, grant.fund_year, "fund year")
            if payment.return_(cmd.returned_on, cmd.reason):
                released = grant.payment_returned(payment.payment_id, payment.amount)
                fund_year.release(grant.programme, released, grant_id=grant.grant_id)
            return payment

        return self._run(work)

    # --- clawbacks ----------------------------------------------------------

    def assess_clawback(self, cmd: c.AssessClawback) -> Outcome[Clawback]:
        def build(uow: UnitOfWork, fp: str) -> Clawback:
            grant = uow.refer(Grant, cmd.grant_id, "grant_id", "grant")
            grant.assess_clawback(cmd.clawback_id, cmd.amount)
            return Clawback(
                cmd.clawback_id,
                cmd.grant_id,
                grant.talent_id,
                grant.fund_year,
                grant.programme,
                cmd.amount,
                cmd.reason,
                fp,
            )

        return self._run(
            lambda uow: self._create(uow, Clawback, cmd.clawback_id, cmd, lambda fp: build(uow, fp))
        )

    def record_recovery(self, cmd: c.RecordRecovery) -> Outcome[tuple[Clawback, Recovery]]:
        def work(uow: UnitOfWork) -> tuple[Clawback, Recovery]:
            clawback = uow.get(Clawback, cmd.clawback_id, "clawback")
            fp = c.fingerprint(cmd)
            existing = clawback.recoveries.get(cmd.recovery_id)
            if _is_retry(existing, fp, f"recovery {cmd.recovery_id}"):
                assert existing is not None
                return clawback, existing
            self._check_bank_reference_unused(uow, cmd.bank_reference)
            recovery = Recovery(cmd.recovery_id, cmd.amount, cmd.value_date, cmd.bank_reference, fp)
            clawback.recover(recovery)
            uow.add(BankReference(cmd.bank_reference, None, cmd.clawback_id, cmd.recovery_id))
            return clawback, recovery

        return self._run(work)

    # --- reconciliations ------------------------------------------------------

    def import_statement(
        self, statement: Statement, movements: Callable[[Statement], list[Movement]]
    ) -> Outcome[Reconciliation]:
        """Reconcile and record a statement; the same file again answers its first report.
        The matching runs before the unit of work, so a large statement does not hold
        up other writers."""
        key = reconciliation_id(statement)
        is_new = Reconciliation.create_id(key) not in self.repository
        packed = pack(reconcile(statement, movements(statement))) if is_new else ""

        def work(uow: UnitOfWork) -> Reconciliation:
            existing = uow.find(Reconciliation, key)
            if existing is not None:
                return existing
            created = Reconciliation(key, statement.sha256, packed)
            uow.add(created)
            return created

        return self._run(work)

    # --- reads of single resources -------------------------------------------

    def load(self, cls: type[A], key: Any, what: str) -> A:
        """The current state of one resource, straight from its events."""
        try:
            aggregate: LedgerAggregate = self.repository.get(cls.create_id(key))
        except AggregateNotFoundError:
            raise NotFound(f"no {what} {key}") from None
        if not isinstance(aggregate, cls):
            raise NotFound(f"no {what} {key}")
        return aggregate
