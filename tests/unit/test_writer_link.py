"""An API process's side of the writer's connection (`api.writer`): the writes of one
turn of the event loop go in one write, and a request given up (cancelled) while the
writer decides does not cost the others their answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from eventsourcing.persistence import PersistenceError

from api.writer import _Connection, frame, unframe


class _Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)


def _two_sent_the_first_given_up() -> tuple[_Connection, asyncio.Future[Any]]:
    """A connection with two writes sent, the first one's request cancelled; the second
    one's answer, awaited."""
    connection = _Connection()
    connection.connection_made(_Transport())  # type: ignore[arg-type]
    given_up = connection.send(("grant.propose", {}, None, "clerk", "r1"))
    waiting = connection.send(("grant.propose", {}, None, "clerk", "r2"))
    given_up.cancel()
    return connection, waiting


def test_an_answer_to_a_cancelled_request_is_dropped_and_the_rest_answered() -> None:
    async def run() -> Any:
        connection, waiting = _two_sent_the_first_given_up()
        connection.data_received(frame((1, True, "first")) + frame((2, True, "second")))
        return await waiting

    assert asyncio.run(run()) == (True, "second")


def test_a_lost_writer_fails_every_waiting_request_but_a_cancelled_one() -> None:
    async def run() -> None:
        connection, waiting = _two_sent_the_first_given_up()
        connection.connection_lost(None)
        with pytest.raises(PersistenceError):
            await waiting

    asyncio.run(run())


def test_the_writes_of_one_turn_of_the_event_loop_go_in_one_write() -> None:
    transport = _Transport()

    async def run() -> None:
        connection = _Connection()
        connection.connection_made(transport)  # type: ignore[arg-type]
        for n in range(3):
            connection.send(("grant.propose", {}, n, "clerk", f"r{n}"))
        assert transport.sent == []  # sent when the loop turns
        await asyncio.sleep(0)
        connection.send(("grant.propose", {}, 3, "clerk", "r3"))
        await asyncio.sleep(0)

    asyncio.run(run())
    assert [[m[3] for m in unframe(bytearray(sent))] for sent in transport.sent] == [[0, 1, 2], [3]]
