"""What running a decision answers, at each level of the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


def refusal(error: E) -> E:
    """A refusal kept to be answered later, without its traceback nor those of the
    exceptions it was raised from or while handling. Their frames hold the unit of
    work, and one of them holds the refusal: kept with them, a refused unit (a run's
    thousands of aggregates) would be a cycle that only the garbage collector frees,
    in a pass over everything the process holds."""
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        chained = pending.pop()
        if id(chained) not in seen:
            seen.add(id(chained))
            chained.with_traceback(None)
            pending += [e for e in (chained.__cause__, chained.__context__) if e is not None]
    return error


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
