"""The demo data set reproduces the published figures, counted from what was recorded.

Loading the demo takes seconds, so one test loads it once and checks every figure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from ledger.adapters.postgres import datastore_of
from ledger.demo import load_demo
from ledger.demo.plan import plan_demo
from ledger.domain.budget import FundYear
from ledger.domain.clawbacks import Clawback
from ledger.domain.grants import Grant
from ledger.domain.payments import Payment
from ledger.domain.talents import Talent
from ledger.domain.waivers import RentWaiver
from ledger.usecases.ledger import Ledger
from projections import reads
from projections.worker import ProjectionWorker

PAGE = 1000
YEARS = range(2019, 2024)
CASH = ("settling_in", "rent_subsidy")
PUBLISHED_CASH_PAID = Decimal("3030000.00")


def recorded_events(ledger: Ledger) -> Iterator[Any]:
    """Every event in the store, oldest first, decoded."""
    start = 1
    while True:
        page = ledger.recorder.select_notifications(start=start, limit=PAGE)
        for notification in page:
            yield ledger.mapper.to_domain_event(notification)
        if len(page) < PAGE:
            return
        start = page[-1].id + 1


@pytest.mark.db
def test_demo_reproduces_the_published_figures(ledger: Ledger, worker: ProjectionWorker) -> None:
    load_demo(ledger)
    worker.catch_up()
    events = list(recorded_events(ledger))
    datastore = datastore_of(ledger)
    fund_years = {year: reads.fund_year(datastore, year) for year in YEARS}

    # ¥3,030,000.00 of settling-in allowances and rent subsidies, net of bank returns:
    # in the balances, and again straight from the payment events.
    net_paid = sum(
        line["net_paid"]
        for fund_year in fund_years.values()
        for line in fund_year["lines"]
        if line["programme"] in CASH
    )
    assert net_paid == PUBLISHED_CASH_PAID
    payments = {
        e.originator_id: e.amount
        for e in events
        if isinstance(e, Payment.Recorded) and e.programme in CASH
    }
    returned = [payments[e.originator_id] for e in events if isinstance(e, Payment.Returned)]
    assert sum(payments.values()) - sum(returned) == PUBLISHED_CASH_PAID

    # 364 talents, of whom 95 masters and 117 "double first-class" graduates
    categories = Counter(e.category for e in events if isinstance(e, Talent.Registered))
    assert categories.total() == 364
    assert categories["master"] == 95
    assert categories["double_first_class"] == 117

    # 44 talent projects, free rent in 2 apartment buildings
    projects = [
        e for e in events if isinstance(e, Grant.Proposed) and e.programme == "project_support"
    ]
    assert len(projects) == 44
    buildings = {
        ledger.vault.open(e.talent_id, ledger.vault.wrapped_key(e.talent_id), e.apartment).split()[
            0
        ]  # type: ignore[union-attr]
        for e in events
        if isinstance(e, RentWaiver.Granted)
    }
    assert buildings == {"人才公寓A栋", "人才公寓B栋"}

    # every kind of correction occurs
    kinds = Counter(type(e) for e in events)
    for kind in (
        Grant.Rejected,
        Grant.Revoked,
        Payment.Returned,
        Talent.Departed,
        RentWaiver.Ended,
        Clawback.Assessed,
        Clawback.Recovered,
    ):
        assert kinds[kind] > 0, kind.__qualname__

    # budgets hold on every line; only the current year is still open
    for year, fund_year in fund_years.items():
        assert fund_year["status"] == ("open" if year == 2023 else "closed")
        programmes = {line["programme"] for line in fund_year["lines"]}
        assert programmes == {"settling_in", "rent_subsidy", "housing", "project_support"}
        for line in fund_year["lines"]:
            assert 0 <= line["committed"] <= line["appropriated"], (year, line)
    assert kinds[FundYear.Closed] == 4


def test_the_plan_is_the_same_on_every_call() -> None:
    assert plan_demo() == plan_demo()
