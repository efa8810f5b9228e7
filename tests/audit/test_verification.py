"""Tamper detection of the log verifier, on an in-memory log (the CLI test runs it over HTTP)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.audit.domain.checkpoint import Checkpoint, Signer
from services.audit.domain.merkle import (
    Frontier,
    NodeId,
    consistency_plan,
    inclusion_plan,
    leaf_hash,
)
from services.audit.domain.verification import FindingKind, verify_log
from tests.tiers import examples

ORIGIN = "incentives.example/audit"
SIGNER = Signer.from_seed(ORIGIN, bytes(range(32)))


class MemoryLog:
    """A log whose tree (and so its proofs and checkpoint) was built from ``signed`` leaves,
    serving ``stored`` leaves: what a tampered leaf table looks like to a verifier."""

    def __init__(self, signed: list[bytes], stored: list[tuple[int, bytes]] | None = None) -> None:
        frontier = Frontier()
        self.nodes: dict[NodeId, bytes] = {}
        for leaf in signed:
            self.nodes.update(frontier.append(leaf_hash(leaf)))
        self.note = SIGNER.sign(Checkpoint(ORIGIN, frontier.size, frontier.root()))
        self.stored = stored if stored is not None else list(enumerate(signed))

    def checkpoint(self) -> str:
        return self.note

    def verifier_key(self) -> str:
        return SIGNER.verifier.key_text()

    def entries(self, start: int, end: int) -> Sequence[tuple[int, bytes]]:
        return [(i, leaf) for i, leaf in self.stored if start <= i < end][:1000]

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        plan = inclusion_plan(index, tree_size)
        return plan.assemble(self.nodes)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        if first == second:
            return []
        return consistency_plan(first, second).assemble(self.nodes)


LEAVES = [f"record {i}".encode() for i in range(2500)]


def _renumber(leaves: list[bytes]) -> list[tuple[int, bytes]]:
    return list(enumerate(leaves))


def test_an_intact_log_verifies() -> None:
    log = MemoryLog(LEAVES)
    seen: list[int] = []
    report = verify_log(log, progress=lambda done, total: seen.append(done))
    assert report.ok, report.findings
    assert report.leaves == len(LEAVES)
    assert seen[-1] == len(LEAVES)


@pytest.mark.parametrize("at", [0, 1, 777, 1024, 2499])
def test_a_modified_leaf_is_located(at: int) -> None:
    stored = list(LEAVES)
    stored[at] = b"changed"
    (finding,) = verify_log(MemoryLog(LEAVES, _renumber(stored))).findings
    assert (finding.kind, finding.index) == (FindingKind.MODIFIED, at)


@pytest.mark.parametrize("at", [0, 900, 2498])
def test_a_deleted_leaf_is_located(at: int) -> None:
    stored = LEAVES[:at] + LEAVES[at + 1 :]
    (finding,) = verify_log(MemoryLog(LEAVES, _renumber(stored))).findings
    assert (finding.kind, finding.index) == (FindingKind.DELETED, at)
    # Deleted without renumbering: a gap in the indexes.
    gap = [(i, leaf) for i, leaf in enumerate(LEAVES) if i != at]
    findings = verify_log(MemoryLog(LEAVES, gap)).findings
    assert (findings[0].kind, findings[0].index) == (FindingKind.MISSING, at)


@pytest.mark.parametrize("at", [0, 1500, 2499])
def test_an_inserted_leaf_is_located(at: int) -> None:
    stored = [*LEAVES[:at], b"never logged", *LEAVES[at:]]
    (finding,) = verify_log(MemoryLog(LEAVES, _renumber(stored))).findings
    assert (finding.kind, finding.index) == (FindingKind.INSERTED, at)


@pytest.mark.parametrize(("i", "j"), [(10, 11), (3, 2000), (1023, 1024), (0, 2499)])
def test_swapped_leaves_are_located(i: int, j: int) -> None:
    stored = list(LEAVES)
    stored[i], stored[j] = stored[j], stored[i]
    (finding,) = verify_log(MemoryLog(LEAVES, _renumber(stored))).findings
    assert (finding.kind, finding.index) == (FindingKind.REORDERED, i)
    assert f"leaves {i} and {j}" in finding.detail


def test_a_rewrite_re_signed_by_the_log_is_caught_against_a_saved_checkpoint() -> None:
    saved = MemoryLog(LEAVES[:1000]).note
    rewritten = list(LEAVES)
    rewritten[400] = b"rewritten history"
    log = MemoryLog(rewritten)  # the whole tree rebuilt and signed again with the log's key
    assert verify_log(log).ok  # consistent with itself...
    report = verify_log(log, against=saved)  # ...but not with what the auditor kept
    assert {f.kind for f in report.findings} == {FindingKind.REWRITTEN}
    assert len(report.findings) == 2  # the prefix root differs and no consistency proof holds
    assert verify_log(MemoryLog(LEAVES), against=saved).ok


def test_a_checkpoint_signed_by_another_key_is_refused() -> None:
    log = MemoryLog(LEAVES[:10])
    log.note = Signer.generate(ORIGIN).sign(Checkpoint(ORIGIN, 10, bytes(32)))
    (finding,) = verify_log(log).findings
    assert finding.kind is FindingKind.SIGNATURE


@settings(max_examples=examples(120), deadline=None)
@given(st.data())
def test_any_single_tampering_is_located(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=2, max_value=300), label="size")
    leaves = LEAVES[:n]
    kind = data.draw(st.sampled_from(["modify", "delete", "insert", "swap"]), label="kind")
    at = data.draw(st.integers(min_value=0, max_value=n - 1), label="at")
    stored = list(leaves)
    if kind == "modify":
        stored[at] = b"changed"
        expected = FindingKind.MODIFIED
    elif kind == "delete":
        del stored[at]
        expected = FindingKind.DELETED
    elif kind == "insert":
        stored.insert(at, b"never logged")
        expected = FindingKind.INSERTED
    else:
        other = data.draw(
            st.integers(min_value=0, max_value=n - 1).filter(lambda j: j != at), label="other"
        )
        at, other = sorted((at, other))
        stored[at], stored[other] = stored[other], stored[at]
        expected = FindingKind.REORDERED
    (finding,) = verify_log(MemoryLog(leaves, _renumber(stored))).findings
    assert (finding.kind, finding.index) == (expected, at)
