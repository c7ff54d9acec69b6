"""Process set-up and settings shared by `ledger serve`, the projection workers and the CLI."""

from __future__ import annotations

import gc
import weakref
from datetime import UTC, date, datetime

import pytest

from ledger.entrypoints.runtime import (
    ConfigurationError,
    Settings,
    freeze_survivors,
    tune_collector,
)


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_a_ledger_process_collects_cycles_rarely_and_never_walks_its_long_lived_heap() -> None:
    before = gc.get_threshold()
    tune_collector.cache_clear()  # whichever test ran `ledger` in this process first
    try:
        tune_collector()
        assert gc.get_threshold()[0] == 50_000
        assert gc.get_freeze_count() > 0  # what existed at start-up is out of the collector's way
        assert gc.isenabled()  # cycles are still collected
        gc.set_threshold(*before)
        tune_collector()  # once per process: a second call would freeze new garbage
        assert gc.get_threshold() == before
        frozen = gc.get_freeze_count()
        kept = [[n] for n in range(10_000)]  # long-lived, say a cache
        gc.collect(1)
        assert gc.get_freeze_count() == frozen  # a younger collection freezes nothing
        cycle = _Cycle()
        gone = weakref.ref(cycle)
        del cycle
        gc.collect()
        # what outlived a full collection is out of the next one's way; its garbage is
        # collected, not frozen
        assert gc.get_freeze_count() >= frozen + len(kept)
        assert gone() is None
    finally:
        gc.callbacks.remove(freeze_survivors)
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_business_date_is_the_date_in_the_ledger_time_zone() -> None:
    """17:00 UTC on 1 May is already 2 May in Shanghai, the default zone."""
    evening = datetime(2024, 5, 1, 17, 0, tzinfo=UTC)
    assert Settings.from_env({}).today(evening) == date(2024, 5, 2)
    in_utc = Settings.from_env({"LEDGER_TIMEZONE": "UTC"})
    assert in_utc.today(evening) == date(2024, 5, 1)
    assert Settings.from_env({"LEDGER_TIMEZONE": "Asia/Shanghai"}).today(
        datetime(2024, 5, 1, 15, 59, tzinfo=UTC)
    ) == date(2024, 5, 1)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "+08:00"])
def test_an_unknown_time_zone_stops_the_process_at_start(zone: str) -> None:
    with pytest.raises(ConfigurationError, match="LEDGER_TIMEZONE"):
        Settings.from_env({"LEDGER_TIMEZONE": zone})
