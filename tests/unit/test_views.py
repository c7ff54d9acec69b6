"""The audit trail records every event the domain records: an event type it was never
told of stops the worker, it never becomes an empty row. The other views fold what
they name and skip the rest."""

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
    # 23, ApiKey.Issued and Revoked, Grant.Held and Released, DisbursementRun.Prepared and Settled
    assert len(domain_events()) == 29


def test_the_audit_trail_folds_every_event_of_the_domain() -> None:
    (audit,) = [v for v in VIEWS if v.FOLDS_EVERY_EVENT]
    assert audit.NAME == "audit_trail"
    for event_class in domain_events():
        assert audit.handler(event_class) is not None, event_class


def test_an_event_no_view_was_told_of_stops_the_audit_trail_and_the_others_skip_it() -> None:
    class Promoted(Talent.Event):  # a new event type, added to the domain only
        pass

    for view in VIEWS:
        if view.FOLDS_EVERY_EVENT:
            with pytest.raises(UnknownEvent, match=f"{view.NAME} does not know"):
                view.handler(Promoted)
        else:
            assert view.handler(Promoted) is None


def test_each_other_view_folds_some_events_and_skips_others() -> None:
    for view in VIEWS:
        if not view.FOLDS_EVERY_EVENT:
            folded = [e for e in domain_events() if view.handler(e) is not None]
            assert 0 < len(folded) < len(domain_events()), view.NAME


@pytest.mark.parametrize("view", VIEWS, ids=lambda v: v.NAME)
def test_a_new_image_starts_empty(view: type[View]) -> None:
    image = view(Streams(lambda _: None), complete=True)
    assert image.size() == 0
