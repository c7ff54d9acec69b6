"""Proof that the stored history is untampered: recompute the hash chain from the
event table, independently of the database function that wrote it, and every signed
checkpoint's Merkle root from it, independently of the database altogether."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor, sql
from psycopg.rows import DictRow

from ledger.adapters.postgres import EVENTS_TABLE, head_position
from ledger.domain.chain import GENESIS, event_digest
from ledger.usecases.checkpoints import Verification
from ledger.usecases.progress import PROGRESS_EVERY, Progress
from ledger.verifier import Frontier, Note, NoteError, verify_note


@dataclass(frozen=True)
class Signed:
    """A checkpoint to hold the history to: a stored one (with its id), or a note an
    auditor kept (id None)."""

    checkpoint_id: int | None
    note: str


class _Bad(Exception):
    def __init__(self, checkpoint: Signed, why: str) -> None:
        super().__init__(why)
        self.checkpoint = checkpoint


def _named(checkpoint: Signed) -> str:
    return (
        "the note given"
        if checkpoint.checkpoint_id is None
        else f"checkpoint {checkpoint.checkpoint_id}"
    )


class _Walk:
    """The walk through the events: the chain so far, its Merkle tree, and the
    checkpoints (smallest tree first) still to meet."""

    def __init__(self, signed: Sequence[Signed], public_key: Ed25519PublicKey | None) -> None:
        self.prev, self.checked, self.frontier = GENESIS, 0, Frontier()
        self.claims: list[tuple[Note, Signed]] = []
        for checkpoint in signed:
            if public_key is None:
                break
            try:
                self.claims.append((verify_note(checkpoint.note, public_key), checkpoint))
            except NoteError as e:
                raise _Bad(checkpoint, str(e)) from None
        self.claims.sort(key=lambda c: c[0].tree_size)
        self.matched = 0

    def result(
        self, *, bad_position: int | None = None, bad: Signed | None = None, detail: str = ""
    ) -> Verification:
        ok = bad_position is None and bad is None
        return Verification(
            ok,
            self.checked,
            self.prev.hex(),
            bad_position,
            self.matched,
            bad.checkpoint_id if bad is not None else None,
            None if ok else detail,
        )

    def follow(self, digest: bytes) -> None:
        self.prev = digest
        self.checked += 1
        self.frontier.append(digest)

    def settle(self) -> Verification | None:
        """Check the checkpoints whose tree the walk has just completed."""
        while self.matched < len(self.claims):
            note, checkpoint = self.claims[self.matched]
            if note.tree_size != self.frontier.size:
                return None
            if note.root != self.frontier.root():
                return self.result(
                    bad=checkpoint,
                    detail=f"{_named(checkpoint)}: the first {note.tree_size} events no longer "
                    "give the Merkle root it signs: the history was rewritten",
                )
            self.matched += 1
        return None

    def end(self) -> Verification:
        if self.matched < len(self.claims):
            note, checkpoint = self.claims[self.matched]
            return self.result(
                bad=checkpoint,
                detail=f"{_named(checkpoint)} signs {note.tree_size} events, the ledger holds "
                f"only {self.checked}: the history was cut short",
            )
        return self.result()


def verify_chain(
    datastore: PostgresDatastore,
    signed: Sequence[Signed] = (),
    public_key: Ed25519PublicKey | None = None,
    progress: Progress | None = None,
) -> Verification:
    """Walk every event in order; report the first whose stored hash does not follow,
    then the first checkpoint (smallest tree first) whose signed root the events no
    longer give: a history rewritten and re-chained, or cut short. A checkpoint whose
    note does not verify with `public_key` is reported before any walk."""
    try:
        walk = _Walk(signed, public_key)
    except _Bad as bad:
        return _Walk((), None).result(bad=bad.checkpoint, detail=f"{_named(bad.checkpoint)}: {bad}")
    head = head_position(datastore) if progress else 0
    with (
        datastore.get_connection() as conn,
        conn.transaction(),
        conn.cursor(name="verify_chain") as cursor,
    ):
        cursor.itersize = 5000
        cursor.execute(
            sql.SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state, "
                "recorded_at, hash FROM {} ORDER BY notification_id"
            ).format(sql.Identifier(EVENTS_TABLE))
        )
        if failed := walk.settle():
            return failed
        for row in cursor:
            expected = event_digest(
                walk.prev,
                row["notification_id"],
                row["originator_id"],
                row["originator_version"],
                row["topic"],
                bytes(row["state"]),
                row["recorded_at"],
            )
            if bytes(row["hash"]) != expected:
                position = row["notification_id"]
                return walk.result(
                    bad_position=position, detail=f"the hash chain breaks at position {position}"
                )
            walk.follow(expected)
            if failed := walk.settle():
                return failed
            if progress and not row["notification_id"] % PROGRESS_EVERY:
                progress(row["notification_id"], head)
    if progress:
        progress(head, head)
    return walk.end()


def chain_hash_at(curs: Cursor[DictRow], position: int) -> str:
    """The chain's hash after the event at `position` (the genesis hash at 0), hex: what
    a copy of the history up to that position must reproduce."""
    if position == 0:
        return GENESIS.hex()
    curs.execute(
        sql.SQL("SELECT hash FROM {} WHERE notification_id = %s").format(
            sql.Identifier(EVENTS_TABLE)
        ),
        (position,),
    )
    row = curs.fetchone()
    assert row is not None, f"no event at position {position}"
    return bytes(row["hash"]).hex()
