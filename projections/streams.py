"""What the views need to know of an aggregate when they fold its later events: its
business key and where it is charged (talent, fund year, programme, amount). It is
what the aggregate's first event said, so it is read from that event itself, once
per worker, and never kept in a table of its own."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.utils import resolve_topic


class Stream(NamedTuple):
    """An aggregate as its later events need it: its key and where it is charged (a
    tuple: a rebuild makes one per aggregate, hundreds of thousands)."""

    key: str
    talent_id: str | None = None
    year: int | None = None
    programme: str | None = None
    amount: Decimal | None = None

    @classmethod
    def of(cls, created: Any) -> Stream:
        """From an aggregate's first event: its key is what the aggregate's id is made
        from (the argument of its `create_id`); the rest, the fields of those names."""
        key = getattr(created, _key_field(created.originator_topic))
        return cls(
            str(key),
            getattr(created, "talent_id", None),
            getattr(created, "fund_year", key if isinstance(key, int) else None),
            getattr(created, "programme", None),
            getattr(created, "amount", getattr(created, "value", None)),
        )


@cache
def _key_field(aggregate_topic: str) -> str:
    create_id = resolve_topic(aggregate_topic).create_id
    return next(iter(inspect.signature(create_id).parameters))


class Streams(dict[int, Stream]):
    """The streams one worker has met, keyed by the aggregate id's integer (a UUID hashes
    in Python, its integer in C: this is looked up for every event). `first_event`
    reads an aggregate's first event from the store when its creation came before this
    worker started."""

    LIMIT = 2_000_000  # past this, start again empty

    def __init__(self, first_event: Callable[[UUID], Any]) -> None:
        super().__init__()
        self._first_event = first_event

    def __missing__(self, key: int) -> Stream:
        found = self[key] = Stream.of(self._first_event(UUID(int=key)))
        return found

    def of(self, event: Any, originator_id: UUID, version: int) -> Stream:
        """The stream of an event as the worker meets it, noted if it is its first."""
        if version == 1:
            found = self[originator_id.int] = Stream.of(event)
            return found
        return self[originator_id.int]

    def trim(self) -> None:
        if len(self) > self.LIMIT:
            self.clear()
