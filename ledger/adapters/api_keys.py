"""API keys: random bearer tokens, of which only a SHA-256 digest is stored, with their
life cycle (expiry, revocation, last use). Issuing and revoking one is also recorded
as an event, with who did it (`ledger.usecases.keys`).

A key has 256 bits of entropy, so a fast hash is enough: there is nothing to
brute-force, and a lookup stays one indexed statement.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresDatastore
from psycopg import sql

from ledger.adapters.postgres import datastore_of, statements
from ledger.domain.errors import NameTaken, NotFound, ValidationFailed
from ledger.domain.roles import ROLES, Principal
from ledger.domain.values import ID_PATTERN
from ledger.usecases.keys import IssueKey, RevokeKey
from ledger.usecases.ledger import Ledger

KEY_PREFIX = "tl_"
MAX_DAYS = 3650
_COLUMNS = sql.SQL("seq, name, roles, created_at, expires_at, revoked_at, last_used_at")


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    """A key as `keys list` shows it: never its secret, nor its digest."""

    seq: int
    name: str
    roles: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


def _record(row: dict[str, Any]) -> KeyRecord:
    return KeyRecord(**{k: row[k] for k in KeyRecord.__dataclass_fields__})


@dataclass(frozen=True)
class Issued:
    record: KeyRecord
    key: str = field(repr=False)  # the secret: shown this once, never stored
    position: int  # of the event that records it


def issue_key(
    ledger: Ledger, name: str, roles: list[str], expires_in_days: int | None = None
) -> Issued:
    """A new key for `name` with `roles`, stored and recorded as issued. The row is inserted first,
    in a transaction left open while the event is recorded: a name taken by a racing
    request waits on it, and a refused event leaves no row."""
    unknown = sorted(set(roles) - set(ROLES))
    if unknown or not roles:
        raise ValidationFailed("roles", f"roles must be among {', '.join(ROLES)}")
    if not re.fullmatch(ID_PATTERN, name):
        raise ValidationFailed("name", "a key's name is letters, digits and . _ : - (64 at most)")
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_DAYS:
        raise ValidationFailed("expires_in_days", f"between 1 and {MAX_DAYS} days")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    with datastore_of(ledger).transaction(commit=True) as curs:
        try:
            curs.execute(
                sql.SQL(
                    "INSERT INTO api_keys (key_hash, name, roles, expires_at) "
                    "VALUES (%s, %s, %s, %s) RETURNING {}"
                ).format(_COLUMNS),
                (_digest(key), name, sorted(set(roles)), expires_at),
            )
        except psycopg.errors.UniqueViolation:
            raise NameTaken(f"a key named {name} exists (names are never reused)") from None
        record = _record(curs.fetchone())  # type: ignore[arg-type]
        outcome = ledger.execute(IssueKey(name, tuple(record.roles), expires_at))
    return Issued(record, key, outcome.position)


def find_key(datastore: PostgresDatastore, name: str) -> KeyRecord:
    with statements(datastore) as curs:
        curs.execute(sql.SQL("SELECT {} FROM api_keys WHERE name = %s").format(_COLUMNS), (name,))
        row = curs.fetchone()
    if row is None:
        raise NotFound(f"no key named {name}")
    return _record(row)


def revoke_key(ledger: Ledger, name: str) -> tuple[KeyRecord, int]:
    """Revoke the key `name`: refused from the next lookup on (within the cache's second
    in every process), then recorded; running it again finishes a revocation cut short,
    and answers the key as it is."""
    with statements(datastore_of(ledger)) as curs:
        curs.execute(
            sql.SQL(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE name = %s "
                "RETURNING {}"
            ).format(_COLUMNS),
            (name,),
        )
        row = curs.fetchone()
    if row is None:
        raise NotFound(f"no key named {name}")
    record = _record(row)
    outcome = ledger.execute(RevokeKey(name, tuple(record.roles), record.expires_at))
    return record, outcome.position


def list_keys(
    datastore: PostgresDatastore, after: int = 0, limit: int | None = None
) -> tuple[list[KeyRecord], str | None]:
    """Keys in the order they were issued, after `after` (a page's cursor), at most
    `limit`; and the next page's cursor."""
    with statements(datastore) as curs:
        curs.execute(
            sql.SQL("SELECT {} FROM api_keys WHERE seq > %s ORDER BY seq LIMIT %s").format(
                _COLUMNS
            ),
            (after, None if limit is None else limit + 1),
        )
        records = [_record(row) for row in curs.fetchall()]
    if limit is not None and len(records) > limit:
        return records[:limit], str(records[limit - 1].seq)
    return records, None


def authenticate(datastore: PostgresDatastore, key: str) -> Principal | None:
    """The holder of a valid key (issued, not revoked, not expired), noting its use; a
    key that holds both approver and treasury (issued before that was refused) is
    never valid."""
    with statements(datastore) as curs:
        curs.execute(
            "UPDATE api_keys SET last_used_at = now() WHERE key_hash = %s "
            "AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) "
            "AND NOT roles @> ARRAY['approver', 'treasury'] RETURNING name, roles",
            (_digest(key),),
        )
        row = curs.fetchone()
    return Principal(row["name"], frozenset(row["roles"])) if row else None


class KeyCache:
    """Keys seen in the last second, so a busy client costs at most one lookup a second
    per process. Short enough that a revocation or an expiry reaches every process
    within it without any signal between them; unknown keys are never cached, so a new
    key works at once. The requests that find a key expired together wait for one
    lookup: each making its own, they updated the key's row in turn, each waiting for
    the row lock of the one before (docs/performance.md, "stop 36")."""

    TTL_SECONDS = 1.0

    def __init__(self, datastore: PostgresDatastore) -> None:
        self._datastore = datastore
        self._known: dict[str, tuple[Principal, float]] = {}
        self._looking_up: dict[str, Future[Principal | None]] = {}
        self._lock = threading.Lock()

    def known(self, key: str) -> Principal | None:
        """The key's principal if it was seen within the last second: no query."""
        with self._lock:
            hit = self._known.get(_digest(key))
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    def authenticate(self, key: str) -> Principal | None:
        digest = _digest(key)
        with self._lock:
            seen = self._known.get(digest)
            if seen is not None and seen[1] > time.monotonic():
                return seen[0]
            lookup = self._looking_up.get(digest)
            waiting = lookup is not None  # another request looks it up: its answer is ours
            if lookup is None:
                lookup = self._looking_up[digest] = Future()
        if waiting:
            return lookup.result()  # or raises what the lookup raised
        try:
            principal = authenticate(self._datastore, key)
        except BaseException as e:
            with self._lock:
                del self._looking_up[digest]
            lookup.set_exception(e)
            raise
        with self._lock:
            del self._looking_up[digest]
            if principal is None:
                self._known.pop(digest, None)
            else:
                self._known[digest] = (principal, time.monotonic() + self.TTL_SECONDS)
        lookup.set_result(principal)
        return principal
