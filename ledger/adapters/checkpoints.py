"""Checkpoints kept in PostgreSQL: signed as the ledger stands, grown from the last one
(its tree's frontier is kept with it, so signing reads only the events since), and the
proofs an auditor asks of them."""

from __future__ import annotations

from bisect import bisect_left

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.postgres import PostgresDatastore
from psycopg import sql
from psycopg.rows import DictRow

from ledger.adapters.chain import Signed, verify_chain
from ledger.adapters.postgres import CHECKPOINTS_TABLE, EVENTS_TABLE, snapshot, statements
from ledger.domain.chain import GENESIS
from ledger.domain.errors import ValidationFailed
from ledger.domain.merkle import Tree
from ledger.usecases.checkpoints import Checkpoint, Inclusion, Signer, Verification
from ledger.usecases.progress import Progress
from ledger.verifier import Frontier

_EVENTS_AFTER = sql.SQL(
    "SELECT notification_id, hash FROM {} WHERE notification_id > %s ORDER BY notification_id"
).format(sql.Identifier(EVENTS_TABLE))
_FIRST_EVENTS = sql.SQL(
    "SELECT notification_id, hash FROM {} ORDER BY notification_id LIMIT %s"
).format(sql.Identifier(EVENTS_TABLE))


def checkpoint_of(row: DictRow) -> Checkpoint:
    return Checkpoint(
        row["checkpoint_id"],
        row["tree_size"],
        row["head_position"],
        bytes(row["root"]),
        bytes(row["head"]),
        row["signed_at"],
        row["note"],
    )


class PostgresNotary:
    def __init__(self, datastore: PostgresDatastore, signer: Signer) -> None:
        self._datastore = datastore
        self.signer = signer

    def sign(self) -> Checkpoint:
        """The tree of every event committed so far, signed and kept. The events are read
        in the transaction that stores the checkpoint (positions commit in order, so its
        snapshot holds a prefix of the history), after the largest kept tree."""
        with self._datastore.transaction(commit=True) as curs:
            curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            curs.execute(
                sql.SQL(
                    "SELECT tree_size, head_position, head, peaks FROM {} "
                    "ORDER BY tree_size DESC, checkpoint_id DESC LIMIT 1"
                ).format(sql.Identifier(CHECKPOINTS_TABLE))
            )
            last = curs.fetchone()
            frontier, position, head = Frontier(), 0, GENESIS
            if last is not None:
                frontier = Frontier(last["tree_size"], [bytes(p) for p in last["peaks"]])
                position, head = last["head_position"], bytes(last["head"])
            with curs.connection.cursor(name="checkpoint_events") as events:
                events.itersize = 10_000
                events.execute(_EVENTS_AFTER, (position,))
                for event in events:
                    head = bytes(event["hash"])
                    frontier.append(head)
                    position = event["notification_id"]
            root = frontier.root()
            curs.execute(
                sql.SQL(
                    "INSERT INTO {} (tree_size, head_position, root, head, peaks, note) "
                    "VALUES (%s, %s, %s, %s, %s, %s) RETURNING checkpoint_id, tree_size, "
                    "head_position, root, head, signed_at, note"
                ).format(sql.Identifier(CHECKPOINTS_TABLE)),
                (
                    frontier.size,
                    position,
                    root,
                    head,
                    frontier.peaks,
                    self.signer.note(frontier.size, root),
                ),
            )
            row = curs.fetchone()
        assert row is not None
        return checkpoint_of(row)

    def find(self, checkpoint_id: int | None = None) -> Checkpoint | None:
        """A kept checkpoint, or (no id) the one of the largest tree."""
        with statements(self._datastore) as curs:
            curs.execute(
                sql.SQL(
                    "SELECT checkpoint_id, tree_size, head_position, root, head, signed_at, "
                    "note FROM {} WHERE %s::bigint IS NULL OR checkpoint_id = %s "
                    "ORDER BY tree_size DESC, checkpoint_id DESC LIMIT 1"
                ).format(sql.Identifier(CHECKPOINTS_TABLE)),
                (checkpoint_id, checkpoint_id),
            )
            row = curs.fetchone()
        return checkpoint_of(row) if row else None

    def verify(self, note: str | None = None, progress: Progress | None = None) -> Verification:
        """The chain, every kept checkpoint, and `note` (one an auditor kept) if given;
        `progress` told (position, last position) as the walk goes."""
        with statements(self._datastore) as curs:
            curs.execute(
                sql.SQL("SELECT checkpoint_id, note FROM {}").format(
                    sql.Identifier(CHECKPOINTS_TABLE)
                )
            )
            signed = [Signed(r["checkpoint_id"], r["note"]) for r in curs.fetchall()]
        if note is not None:
            signed.append(Signed(None, note))
        public_key = Ed25519PublicKey.from_public_bytes(self.signer.public_key)
        return verify_chain(self._datastore, signed, public_key, progress)

    def _tree(self, tree_size: int, parameter: str) -> tuple[Tree, list[int]]:
        """The tree of the first `tree_size` events, and their positions."""
        with snapshot(self._datastore) as curs:
            rows = curs.execute(_FIRST_EVENTS, (tree_size,)).fetchall()
        if len(rows) < tree_size:
            raise ValidationFailed(
                parameter, f"the ledger holds {len(rows)} events, not {tree_size}", "query"
            )
        return Tree([bytes(r["hash"]) for r in rows]), [r["notification_id"] for r in rows]

    def inclusion(self, position: int, tree_size: int) -> Inclusion:
        tree, positions = self._tree(tree_size, "tree_size")
        index = _index(positions, position)
        if index is None:
            raise ValidationFailed(
                "position", f"no event at position {position} in the tree of {tree_size}", "query"
            )
        return Inclusion(position, index, tree_size, tree.leaf(index), tree.inclusion(index))

    def consistency(self, first: int, second: int) -> list[bytes]:
        if first > second:
            raise ValidationFailed("from", "`from` is larger than `to`", "query")
        tree, _ = self._tree(second, "to")
        return tree.consistency(first)


def _index(positions: list[int], position: int) -> int | None:
    i = bisect_left(positions, position)
    return i if i < len(positions) and positions[i] == position else None
