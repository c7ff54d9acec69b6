"""RFC 9162 proofs over the events' chain hashes: that an event is in a signed tree
(inclusion), and that a later tree extends an earlier one (consistency).

The tree itself (leaf and node hashes, the root) is defined in `ledger.verifier`; these
build proofs from a tree's leaves, following §2.1.3.1 and §2.1.4.1 literally. Each
proof hashes every leaf once: O(n), which an auditor asks for now and then.
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.verifier import Frontier, leaf_hash


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class Tree:
    """A tree over `entries` (the chain hashes in position order)."""

    def __init__(self, entries: Sequence[bytes]) -> None:
        self._hashed = [leaf_hash(e) for e in entries]

    def root(self, lo: int = 0, hi: int | None = None) -> bytes:
        """MTH of the leaves lo..hi-1."""
        frontier = Frontier()
        for hashed in self._hashed[lo : len(self._hashed) if hi is None else hi]:
            frontier.append_hash(hashed)
        return frontier.root()

    def leaf(self, index: int) -> bytes:
        return self._hashed[index]

    def inclusion(self, index: int) -> list[bytes]:
        """PATH(index, D[n]): the audit path of one leaf, nearest sibling first."""
        return self._path(index, 0, len(self._hashed))

    def _path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n <= 1:
            return []
        k = _split(n)
        if m < k:
            return [*self._path(m, lo, lo + k), self.root(lo + k, hi)]
        return [*self._path(m - k, lo + k, hi), self.root(lo, lo + k)]

    def consistency(self, m: int) -> list[bytes]:
        """PROOF(m, D[n]): that the tree of the first m leaves is a prefix of this one."""
        n = len(self._hashed)
        return [] if m in (0, n) else self._subproof(m, 0, n, complete=True)

    def _subproof(self, m: int, lo: int, hi: int, *, complete: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if complete else [self.root(lo, hi)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, lo, lo + k, complete=complete), self.root(lo + k, hi)]
        return [*self._subproof(m - k, lo + k, hi, complete=False), self.root(lo, lo + k)]
