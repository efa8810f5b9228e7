"""RFC 9162 section 2.1: the Merkle Tree Hash, inclusion and consistency proofs.

- leaf hash ``SHA-256(0x00 || leaf)``, interior node ``SHA-256(0x01 || left || right)``, and the
  hash of the empty tree ``SHA-256()``;
- a *node* ``(level, index)`` is the root of the perfect subtree over leaves
  ``[index * 2**level, (index + 1) * 2**level)``; level 0 is the leaf hashes. Every hash a proof
  needs is one of these nodes or the right fold of a few of them, so a store that keeps the
  nodes (as Trillian and tlog tiles do) serves any proof without reading the leaves;
- proofs are generated in two steps: a :class:`ProofPlan` names the nodes it needs, the store
  fetches them in one read, and :meth:`ProofPlan.assemble` hashes them into the proof;
- verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2, with the refusals of the
  reference implementation (transparency-dev/merkle): no consistency proof from the empty tree,
  no proof hash that is not 32 bytes long.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

#: Length of every hash in the tree (SHA-256).
HASH_SIZE = 32
#: The Merkle Tree Hash of the empty tree.
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class ProofError(ValueError):
    """A proof that does not verify, or a request for one that cannot exist."""


def leaf_hash(leaf: bytes) -> bytes:
    """``SHA-256(0x00 || leaf)``."""
    return hashlib.sha256(_LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``): where RFC 9162 splits a tree."""
    if n < 2:
        raise ValueError("a tree of fewer than two leaves does not split")
    return 1 << ((n - 1).bit_length() - 1)


@dataclass(frozen=True, order=True, slots=True)
class NodeId:
    """The root of the perfect subtree over leaves ``[index << level, (index + 1) << level)``."""

    level: int
    index: int

    @property
    def begin(self) -> int:
        """The first leaf under the node."""
        return self.index << self.level

    @property
    def end(self) -> int:
        """One past the last leaf under the node."""
        return (self.index + 1) << self.level


def range_nodes(begin: int, end: int) -> list[NodeId]:
    """The perfect subtrees that make up leaves ``[begin, end)``, left to right, largest first.

    For the subtrees RFC 9162 builds (``begin`` a multiple of a power of two ``>= end - begin``)
    the Merkle Tree Hash of the range is the right fold (:func:`fold`) of their hashes.
    """
    if not 0 <= begin <= end:
        raise ValueError(f"not a leaf range: [{begin}, {end})")
    out: list[NodeId] = []
    while begin < end:
        level = (begin & -begin).bit_length() - 1 if begin else (end - begin).bit_length() - 1
        while begin + (1 << level) > end:
            level -= 1
        out.append(NodeId(level, begin >> level))
        begin += 1 << level
    return out


