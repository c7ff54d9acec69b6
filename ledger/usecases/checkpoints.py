"""Signed checkpoints (CONTRACT §12): the ledger's Merkle root at a tree size, signed
with the ledger's Ed25519 key as a C2SP signed note, so that anyone holding the public
key can tell later whether the history up to that size is still the one signed.

The formats (tree, note) are `ledger.verifier`'s; this holds the key, and says what a
notary does. Where checkpoints are kept is the adapters' business
(`ledger.adapters.checkpoints`).
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.usecases.progress import Progress
from ledger.verifier import note_text, signature_line

SEED_BYTES = 32


def parse_signing_key(text: str) -> bytes:
    """A signing key as configured: base64 of the 32-byte Ed25519 private seed."""
    try:
        seed = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        seed = b""
    if len(seed) != SEED_BYTES:
        raise ValueError(
            "LEDGER_SIGNING_KEY must be base64 of a 32-byte Ed25519 seed "
            "(`openssl rand -base64 32`)"
        )
    return seed


def new_signing_key() -> str:
    return base64.b64encode(os.urandom(SEED_BYTES)).decode()


class Signer:
    """Signs notes with the ledger's key; the only holder of the private seed."""

    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._key.public_key().public_bytes_raw()

    @property
    def public_key_text(self) -> str:
        """What the auditors keep: base64 of the 32-byte public key."""
        return base64.b64encode(self.public_key).decode()

    def note(self, tree_size: int, root: bytes) -> str:
        """The signed note of a tree: its text, a blank line, the signature line."""
        text = note_text(tree_size, root)
        return f"{text}\n{signature_line(self.public_key, self._key.sign(text.encode()))}"


@dataclass(frozen=True)
class Checkpoint:
    checkpoint_id: int
    tree_size: int  # the events up to and including head_position
    head_position: int
    root: bytes  # RFC 9162 Merkle tree hash over their chain hashes
    head: bytes  # the chain hash at head_position
    signed_at: datetime
    note: str


@dataclass(frozen=True)
class Verification:
    ok: bool
    events_checked: int
    head: str  # the chain hash of the last event checked (hex)
    first_bad_position: int | None
    checkpoints_checked: int = 0
    first_bad_checkpoint: int | None = None
    detail: str | None = None  # what did not hold, in words


@dataclass(frozen=True)
class Inclusion:
    """RFC 9162 inclusion proof of the event at `position`, leaf `leaf_index`."""

    position: int
    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    audit_path: list[bytes]


class Notary(Protocol):
    """Signs, keeps and checks checkpoints (`ledger.adapters.checkpoints.PostgresNotary`)."""

    signer: Signer

    def sign(self) -> Checkpoint:
        """Sign the ledger as it stands now, and keep the checkpoint."""

    def find(self, checkpoint_id: int | None = None) -> Checkpoint | None:
        """A kept checkpoint, or (no id) the one of the largest tree."""

    def verify(self, note: str | None = None, progress: Progress | None = None) -> Verification:
        """The hash chain, every kept checkpoint, and `note` (one kept elsewhere) if given."""

    def inclusion(self, position: int, tree_size: int) -> Inclusion:
        """That the event at `position` is in the tree of the first `tree_size` events."""

    def consistency(self, first: int, second: int) -> list[bytes]:
        """That the tree of the first `first` events is a prefix of that of `second`."""
