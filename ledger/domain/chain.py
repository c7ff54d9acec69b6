"""The hash chain: each event's hash covers the hash before it, so no stored event can
change, move or vanish without breaking every hash after it.

`event_digest` is the definition; the database's trigger computes the same bytes
when it appends, and verification recomputes them independently of it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from uuid import UUID

GENESIS = bytes(32)  # the "previous hash" of the first event


def event_digest(
    prev: bytes,
    position: int,
    originator_id: UUID,
    version: int,
    topic: str,
    state: bytes,
    recorded_at: datetime,
) -> bytes:
    """sha256(previous hash | position | stream id | version | topic | payload |
    recorded_at), the same bytes as the `ledger_event_digest` SQL function hashes."""
    instant = recorded_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    head = f"{position}|{originator_id}|{version}|{topic}|".encode()
    return hashlib.sha256(prev + head + state + f"|{instant}".encode()).digest()
