"""Every use case and rule on PostgreSQL: the same scenario as in memory
(`tests/use_case_scenario.py`), on the store the service runs on."""

from __future__ import annotations

import pytest

from ledger.usecases.ledger import Ledger
from tests.use_case_scenario import UseCaseScenario


class TestOnPostgres(UseCaseScenario):
    @pytest.fixture(autouse=True)
    def _on_postgres(self, ledger: Ledger) -> None:
        self.ledger = ledger
