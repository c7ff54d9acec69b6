"""Events stored by the first edition still load: their topics name the one module the
domain then was (`ledger.domain:Grant.Proposed`), and a reservation named its benefit
by `grant_id` or `waiver_id`. The fixture is such a history, as that code stored it."""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from eventsourcing.persistence import StoredEvent

from ledger.domain.budget import FundYear, LineKind
from ledger.domain.clawbacks import Clawback
from ledger.domain.grants import Grant
from ledger.domain.reconciliation import Reconciliation, unpack
from ledger.domain.talents import Talent
from ledger.domain.waivers import RentWaiver
from ledger.entrypoints.runtime import open_memory_ledger

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "first_edition_events.json"
D = Decimal


@pytest.fixture(scope="module")
def stored() -> list[StoredEvent]:
    return [
        StoredEvent(
            UUID(e["originator_id"]),
            e["originator_version"],
            e["topic"],
            base64.b64decode(e["state"]),
        )
        for e in json.loads(FIXTURE.read_text())
    ]


@pytest.fixture(scope="module")
def events(stored: list[StoredEvent]) -> list[Any]:
    mapper = open_memory_ledger().mapper
    return [mapper.to_domain_event(s) for s in stored]


@pytest.fixture(scope="module")
def aggregates(events: list[Any]) -> dict[UUID, Any]:
    streams: dict[UUID, list[Any]] = defaultdict(list)
    for e in events:
        streams[e.originator_id].append(e)
    replayed = {}
    for aggregate_id, stream in streams.items():
        aggregate = None
        for e in stream:
            aggregate = e.mutate(aggregate)
        replayed[aggregate_id] = aggregate
    return replayed


def test_every_event_type_of_the_first_edition_is_in_the_fixture(stored: list[StoredEvent]) -> None:
    assert {s.topic.partition(":")[0] for s in stored} == {"ledger.domain"}
    assert len({s.topic for s in stored}) == 23


def test_old_topics_load_as_the_classes_in_their_new_modules(
    stored: list[StoredEvent], events: list[Any]
) -> None:
    for s, e in zip(stored, events, strict=True):
        assert f"{type(e).__module__}:{type(e).__qualname__}" != s.topic
        assert s.topic.endswith(":" + type(e).__qualname__)
        assert type(e).__module__.startswith("ledger.domain.")


def test_a_reconciliation_kept_its_counterparties_in_its_report_and_none_apart(
    events: list[Any],
) -> None:
    (imported,) = [e for e in events if isinstance(e, Reconciliation.Imported)]
    assert unpack(imported.sealed_counterparties) == {}
    assert (imported.account, imported.opening, imported.closing) == (None, None, None)


def test_a_reservation_names_its_benefit_by_kind_and_id(events: list[Any]) -> None:
    budget = [e for e in events if isinstance(e, FundYear.Reserved | FundYear.Released)]
    assert [(type(e).__name__, e.benefit, e.benefit_id, e.amount) for e in budget] == [
        ("Reserved", "grant", "G-1", D("600.00")),
        ("Reserved", "waiver", "W-1", D("4400.00")),
        ("Reserved", "grant", "G-2", D("200.00")),
        ("Released", "grant", "G-2", D("200.00")),
        ("Released", "waiver", "W-1", D("2200.00")),
        ("Released", "grant", "G-1", D("300.00")),
    ]
    assert not any(hasattr(e, "grant_id") or hasattr(e, "waiver_id") for e in budget)


def test_the_replayed_history_has_the_state_the_first_edition_recorded(
    aggregates: dict[UUID, Any],
) -> None:
    fund_year = aggregates[FundYear.create_id(2024)]
    assert fund_year.status == "closed"
    settling_in, housing = fund_year.lines["settling_in"], fund_year.lines["housing"]
    assert (settling_in.kind, settling_in.appropriated, settling_in.committed) == (
        LineKind.CASH,
        D("1000.00"),
        D("300.00"),
    )
    assert (housing.kind, housing.appropriated, housing.committed) == (
        LineKind.IN_KIND,
        D("9000.00"),
        D("2200.00"),
    )
    grant = aggregates[Grant.create_id("G-1")]
    assert (grant.status, grant.paid, grant.returned, grant.clawed_back) == (
        "revoked",
        D("800.00"),
        D("500.00"),
        D("100.00"),
    )
    assert (grant.proposed_by, grant.decision_by) == ("clerk", "approver")
    assert aggregates[Grant.create_id("G-2")].status == "rejected"
    talent = aggregates[Talent.create_id("T-1")]
    assert (talent.departed_on, talent.personal_data_erased) == (date(2024, 6, 30), True)
    assert talent.sealed_bank_account is None, "registered before talents had one"
    waiver = aggregates[RentWaiver.create_id("W-1")]
    assert (waiver.status, waiver.months, waiver.value) == ("ended", 1, D("2200.00"))
    clawback = aggregates[Clawback.create_id("C-1")]
    assert (clawback.recovered, clawback.due) == (D("40.00"), D("60.00"))


def test_a_first_edition_grant_has_one_instalment_due_on_its_approval_day_in_shanghai(
    events: list[Any], aggregates: dict[UUID, Any]
) -> None:
    """It recorded no plan, and its approval no business date: the date is its
    timestamp's in Asia/Shanghai, the zone every first-edition deployment ran in."""
    (approved,) = [e for e in events if isinstance(e, Grant.Approved)]
    shanghai = approved.timestamp.astimezone(ZoneInfo("Asia/Shanghai")).date()
    assert approved.approved_on == shanghai
    grant = aggregates[Grant.create_id("G-1")]
    assert grant.plan is None
    assert [(i.number, i.due_on, i.amount, i.paid) for i in grant.instalments] == [
        (1, shanghai, D("600.00"), D("300.00"))
    ]
