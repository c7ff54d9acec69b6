"""The Merkle tree, its proofs and the signed note against RFC 9162 and C2SP: the root
against §2.1.1's recursive definition, proofs against §2.1.3.2 and §2.1.4.2's
verification algorithms (`tests.rfc9162`, written out as an auditor's tool would), for
trees of 1, 2, 3, 7, 8 and 9 leaves and every leaf and prefix of each."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from ledger.domain.merkle import Tree
from ledger.verifier import (
    EMPTY_ROOT,
    Frontier,
    NoteError,
    key_id,
    leaf_hash,
    node_hash,
    note_text,
    signature_line,
    verify_note,
)
from tests.rfc9162 import mth, sha, verify_consistency, verify_inclusion

SIZES = (1, 2, 3, 7, 8, 9)


def entries(n: int) -> list[bytes]:
    return [sha(bytes([i % 256, i // 256])) for i in range(n)]


def test_hashes_follow_the_rfc() -> None:
    assert leaf_hash(b"d") == sha(b"\x00d")
    assert node_hash(b"l", b"r") == sha(b"\x01lr")
    assert Frontier().root() == EMPTY_ROOT == sha(b"")


@pytest.mark.parametrize("n", SIZES)
def test_the_root_is_rfc_9162s_merkle_tree_hash(n: int) -> None:
    leaves = entries(n)
    frontier = Frontier()
    for i, entry in enumerate(leaves, start=1):
        frontier.append(entry)
        assert frontier.root() == mth(leaves[:i]) == Tree(leaves[:i]).root()
    assert len(frontier.peaks) == bin(n).count("1")


@given(st.integers(min_value=1, max_value=300))
def test_the_frontier_agrees_with_the_definition_at_any_size(n: int) -> None:
    leaves = entries(n)
    frontier = Frontier()
    for entry in leaves:
        frontier.append(entry)
    assert frontier.root() == mth(leaves)


@pytest.mark.parametrize("n", SIZES)
def test_every_leaf_has_an_inclusion_proof_that_verifies(n: int) -> None:
    leaves = entries(n)
    tree, root = Tree(leaves), mth(leaves)
    for index in range(n):
        path = tree.inclusion(index)
        assert verify_inclusion(index, n, leaf_hash(leaves[index]), path, root)
        assert len(path) <= (n - 1).bit_length()
        # the proof binds this leaf at this place: another leaf or index fails
        other = (index + 1) % n
        if other != index:
            assert not verify_inclusion(other, n, leaf_hash(leaves[index]), path, root)
            assert not verify_inclusion(index, n, leaf_hash(leaves[other]), path, root)


@pytest.mark.parametrize("n", SIZES)
def test_every_prefix_has_a_consistency_proof_that_verifies(n: int) -> None:
    leaves = entries(n)
    tree = Tree(leaves)
    for m in range(1, n + 1):
        proof = tree.consistency(m)
        assert verify_consistency(m, n, mth(leaves[:m]), mth(leaves), proof)
        if m < n:  # a rewritten prefix is caught
            changed = [sha(b"other"), *leaves[1:m]]
            assert not verify_consistency(m, n, mth(changed), mth(leaves), proof)


def test_rfc_9162s_proof_shapes_for_seven_leaves() -> None:
    """§2.1.3.3 and §2.1.4.3's example tree of 7 leaves a..g."""
    leaves = entries(7)
    tree = Tree(leaves)
    h = [leaf_hash(e) for e in leaves]
    a_b, c_d, e_f = node_hash(h[0], h[1]), node_hash(h[2], h[3]), node_hash(h[4], h[5])
    # inclusion of b: [a, k, l] in the RFC's figure
    assert tree.inclusion(1) == [h[0], c_d, node_hash(e_f, h[6])]
    assert tree.inclusion(6) == [e_f, node_hash(a_b, c_d)]
    # consistency of the 3-leaf tree with the 7-leaf one: [c, d, g, l]
    assert tree.consistency(3) == [h[2], h[3], a_b, node_hash(e_f, h[6])]
    assert tree.consistency(4) == [node_hash(e_f, h[6])]
    assert tree.consistency(6) == [e_f, h[6], node_hash(a_b, c_d)]


def test_a_signed_note_is_c2sp_shaped_and_verifies_only_with_its_key() -> None:
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    raw = public.public_bytes_raw()
    root = sha(b"root")
    text = note_text(9, root)
    assert text == f"talent-ledger\n9\n{base64.b64encode(root).decode()}\n"
    note = text + "\n" + signature_line(raw, private.sign(text.encode()))
    last = note.splitlines()[-1]
    assert last.startswith("\u2014 talent-ledger ")
    blob = base64.b64decode(last.split(" ")[-1])
    assert blob[:4] == key_id(raw) == sha(b"talent-ledger\n\x01" + raw)[:4]
    assert len(blob) == 68

    verified = verify_note(note, public)
    assert (verified.tree_size, verified.root) == (9, root)

    with pytest.raises(NoteError, match="no signature by this key"):
        verify_note(note, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(NoteError, match="does not verify"):
        verify_note(note.replace("\n9\n", "\n8\n"), public)
    with pytest.raises(NoteError, match="blank line"):
        verify_note(text, public)
