"""What running a decision answers, at each level of the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


def refusal(error: E) -> E:
    """A refusal kept to be answered later, without its traceback. The traceback's
    frames hold the unit of work, and one of them holds the refusal: kept with it, a
    refused unit (a run's thousands of aggregates) would be a cycle that only the
    garbage collector frees, in a pass over everything the process holds."""
    return error.with_traceback(None)


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a use case answers: the resource, the position to read after, and
    whether it was a replay (nothing new recorded)."""

    value: T
    position: int
    replayed: bool


@dataclass(frozen=True)
class Attempt(Generic[T]):
    """One run of a unit of work: its answer, whether some command in it was refused
    (a refusal may rest on an aggregate this process has not seen yet), and whether
    what it changed is to be recorded."""

    value: T
    refused: bool = False
    record: bool = True


@dataclass(frozen=True)
class Committed(Generic[T]):
    value: T
    recorded: list[tuple[Any, int]]  # each event recorded, with its position
    position: int  # the last event recorded, else the head once the decision held
    lock_waited: float = 0.0  # seconds waited for the append lock
