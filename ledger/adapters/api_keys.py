"""API keys: random bearer tokens, of which only a SHA-256 digest is stored.

A key has 256 bits of entropy, so a fast hash is enough: there is nothing to
brute-force, and a lookup stays one indexed query per request.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time

from eventsourcing.postgres import PostgresDatastore

from ledger.domain.roles import ROLES, Principal

KEY_PREFIX = "tl_"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(datastore: PostgresDatastore, name: str, roles: list[str]) -> str:
    """Store a new key for `name` with `roles`; the key itself is returned, never stored."""
    unknown = sorted(set(roles) - set(ROLES))
    if unknown or not roles:
        raise ValueError(f"roles must be among {', '.join(ROLES)}; got {unknown or 'none'}")
    if not name.strip():
        raise ValueError("a key needs a name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with datastore.transaction(commit=True) as curs:
        curs.execute(
            "INSERT INTO api_keys (key_hash, name, roles) VALUES (%s, %s, %s)",
            (_digest(key), name, sorted(set(roles))),
        )
    return key


def authenticate(datastore: PostgresDatastore, key: str) -> Principal | None:
    with datastore.transaction(commit=False) as curs:
        curs.execute("SELECT name, roles FROM api_keys WHERE key_hash = %s", (_digest(key),))
        row = curs.fetchone()
    return Principal(row["name"], frozenset(row["roles"])) if row else None


class KeyCache:
    """Known keys for a few seconds, so a busy client costs no lookup per request.
    Unknown keys are never cached: a key created a moment ago works at once."""

    TTL_SECONDS = 30.0

    def __init__(self, datastore: PostgresDatastore) -> None:
        self._datastore = datastore
        self._known: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def known(self, key: str) -> Principal | None:
        """The key's principal if it was seen lately: no query."""
        with self._lock:
            hit = self._known.get(_digest(key))
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    def authenticate(self, key: str) -> Principal | None:
        hit = self.known(key)
        if hit is not None:
            return hit
        principal = authenticate(self._datastore, key)
        if principal is not None:
            with self._lock:
                self._known[_digest(key)] = (principal, time.monotonic() + self.TTL_SECONDS)
        return principal
