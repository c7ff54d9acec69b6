"""Waiting for a position (`projections.waits`): woken by the projection worker's
notification, not by polling; refused at once past the last event recorded; bounded."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence

import pytest
from eventsourcing.postgres import PostgresDatastore

from ledger.adapters.postgres import datastore_of
from ledger.domain.context import acting_as
from ledger.domain.errors import NotReached, TooManyWaiting, ValidationFailed
from ledger.usecases.ledger import Ledger
from projections import waits
from projections.worker import NAMES, ProjectionWorker
from tests import commands as c

_years = itertools.count(2025)


def _recorded(ledger: Ledger) -> int:
    """A new event's position: a fund year opened."""
    with acting_as("admin", "req-waits"):
        outcome = ledger.execute(c.OpenFundYear(next(_years), "CNY"))
    return outcome.position


class Reads:
    """`tracked_position`, counted: how often a wait asks the database."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = waits.tracked_position

        def counted(datastore: PostgresDatastore, names: Sequence[str]) -> int:
            self.count += 1
            return real(datastore, names)

        monkeypatch.setattr(waits, "tracked_position", counted)


def test_a_wait_asks_again_only_when_a_batch_is_committed(
    ledger: Ledger, worker: ProjectionWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    position = _recorded(ledger)
    reads = Reads(monkeypatch)
    answer: list[object] = []
    waiting = threading.Thread(
        target=lambda: answer.append(waits.reach(datastore_of(ledger), position, NAMES))
    )
    waiting.start()
    time.sleep(1.5)  # nothing committed meanwhile: polling every 10 ms would ask 150 times
    asked_while_quiet = reads.count
    assert not answer
    worker.run_batch()
    committed = time.monotonic()
    waiting.join(timeout=5)
    woken_after = time.monotonic() - committed
    assert answer == [datastore_of(ledger)]
    # the first look, its re-look once listening, one a second while nothing happens
    assert asked_while_quiet <= 5, asked_while_quiet
    assert woken_after < waits.QUIET_SECONDS / 2, f"woken {woken_after:.2f} s after the batch"


def test_a_position_never_recorded_is_refused_without_waiting(
    ledger: Ledger, worker: ProjectionWorker
) -> None:
    position = _recorded(ledger)
    started = time.monotonic()
    with pytest.raises(ValidationFailed, match=f"the last recorded is {position}"):
        waits.reach(datastore_of(ledger), position + 1, NAMES)
    assert time.monotonic() - started < 1


def test_a_wait_gives_up_after_its_bound(
    ledger: Ledger, worker: ProjectionWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    position = _recorded(ledger)
    monkeypatch.setattr(waits, "MIN_POSITION_WAIT_SECONDS", 0.5)
    started = time.monotonic()
    with pytest.raises(NotReached):
        waits.reach(datastore_of(ledger), position, NAMES)
    assert 0.5 <= time.monotonic() - started < 1.5


def test_past_the_bound_a_wait_is_refused_at_once_and_a_reached_read_takes_no_place(
    ledger: Ledger, worker: ProjectionWorker
) -> None:
    reached = _recorded(ledger)
    worker.run_batch()
    behind = _recorded(ledger)
    held = 0
    try:
        while waits._waiting.acquire(blocking=False):  # every place taken
            held += 1
        assert held == waits.WAITING_AT_ONCE
        assert waits.reach(datastore_of(ledger), reached, NAMES) is datastore_of(ledger)
        started = time.monotonic()
        with pytest.raises(TooManyWaiting):
            waits.reach(datastore_of(ledger), behind, NAMES)
        assert time.monotonic() - started < 0.5
    finally:
        for _ in range(held):
            waits._waiting.release()