def fold(hashes: Sequence[bytes]) -> bytes:
    """The hash of subtrees given left to right, largest first: ``h(a, h(b, h(c, ...)))``."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for left in reversed(hashes[:-1]):
        acc = node_hash(left, acc)
    return acc


def root_from_leaf_hashes(hashes: Iterable[bytes]) -> bytes:
    """The Merkle Tree Hash over leaf hashes, in one pass with O(log n) memory."""
    frontier = Frontier()
    for h in hashes:
        frontier.append(h)
    return frontier.root()


def root_from_leaves(leaves: Iterable[bytes]) -> bytes:
    """The Merkle Tree Hash over leaf bytes (hashing each leaf first)."""
    return root_from_leaf_hashes(leaf_hash(leaf) for leaf in leaves)


class Frontier:
    """The right edge of a growing tree: one hash per perfect subtree of ``[0, size)``.

    Appending costs O(log n) hashes (amortised two) and reports the nodes it completed, which
    is what the log's single writer stores; :meth:`root` folds the edge.
    """

    __slots__ = ("_hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            raise ValueError(f"a frontier of size {size} has {size.bit_count()} hashes")
        self.size = size
        self._hashes = list(hashes)

    @staticmethod
    def nodes_for(size: int) -> list[NodeId]:
        """The nodes a frontier of ``size`` holds (load them to resume appending)."""
        return range_nodes(0, size)

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The frontier's hashes, largest subtree first."""
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> list[tuple[NodeId, bytes]]:
        """Append a leaf hash; returns every node it completed, the leaf itself first."""
        index = self.size
        completed = [(NodeId(0, index), leaf_hash)]
        acc = leaf_hash
        level = 0
        hashes = self._hashes
        while index & 1:
            acc = node_hash(hashes.pop(), acc)
            index >>= 1
            level += 1
            completed.append((NodeId(level, index), acc))
        hashes.append(acc)
        self.size += 1
        return completed

    def append_hash(self, leaf_hash: bytes) -> None:
        """Append a leaf hash, without reporting the completed nodes (the fast path)."""
        index = self.size
        acc = leaf_hash
        hashes = self._hashes
        while index & 1:
            acc = hashlib.sha256(_NODE_PREFIX + hashes.pop() + acc).digest()
            index >>= 1
        hashes.append(acc)
        self.size += 1

    def extend_leaves(self, leaves: Iterable[bytes]) -> list[bytes]:
        """Append the leaves' hashes (hashing each leaf); returns those hashes. The fast path
        a verifier takes over a whole log: one loop, no calls besides the hashing."""
        hashes = self._hashes
        size = self.size
        sha256 = hashlib.sha256
        out: list[bytes] = []
        for leaf in leaves:
            acc = sha256(_LEAF_PREFIX + leaf).digest()
            out.append(acc)
            index = size
            while index & 1:
                acc = sha256(_NODE_PREFIX + hashes.pop() + acc).digest()
                index >>= 1
            hashes.append(acc)
            size += 1
        self.size = size
        return out

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes, without reporting the completed nodes."""
        hashes = self._hashes
        size = self.size
        sha256 = hashlib.sha256
        for acc in leaf_hashes:
            index = size
            while index & 1:
                acc = sha256(_NODE_PREFIX + hashes.pop() + acc).digest()
                index >>= 1
            hashes.append(acc)
            size += 1
        self.size = size

    def root(self) -> bytes:
        """The Merkle Tree Hash of the first :attr:`size` leaves."""
        return fold(self._hashes)


@dataclass(frozen=True)
class ProofPlan:
    """A proof as the nodes it is made of: each proof hash is the fold of one group of nodes."""

    groups: tuple[tuple[NodeId, ...], ...]

    @property
    def node_ids(self) -> frozenset[NodeId]:
        """Every node the proof needs (fetch these from the store)."""
        return frozenset(node for group in self.groups for node in group)

    def assemble(self, nodes: Mapping[NodeId, bytes]) -> list[bytes]:
        """The proof hashes, bottom up, from the fetched ``nodes``."""
        try:
            return [fold([nodes[node] for node in group]) for group in self.groups]
        except KeyError as exc:
            raise ProofError(f"the store lacks node {exc.args[0]}") from None


def _plan(ranges: Iterable[tuple[int, int]]) -> ProofPlan:
    return ProofPlan(tuple(tuple(range_nodes(b, e)) for b, e in ranges))


def inclusion_plan(index: int, size: int) -> ProofPlan:
    """The plan of ``PATH(index, D[0:size])`` (RFC 9162 2.1.3.1)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index - lo < k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return _plan(ranges)


def consistency_plan(first: int, second: int) -> ProofPlan:
    """The plan of ``PROOF(first, D[0:second])`` (RFC 9162 2.1.4.1), ``0 < first <= second``."""
    if first > second:
        raise ProofError(f"first tree size {first} is larger than second tree size {second}")
    if first == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, second
    complete = True  # SUBPROOF's b: is the subtree at hand the whole first tree?
    while first - lo != hi - lo:
        k = split_point(hi - lo)
        if first - lo <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            complete = False
    if not complete:
        ranges.append((lo, hi))
    ranges.reverse()
    return _plan(ranges)


def _check_hashes(proof: Sequence[bytes]) -> None:
    for position, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise ProofError(f"proof hash {position} is {len(h)} bytes long, not {HASH_SIZE}")


def _up_the_right_border(fn: int, sn: int) -> tuple[int, int]:
    """RFC 9162's "right-shift both fn and sn equally until either LSB(fn) is set or fn is 0"
    (the levels where the node is the last of its row, so the proof has no sibling for it)."""
    while fn and not fn & 1:
        fn >>= 1
        sn >>= 1
    return fn, sn


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 2.1.3.2, steps 1 to 4)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    if len(leaf_hash) != HASH_SIZE:
        raise ProofError(f"leaf hash is {len(leaf_hash)} bytes long, not {HASH_SIZE}")
    _check_hashes(proof)
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            fn, sn = _up_the_right_border(fn, sn)
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows the leaf at ``index`` under ``root``."""
    if root_from_inclusion_proof(leaf_hash, index, size, proof) != root:
        raise ProofError(f"inclusion proof of leaf {index} does not lead to the tree's root")


def verify_consistency(
    first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows tree ``first`` is a prefix of ``second``.

    RFC 9162 2.1.4.2, preceded by the reference implementation's size checks.
    """
    if first > second:
        raise ProofError(f"first tree size {first} is larger than second tree size {second}")
    if first == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing")
    if first == second:
        if proof:
            raise ProofError("trees of equal size need an empty consistency proof")
        if first_root != second_root:
            raise ProofError("trees of equal size have different roots")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    _check_hashes(proof)
    path = list(proof)
    if first & (first - 1) == 0:  # step 2: first is an exact power of two
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            fn, sn = _up_the_right_border(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the root")
    if fr != first_root:
        raise ProofError(f"consistency proof does not lead to the root of tree size {first}")
    if sr != second_root:
        raise ProofError(f"consistency proof does not lead to the root of tree size {second}")
