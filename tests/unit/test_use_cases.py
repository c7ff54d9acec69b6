"""Every use case and rule on the in-memory store: the scenario of
`tests/use_case_scenario.py`, without a database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledger.entrypoints.runtime import open_memory_ledger
from tests.use_case_scenario import UseCaseScenario


class TestInMemory(UseCaseScenario):
    @pytest.fixture(autouse=True)
    def _in_memory(self) -> Iterator[None]:
        self.ledger = open_memory_ledger()
        try:
            yield
        finally:
            self.ledger.close()
