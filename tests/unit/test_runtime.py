"""Process set-up shared by `ledger serve`, the projection workers and the CLI."""

from __future__ import annotations

import gc

from ledger.entrypoints.runtime import tune_collector


def test_a_ledger_process_collects_cycles_rarely_and_never_walks_its_startup_heap() -> None:
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
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
