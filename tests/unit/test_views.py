"""Each view folds or knowingly skips every event the domain records: an event type no
view was told of stops the worker, it never becomes an empty row."""

from __future__ import annotations

import pytest

import ledger.domain  # noqa: F401 - every aggregate, registered on import
from ledger.domain.base import LedgerAggregate
from ledger.domain.talents import Talent
from projections.streams import Streams
from projections.view import UnknownEvent, View
from projections.views import VIEWS


def _subclasses(cls: type) -> list[type]:
    return [sub for c in cls.__subclasses__() for sub in (c, *_subclasses(c))]


def domain_events() -> list[type]:
    """Every event class an aggregate of the domain records (not the `Event` and
    `Created` bases eventsourcing gives each aggregate class)."""
    return sorted(
        {
            member
            for aggregate in _subclasses(LedgerAggregate)
            for name, member in vars(aggregate).items()
            if isinstance(member, type)
            and issubclass(member, LedgerAggregate.Event)
            and name not in ("Event", "Created")
        },
        key=lambda e: e.__qualname__,
    )


def test_the_domain_records_the_events_the_views_were_written_for() -> None:
    assert len(domain_events()) == 23


@pytest.mark.parametrize("view", VIEWS, ids=lambda v: v.NAME)
def test_each_view_handles_or_ignores_every_event_of_the_domain(view: type[View]) -> None:
    for event_class in domain_events():
        assert (event_class in view.HANDLERS) != (event_class in view.IGNORES), event_class
        view.handler(event_class)


def test_an_event_a_view_was_never_told_of_stops_it() -> None:
    class Promoted(Talent.Event):  # a new event type, added to the domain only
        pass

    for view in VIEWS:
        with pytest.raises(UnknownEvent, match=f"{view.NAME} does not know"):
            view.handler(Promoted)


def test_the_audit_trail_has_an_entry_for_every_event() -> None:
    (audit,) = [v for v in VIEWS if v.NAME == "audit_trail"]
    assert frozenset() == audit.IGNORES


@pytest.mark.parametrize("view", VIEWS, ids=lambda v: v.NAME)
def test_a_new_image_starts_empty(view: type[View]) -> None:
    image = view(Streams(lambda _: None), complete=True)
    assert image.size() == 0
