"""Checking a log from the outside: recompute the tree, check the checkpoint, locate tampering.

The verifier trusts only the log's public key (and, with ``against``, a checkpoint it saved
earlier). It reads the leaves and asks the log for proofs through a :class:`LogSource`, so the
same code checks a running service over HTTP, a database, or anything that serves the API.

How a damaged log is located:

1. every leaf is re-hashed and the tree recomputed; a gap in the indexes is a deleted leaf;
2. if the root differs from the signed checkpoint's, a binary search over prefixes, each checked
   with a consistency proof against the signed root, finds the first leaf that is not the
   logged one;
3. that leaf is classified with inclusion proofs: two leaves swapped (the later one found by
   descending the sibling subtrees of the first one's proof), a leaf deleted (its successor
   stands where it was), a leaf inserted (the logged leaf stands one further), or modified.

With ``against`` the prefix of the saved checkpoint's size must still hash to its root, and the
log must prove consistency from it: a rewrite re-signed with the log's own key fails here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from services.audit.domain.checkpoint import Checkpoint, CheckpointError, Verifier
from services.audit.domain.merkle import (
    Frontier,
    ProofError,
    fold,
    inclusion_plan,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

#: Leaves per page read from the source (the API's limit).
PAGE = 1000


class LogSource(Protocol):
    """What a verifier reads from a log."""

    def checkpoint(self) -> str:
        """The latest signed checkpoint note."""
        ...

    def verifier_key(self) -> str:
        """The log's verifier key."""
        ...

    def entries(self, start: int, end: int) -> Sequence[tuple[int, bytes]]:
        """``(index, leaf bytes)`` of the leaves ``start <= index < end`` (a page at most)."""
        ...

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """The log's inclusion proof of leaf ``index`` in tree ``tree_size``."""
        ...

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """The log's consistency proof from tree ``first`` to tree ``second``."""
        ...


class FindingKind(StrEnum):
    """What is wrong with a log."""

    SIGNATURE = "signature"
    MISSING = "missing"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    MODIFIED = "modified"
    ROOT = "root"
    REWRITTEN = "rewritten"


@dataclass(frozen=True)
class Finding:
    """One problem, with the first leaf index it concerns (when it can be located)."""

    kind: FindingKind
    detail: str
    index: int | None = None


@dataclass
class VerifyReport:
    """The outcome of :func:`verify_log`."""

    checkpoint: Checkpoint | None = None
    leaves: int = 0
    findings: list[Finding] = field(default_factory=list)
    against: Checkpoint | None = None

    @property
    def ok(self) -> bool:
        """True when nothing was found."""
        return not self.findings


Progress = Callable[[int, int], None]


def _pages(
    source: LogSource, size: int, progress: Progress | None
) -> Iterator[Sequence[tuple[int, bytes]]]:
    start = 0
    while start < size:
        page = source.entries(start, min(size, start + PAGE))
        if not page:
            return
        yield page
        start = page[-1][0] + 1
        if progress is not None:
            progress(min(start, size), size)


class _Locator:
    """Finds and classifies the first leaf that is not the one the log signed."""

    def __init__(self, source: LogSource, checkpoint: Checkpoint, hashes: list[bytes]) -> None:
        self.source = source
        self.size = checkpoint.size
        self.root = checkpoint.root
        self.hashes = hashes

    def authentic_at(self, h: bytes, index: int) -> bool:
        if not 0 <= index < self.size:
            return False
        try:
            proof = self.source.inclusion_proof(index, self.size)
            verify_inclusion(h, index, self.size, proof, self.root)
        except ProofError:
            return False
        return True

    def prefix_good(self, m: int) -> bool:
        if m == 0:
            return True
        if m > len(self.hashes):
            return False
        prefix_root = root_from_leaf_hashes(self.hashes[:m])
        if m == self.size:
            return prefix_root == self.root
        try:
            proof = self.source.consistency_proof(m, self.size)
            verify_consistency(m, self.size, proof, prefix_root, self.root)
        except ProofError:
            return False
        return True

    def first_bad(self) -> int:
        lo, hi = 0, min(len(self.hashes), self.size)  # prefix lo is good; find the largest
        if self.prefix_good(hi):
            return hi
        hi -= 1  # invariant: prefix lo good, prefix hi + 1 bad
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.prefix_good(mid):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def next_bad(self, after: int) -> int | None:
        """The next leaf after ``after`` that is not the logged one (sibling-subtree descent).

        The siblings on an authentic leaf's proof path are authentic subtree hashes; the first
        one to the right that the served leaves do not reproduce holds the next bad leaf.
        """
        index = after
        while True:
            plan = inclusion_plan(index, self.size)
            proof = self.source.inclusion_proof(index, self.size)
            # Right-hand siblings, lowest level first: that is also their order in the log.
            right = [
                (group[0].begin, group[-1].end, authentic)
                for group, authentic in zip(plan.groups, proof, strict=True)
                if group[0].begin > index
            ]
            for begin, end, authentic in right:
                if end > len(self.hashes):
                    return begin if begin < len(self.hashes) else None
                if root_from_leaf_hashes(self.hashes[begin:end]) != authentic:
                    if not self.authentic_at(self.hashes[begin], begin):
                        return begin
                    index = begin  # descend into this subtree from its first leaf
                    break
            else:
                return None

    def classify(self, i: int) -> Finding:
        h = self.hashes
        n = len(h)
        if i >= n:
            return Finding(
                FindingKind.DELETED, f"the log has {n} leaves, the checkpoint {self.size}", i
            )
        if i + 1 < n and self.authentic_at(h[i], i + 1) and self.authentic_at(h[i + 1], i):
            return Finding(FindingKind.REORDERED, f"leaves {i} and {i + 1} are swapped", i)
        if self.authentic_at(h[i], i + 1):
            return Finding(
                FindingKind.DELETED, f"leaf {i} was deleted; leaf {i + 1} stands in its place", i
            )
        if i + 1 < n and self.authentic_at(h[i + 1], i):
            return Finding(
                FindingKind.INSERTED, f"a leaf that was never logged was inserted at {i}", i
            )
        j = self.next_bad(i)
        if j is not None and j < n and self.authentic_at(h[i], j) and self.authentic_at(h[j], i):
            return Finding(FindingKind.REORDERED, f"leaves {i} and {j} are swapped", i)
        return Finding(FindingKind.MODIFIED, f"leaf {i} is not the leaf the log signed", i)


