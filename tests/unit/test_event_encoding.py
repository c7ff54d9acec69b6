"""How events are written: the engine's mapper (orjson) writes exactly the bytes the
library's mapper (the json module) writes, for every event the demo records, and
leaves snapshots, whose state holds UUIDs, to the library's encoder."""

from __future__ import annotations

from uuid import UUID, uuid4

from eventsourcing.persistence import JSONTranscoder, Mapper

from ledger.demo import load_demo
from ledger.domain.base import LedgerAggregate
from ledger.engine.engine import EventMapper
from ledger.entrypoints.runtime import open_memory_ledger


def test_every_demo_event_is_written_as_the_library_writes_it() -> None:
    ledger = open_memory_ledger()
    load_demo(ledger)
    assert isinstance(ledger.mapper, EventMapper)
    assert isinstance(ledger.mapper.transcoder, JSONTranscoder)
    library = Mapper[UUID](ledger.mapper.transcoder)
    events = [
        ledger.mapper.to_domain_event(s) for s in ledger.recorder.select_notifications(0, 10**6)
    ]
    topics = {type(e).__qualname__ for e in events}
    assert len(events) > 4000 and len(topics) > 20  # the demo's whole vocabulary
    for event in events:
        assert ledger.mapper.to_stored_event(event) == library.to_stored_event(event), event


class _Referring(LedgerAggregate):
    """An aggregate whose state holds a UUID, as any aggregate's may."""

    def __init__(self, other: UUID) -> None:
        self.other = other


def test_a_snapshot_keeps_the_uuids_in_its_state() -> None:
    ledger = open_memory_ledger()
    aggregate = _Referring(uuid4())
    stored = ledger.mapper.to_stored_event(_Referring.Snapshot.take(aggregate))
    restored = ledger.mapper.to_domain_event(stored).mutate(None)  # type: ignore[attr-defined]
    assert isinstance(restored.other, UUID) and restored.other == aggregate.other
