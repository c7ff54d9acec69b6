"""The hash chain: each event's hash covers the hash before it, so no stored event can
change, move or vanish without breaking every hash after it.

The digest is defined once, in `ledger.verifier` (the file auditors run on their own
machines); the database's trigger computes the same bytes when it appends, and
verification recomputes them independently of it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from ledger.verifier import GENESIS, chain_digest

__all__ = ["GENESIS", "event_digest", "instant_text"]


def instant_text(recorded_at: datetime) -> str:
    """`recorded_at` as the chain hashes it: UTC, to the microsecond."""
    return recorded_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_digest(
    prev: bytes,
    position: int,
    originator_id: UUID,
    version: int,
    topic: str,
    state: bytes,
    recorded_at: datetime,
) -> bytes:
    """The chain hash of an event as the event table holds it."""
    return chain_digest(
        prev, position, str(originator_id), version, topic, state, instant_text(recorded_at)
    )