def verify_log(
    source: LogSource,
    *,
    verifier: Verifier | None = None,
    against: str | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Recompute the log's tree from its leaves and check it; see the module docstring.

    ``verifier`` pins the log's key (default: the key the source serves). ``against`` is a
    checkpoint note saved earlier.
    """
    report = VerifyReport()
    try:
        verifier = verifier or Verifier.from_key(source.verifier_key())
        checkpoint = verifier.open_checkpoint(source.checkpoint())
    except CheckpointError as exc:
        report.findings.append(Finding(FindingKind.SIGNATURE, f"latest checkpoint: {exc}"))
        return report
    report.checkpoint = checkpoint
    saved: Checkpoint | None = None
    if against is not None:
        try:
            saved = verifier.open_checkpoint(against)
        except CheckpointError as exc:
            report.findings.append(Finding(FindingKind.SIGNATURE, f"saved checkpoint: {exc}"))
        report.against = saved

    hashes: list[bytes] = []
    frontier = Frontier()
    saved_prefix_root = None
    expected = 0
    for page in _pages(source, checkpoint.size, progress):
        for index, _leaf in page:
            if index != expected and not any(
                f.kind is FindingKind.MISSING for f in report.findings
            ):
                report.findings.append(
                    Finding(FindingKind.MISSING, f"leaf {expected} is missing (deleted)", expected)
                )
            expected = index + 1
        leaves = [leaf for _index, leaf in page]
        if saved is not None and frontier.size < saved.size <= frontier.size + len(leaves):
            cut = saved.size - frontier.size
            hashes.extend(frontier.extend_leaves(leaves[:cut]))
            saved_prefix_root = frontier.root()
            leaves = leaves[cut:]
        hashes.extend(frontier.extend_leaves(leaves))
    report.leaves = len(hashes)
    if saved is not None and saved.size == 0:
        saved_prefix_root = fold([])

    if len(hashes) != checkpoint.size or frontier.root() != checkpoint.root:
        # The leaf after the checkpoint's last (if the log grew, or a leaf was inserted) helps
        # tell an insertion from a modification at the end.
        beyond = [
            leaf_hash(leaf) for _i, leaf in source.entries(checkpoint.size, checkpoint.size + 1)
        ]
        locator = _Locator(source, checkpoint, hashes[: checkpoint.size] + beyond[:1])
        bad = locator.first_bad()
        if bad < checkpoint.size:
            if not any(f.kind is FindingKind.MISSING for f in report.findings):
                report.findings.append(locator.classify(bad))
        else:
            report.findings.append(
                Finding(FindingKind.ROOT, "the leaves do not hash to the checkpoint's root")
            )

    if saved is not None:
        if saved.size > checkpoint.size:
            report.findings.append(
                Finding(
                    FindingKind.REWRITTEN,
                    f"the log shrank: saved checkpoint has {saved.size} leaves, "
                    f"the latest {checkpoint.size}",
                )
            )
        else:
            if saved_prefix_root != saved.root:
                report.findings.append(
                    Finding(
                        FindingKind.REWRITTEN,
                        f"the first {saved.size} leaves no longer hash to the saved "
                        "checkpoint's root: the log was rewritten",
                    )
                )
            if saved.size > 0:
                try:
                    proof = source.consistency_proof(saved.size, checkpoint.size)
                    verify_consistency(
                        saved.size, checkpoint.size, proof, saved.root, checkpoint.root
                    )
                except ProofError as exc:
                    report.findings.append(
                        Finding(
                            FindingKind.REWRITTEN,
                            f"no valid consistency proof from the saved checkpoint: {exc}",
                        )
                    )
    return report
