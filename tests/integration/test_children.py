"""`ledger serve`'s projection process (`api.children`): it applies what is recorded,
is started again when it dies, and stops when told; SIGTERM, sent to the whole
process group, leaves it running until `ledger serve` stops it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import psutil
import psycopg
import pytest

from api.children import Child, run_projections
from ledger.domain.context import acting_as
from ledger.usecases.ledger import Ledger
from tests import commands as c
from tests.integration.test_projections import head, tracking, until

pytestmark = pytest.mark.db


def caught_up(db_url: str) -> bool:
    try:
        return tracking(db_url)[0] == head(db_url)
    except (psycopg.errors.UndefinedTable, ValueError):  # still making its tables
        return False


@pytest.fixture
def projections(child_env: None) -> Iterator[Child]:
    """The projection process on the test's database, as `ledger serve` starts it."""
    child = Child("projections", run_projections)
    child.start()
    try:
        yield child
    finally:
        child.stop()


def test_the_projection_process_applies_events_and_is_started_again_when_killed(
    ledger: Ledger, db_url: str, projections: Child
) -> None:
    with acting_as("admin", "req-1"):
        ledger.execute(c.OpenFundYear(2024, "CNY"))
    until(lambda: caught_up(db_url), "the read models never caught up")
    first = projections.pid
    assert first is not None
    os.kill(first, signal.SIGTERM)  # the process group's: it keeps running
    time.sleep(0.5)
    assert psutil.pid_exists(first) and projections.pid == first
    os.kill(first, signal.SIGKILL)
    until(lambda: projections.pid not in (None, first), "no projection process started again")
    with acting_as("admin", "req-2"):
        ledger.execute(c.OpenFundYear(2025, "CNY"))
    until(lambda: caught_up(db_url), "the new one never caught up")
    second = projections.pid
    assert second is not None
    projections.stop()
    assert not psutil.pid_exists(second)  # stopped, and reaped
