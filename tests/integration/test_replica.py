"""The read replica's probe (`ledger.adapters.replica`), without a standby: a database
that is not one is never read from (a real standby: tests/e2e/test_read_replica.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ledger.adapters.postgres import datastore_of
from ledger.adapters.replica import reads_from
from ledger.entrypoints.runtime import Settings, open_standby
from ledger.usecases.ledger import Ledger

pytestmark = pytest.mark.db


def test_a_read_database_that_is_no_standby_is_not_read_from(
    ledger: Ledger, test_settings: Settings, db_url: str
) -> None:
    """A promoted standby, or a URL naming a primary, follows this ledger no more."""
    primary = datastore_of(ledger)
    standby = open_standby(replace(test_settings, read_database_url=db_url), primary)
    assert standby is not None
    try:
        assert not standby.up
        assert reads_from(primary, standby) is primary
    finally:
        standby.close()


def test_without_a_read_database_there_is_no_standby(
    ledger: Ledger, test_settings: Settings
) -> None:
    assert open_standby(test_settings, datastore_of(ledger)) is None
