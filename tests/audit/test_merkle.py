"""The Merkle tree against the reference test vectors, the RFC's examples and random trees."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.audit.domain.merkle import (
    EMPTY_ROOT,
    Frontier,
    NodeId,
    ProofError,
    ProofPlan,
    consistency_plan,
    inclusion_plan,
    leaf_hash,
    node_hash,
    range_nodes,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)
from tests.tiers import examples

VECTORS = Path(__file__).parent / "testdata" / "merkle"


def _load(kind: str) -> list[tuple[str, dict[str, Any]]]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    return [(str(f.relative_to(VECTORS)), json.loads(f.read_text())) for f in files]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _proof(values: list[str] | None) -> list[bytes]:
    return [_b64(v) for v in values or []]


INCLUSION = _load("inclusion")
CONSISTENCY = _load("consistency")


def test_vector_corpus_is_complete() -> None:
    """Every vector file is used, and both outcomes occur (a vacuous run cannot pass)."""
    assert len(INCLUSION) + len(CONSISTENCY) == 196
    assert {v["wantErr"] for _, v in INCLUSION} == {True, False}
    assert {v["wantErr"] for _, v in CONSISTENCY} == {True, False}


@pytest.mark.parametrize(("name", "vector"), INCLUSION, ids=[n for n, _ in INCLUSION])
def test_inclusion_vectors(name: str, vector: dict[str, Any]) -> None:
    """Accept exactly the inclusion proofs the reference implementation accepts."""
    del name

    def check() -> None:
        verify_inclusion(
            _b64(vector["leafHash"]),
            vector["leafIdx"],
            vector["treeSize"],
            _proof(vector["proof"]),
            _b64(vector["root"]),
        )

    if vector["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


@pytest.mark.parametrize(("name", "vector"), CONSISTENCY, ids=[n for n, _ in CONSISTENCY])
def test_consistency_vectors(name: str, vector: dict[str, Any]) -> None:
    """Accept exactly the consistency proofs the reference implementation accepts."""
    del name

    def check() -> None:
        verify_consistency(
            vector["size1"],
            vector["size2"],
            _proof(vector["proof"]),
            _b64(vector["root1"]),
            _b64(vector["root2"]),
        )

    if vector["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


# --- a naive reference written straight from the RFC's recursive definitions ------------------


def _mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) <= 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


def _subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [_mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*_subproof(m, leaves[:k], whole), _mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), _mth(leaves[:k])]


class _Store:
    """Every perfect-subtree node of a tree, as the audit store keeps them."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.frontier = Frontier()
        self.nodes: dict[NodeId, bytes] = {}
        for leaf in leaves:
            self.nodes.update(self.frontier.append(leaf_hash(leaf)))

    def prove(self, plan: ProofPlan) -> list[bytes]:
        return plan.assemble({node: self.nodes[node] for node in plan.node_ids})


def _leaves(n: int) -> list[bytes]:
    return [f"leaf {i}".encode() for i in range(n)]


def test_empty_tree_root() -> None:
    assert root_from_leaves([]) == EMPTY_ROOT == Frontier().root()


@pytest.mark.parametrize("n", range(1, 40))
def test_frontier_and_proofs_match_the_rfc_definitions(n: int) -> None:
    leaves = _leaves(n)
    store = _Store(leaves)
    assert store.frontier.root() == _mth(leaves) == root_from_leaves(leaves)
    for m in range(n):
        assert store.prove(inclusion_plan(m, n)) == _path(m, leaves)
    for m in range(1, n + 1):
        assert store.prove(consistency_plan(m, n)) == _subproof(m, leaves, True)


def test_range_nodes_cover_the_range_exactly() -> None:
    for begin in range(0, 40):
        for end in range(begin, 70):
            nodes = range_nodes(begin, end)
            covered = [i for node in nodes for i in range(node.begin, node.end)]
            assert covered == list(range(begin, end))


def test_impossible_proof_requests_are_refused() -> None:
    with pytest.raises(ProofError, match="not in a tree of size 3"):
        inclusion_plan(3, 3)
    with pytest.raises(ProofError, match="larger than second"):
        consistency_plan(4, 3)
    with pytest.raises(ProofError, match="empty tree"):
        consistency_plan(0, 3)


# --- properties over random trees ---------------------------------------------------------------


@settings(max_examples=examples(150), deadline=None)
@given(
    st.integers(min_value=1, max_value=300).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(min_value=0, max_value=n - 1))
    )
)
def test_inclusion_proofs_verify(case: tuple[int, int]) -> None:
    n, m = case
    leaves = _leaves(n)
    store = _Store(leaves)
    root = store.frontier.root()
    proof = store.prove(inclusion_plan(m, n))
    verify_inclusion(leaf_hash(leaves[m]), m, n, proof, root)


@settings(max_examples=examples(150), deadline=None)
@given(
    st.integers(min_value=2, max_value=300).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(min_value=0, max_value=n - 1), st.data())
    )
)
def test_tampered_inclusion_fails(case: tuple[int, int, st.DataObject]) -> None:
    """A changed leaf, index, proof hash, or a dropped hash never verifies."""
    n, m, data = case
    leaves = _leaves(n)
    store = _Store(leaves)
    root = store.frontier.root()
    proof = store.prove(inclusion_plan(m, n))
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(b"forged"), m, n, proof, root)
    other = data.draw(st.integers(min_value=0, max_value=n - 1).filter(lambda i: i != m))
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(leaves[m]), other, n, proof, root)
    if proof:
        at = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bit = data.draw(st.integers(min_value=0, max_value=255))
        forged = list(proof)
        flipped = bytearray(forged[at])
        flipped[bit // 8] ^= 1 << (bit % 8)
        forged[at] = bytes(flipped)
        with pytest.raises(ProofError):
            verify_inclusion(leaf_hash(leaves[m]), m, n, forged, root)
        with pytest.raises(ProofError):
            verify_inclusion(leaf_hash(leaves[m]), m, n, proof[:-1], root)


@settings(max_examples=examples(150), deadline=None)
@given(
    st.integers(min_value=1, max_value=300).flatmap(
        lambda n: st.tuples(st.integers(min_value=1, max_value=n), st.just(n))
    )
)
def test_consistency_proofs_verify(case: tuple[int, int]) -> None:
    m, n = case
    leaves = _leaves(n)
    store = _Store(leaves)
    first_root = root_from_leaves(leaves[:m])
    proof = store.prove(consistency_plan(m, n))
    verify_consistency(m, n, proof, first_root, store.frontier.root())


@settings(max_examples=examples(150), deadline=None)
@given(
    st.integers(min_value=2, max_value=300).flatmap(
        lambda n: st.tuples(st.integers(min_value=1, max_value=n - 1), st.just(n), st.data())
    )
)
def test_rewritten_history_fails_consistency(case: tuple[int, int, st.DataObject]) -> None:
    """A tree whose first ``m`` leaves changed is not consistent with the old tree head."""
    m, n, data = case
    leaves = _leaves(n)
    first_root = root_from_leaves(leaves[:m])
    changed = data.draw(st.integers(min_value=0, max_value=m - 1))
    rewritten = list(leaves)
    rewritten[changed] = b"rewritten"
    store = _Store(rewritten)
    proof = store.prove(consistency_plan(m, n))
    with pytest.raises(ProofError):
        verify_consistency(m, n, proof, first_root, store.frontier.root())
