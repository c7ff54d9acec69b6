"""What every aggregate of the ledger shares: ids from business keys, and events
stamped with who recorded them in which request.

Public methods check the rules and raise a `LedgerError`; the private `@event`
methods only assign state, because they run again each time an aggregate is
rebuilt from its events. Ids are derived from the client's business keys, so the
same key always names the same stream and a second create collides in the store.
"""

from __future__ import annotations

from copy import deepcopy
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Self, TypeVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from ledger.domain.context import actor_cvar, request_id_cvar
from ledger.domain.errors import IdempotencyConflict


@lru_cache(maxsize=65_536)  # a hash per call, and each command names its streams often
def stream_id(kind: str, key: str) -> UUID:
    """The aggregate id of a business key, e.g. `stream_id("grants", "G-1")`."""
    return uuid5(NAMESPACE_URL, f"/{kind}/{key}")


def is_retry(existing: Any, fingerprint: str, what: str) -> bool:
    """Whether `existing` (a resource, or None) was made by this very request, and is
    to be answered as it was: the same id with another body is an
    `idempotency_conflict`."""
    if existing is None:
        return False
    if existing.fingerprint != fingerprint:
        raise IdempotencyConflict(f"{what} exists with a different body")
    return True


class LedgerAggregate(Aggregate):
    """Stamps every event with who recorded it and in which request.

    The stamp comes from context (`ledger.domain.context`), never from a request body;
    an `@event` method that needs it declares `actor: str = ""` and receives the stamp.
    """

    # whether its history grows without bound, so that a first read is worth
    # doing ahead of a decision's checks (`ledger.engine.engine`)
    LONG_HISTORY = False

    class Event(Aggregate.Event):
        actor: str
        request_id: str

    class Created(Event, Aggregate.Created):
        pass

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        """The library's, stamped, less its check of explicit topics (no aggregate here
        has one) and its copies of the arguments: every change of every decision comes
        this way, a settlement's 20,000 (docs/performance.md, "stop 30")."""
        _stamp(kwargs)
        event = event_class(
            originator_id=self._id,
            originator_version=self._version + 1,
            timestamp=event_class.create_timestamp(),
            **kwargs,
        )
        event.mutate(self)
        self._pending_events.append(event)

    @classmethod
    def _create(cls, event_class: Any, **kwargs: Any) -> Any:
        _stamp(kwargs)
        return super()._create(event_class, **kwargs)

    def copy(self) -> Self:
        """A copy a command may change, sharing nothing it could change with this one.
        Every command works on copies (a settlement makes 20,000), so this skips
        `copy.deepcopy`'s generic dispatch, which cost about as much as the copy."""
        return self.__deepcopy__({})

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        """Copies what can change and shares what cannot (values and recorded events
        are immutable)."""
        clone = object.__new__(type(self))
        state = clone.__dict__
        for name, value in self.__dict__.items():
            if type(value) in _IMMUTABLE:
                state[name] = value
            elif name == "_pending_events":
                state[name] = list(value)
            else:
                state[name] = _copied(value, memo)
        return clone


_IMMUTABLE: set[type] = {str, int, bool, Decimal, UUID, date, datetime, type(None)}

V = TypeVar("V", bound=type)


def shared(cls: V) -> V:
    """A value class whose instances never change: every copy of an aggregate holding
    one shares it (a run's 10,000 items, a grant's instalment plan)."""
    _IMMUTABLE.add(cls)
    cls.__deepcopy__ = _itself  # type: ignore[attr-defined]
    return cls


def _itself(value: Any, memo: dict[int, Any]) -> Any:
    return value


def _copied(value: Any, memo: dict[int, Any]) -> Any:
    """`deepcopy(value, memo)`, with the dicts and lists an aggregate holds (of values,
    mostly) copied without its generic dispatch at every level."""
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    if kind is dict or kind is list:
        copied = memo.get(id(value))
        if copied is None:
            copied = memo[id(value)] = (
                {k: _copied(v, memo) for k, v in value.items()}
                if kind is dict
                else [_copied(v, memo) for v in value]
            )
        return copied
    return deepcopy(value, memo)


def _stamp(kwargs: dict[str, Any]) -> None:
    """Who records the event and in which request, over the default `""` an `@event`
    method may declare (`kwargs` is the callee's own, so stamped in place)."""
    kwargs["actor"] = actor_cvar.get()
    kwargs["request_id"] = request_id_cvar.get()
