"""The log's storage: the single writer that appends leaves, and the reads the API serves.

The writer keeps the tree's frontier in memory (loaded from ``audit_nodes`` at start) and
appends a batch of records in one transaction: new leaves with gap-free indexes, the tree nodes
they complete, and the signed checkpoint of the new size. A record whose leaf bytes are already
logged is dropped (the unique leaf hash is the last word on that, also across restarts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts.envelope import utcnow
from services.audit.domain.checkpoint import Checkpoint, Signer
from services.audit.domain.leaves import leaf_bytes
from services.audit.domain.merkle import (
    Frontier,
    NodeId,
    ProofError,
    consistency_plan,
    inclusion_plan,
    leaf_hash,
)
from services.audit.models import CHECKPOINTS, LEAVES, NODES
from services.kit.dlq import ConsumedRecord
from services.kit.logging import get_logger

log = get_logger(__name__)

#: Most entries one read returns (the API's page limit).
MAX_ENTRIES = 1000
#: Rows per IN list when fetching by key (well under SQLite's variable limit).
_CHUNK = 400


@dataclass(frozen=True, slots=True)
class Entry:
    """One leaf and where it came from."""

    index: int
    leaf: bytes
    topic: str
    partition: int
    offset: int
    logged_at: datetime


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint and its signed note."""

    checkpoint: Checkpoint
    note: str
    signed_at: datetime


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What one batch did to the log."""

    appended: int
    duplicates: int
    tree_size: int


def record_leaf(record: ConsumedRecord) -> bytes:
    """The leaf bytes of a consumed record."""
    return leaf_bytes(record.topic, record.key, record.headers, record.value)


def _subject(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if len(text) <= 200 else None


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def read_nodes(conn: AsyncConnection, ids: Iterable[NodeId]) -> dict[NodeId, bytes]:
    """The stored hashes of the nodes ``ids`` (the leaves' own hashes are level 0), one read.

    One ``level = ? AND idx IN (...)`` term per level, so both databases use the primary key
    (SQLite does not for a row-value ``IN`` list).
    """
    by_level: dict[int, list[int]] = {}
    for node in set(ids):
        by_level.setdefault(node.level, []).append(node.index)
    out: dict[NodeId, bytes] = {}
    if not by_level:
        return out
    # Queries of at most about _CHUNK parameters, each a disjunction of per-level terms.
    queries: list[list[Any]] = [[]]
    budget = _CHUNK
    for level, indexes in sorted(by_level.items()):
        for part in _chunks(sorted(indexes)):
            if len(part) + 1 > budget and queries[-1]:
                queries.append([])
                budget = _CHUNK
            queries[-1].append(sa.and_(NODES.c.level == level, NODES.c.idx.in_(part)))
            budget -= len(part) + 1
    for terms in queries:
        rows = await conn.execute(
            sa.select(NODES.c.level, NODES.c.idx, NODES.c.hash).where(sa.or_(*terms))
        )
        out.update((NodeId(level, idx), bytes(h)) for level, idx, h in rows)
    return out


async def tree_size(conn: AsyncConnection) -> int:
    """How many leaves the log holds (its indexes are gap-free, so max + 1)."""
    value = await conn.scalar(sa.select(sa.func.max(LEAVES.c.idx)))
    return 0 if value is None else int(value) + 1


async def latest_checkpoint(conn: AsyncConnection) -> SignedCheckpoint | None:
    """The checkpoint of the largest tree signed so far."""
    row = (
        await conn.execute(sa.select(CHECKPOINTS).order_by(CHECKPOINTS.c.tree_size.desc()).limit(1))
    ).first()
    return None if row is None else _signed(row)


async def checkpoints(conn: AsyncConnection) -> list[SignedCheckpoint]:
    """Every checkpoint signed so far, smallest tree first."""
    rows = await conn.execute(sa.select(CHECKPOINTS).order_by(CHECKPOINTS.c.tree_size))
    return [_signed(row) for row in rows]


def _signed(row: Any) -> SignedCheckpoint:
    note = str(row.note)
    origin = note.split("\n", 1)[0]
    return SignedCheckpoint(
        checkpoint=Checkpoint(origin=origin, size=int(row.tree_size), root=bytes(row.root)),
        note=note,
        signed_at=row.signed_at,
    )


_ENTRY_COLUMNS = (
    LEAVES.c.idx,
    LEAVES.c.leaf,
    LEAVES.c.topic,
    LEAVES.c.partition,
    LEAVES.c.offset,
    LEAVES.c.logged_at,
)


async def entries(conn: AsyncConnection, start: int, end: int) -> list[Entry]:
    """Leaves ``start <= index < end`` (at most :data:`MAX_ENTRIES`), in index order."""
    end = min(end, start + MAX_ENTRIES)
    rows = await conn.execute(
        sa.select(*_ENTRY_COLUMNS)
        .where(LEAVES.c.idx >= start, LEAVES.c.idx < end)
        .order_by(LEAVES.c.idx)
    )
    return [_entry(row) for row in rows]


def _entry(row: Any) -> Entry:
    return Entry(
        index=int(row.idx),
        leaf=bytes(row.leaf),
        topic=row.topic,
        partition=int(row.partition),
        offset=int(row.offset),
        logged_at=row.logged_at,
    )


async def subject_entries(conn: AsyncConnection, subject: str, *, below: int) -> list[Entry]:
    """Every leaf whose record key is ``subject``, with index below ``below``, in index order."""
    rows = await conn.execute(
        sa.select(*_ENTRY_COLUMNS)
        .where(LEAVES.c.subject == subject, LEAVES.c.idx < below)
        .order_by(LEAVES.c.idx)
    )
    return [_entry(row) for row in rows]


async def inclusion_proof(conn: AsyncConnection, index: int, size: int) -> list[bytes]:
    """The inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
    plan = inclusion_plan(index, size)
    return plan.assemble(await read_nodes(conn, plan.node_ids))


async def inclusion_proofs(
    conn: AsyncConnection, indexes: Sequence[int], size: int
) -> list[list[bytes]]:
    """Inclusion proofs of several leaves in one read of the nodes."""
    plans = [inclusion_plan(index, size) for index in indexes]
    nodes = await read_nodes(conn, (n for plan in plans for n in plan.node_ids))
    return [plan.assemble(nodes) for plan in plans]


async def consistency_proof(conn: AsyncConnection, first: int, second: int) -> list[bytes]:
    """The consistency proof from the tree of ``first`` leaves to the tree of ``second``."""
    if first == second:
        if first == 0:
            raise ProofError("a consistency proof from the empty tree proves nothing")
        return []
    plan = consistency_plan(first, second)
    return plan.assemble(await read_nodes(conn, plan.node_ids))


class LogWriter:
    """The log's one writer. Appends are serialised; each batch is one transaction."""

    def __init__(
        self,
        engine: AsyncEngine,
        signer: Signer,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._engine = engine
        self.signer = signer
        self._clock = clock
        self._lock = asyncio.Lock()
        self._frontier: Frontier | None = None
        self.last_signed_size = -1

    @property
    def size(self) -> int:
        """The tree size as this writer knows it (after :meth:`load`)."""
        return 0 if self._frontier is None else self._frontier.size

    async def load(self) -> None:
        """Read the frontier from the stored nodes; sign the current size if it is unsigned."""
        async with self._lock:
            try:
                await self._load_and_sign()
            except sa.exc.IntegrityError:
                # Another process signed the same size at the same moment: read what it wrote.
                self._frontier = None
                await self._load_and_sign()

    async def _load_and_sign(self) -> None:
        async with self._engine.begin() as conn:
            await self._load(conn)
            latest = await latest_checkpoint(conn)
            frontier = self._frontier
            assert frontier is not None
            if latest is None or latest.checkpoint.size != frontier.size:
                await self._sign(conn, frontier)
            self.last_signed_size = frontier.size

    async def _load(self, conn: AsyncConnection) -> None:
        size = await tree_size(conn)
        ids = Frontier.nodes_for(size)
        nodes = await read_nodes(conn, ids)
        missing = [n for n in ids if n not in nodes]
        if missing:
            raise RuntimeError(f"the log's tree lacks nodes {missing[:5]}: storage is damaged")
        self._frontier = Frontier(size, [nodes[n] for n in ids])

    async def _sign(self, conn: AsyncConnection, frontier: Frontier) -> SignedCheckpoint:
        checkpoint = Checkpoint(self.signer.name, frontier.size, frontier.root())
        note = self.signer.sign(checkpoint)
        signed_at = self._clock()
        await conn.execute(
            sa.insert(CHECKPOINTS).values(
                tree_size=checkpoint.size, root=checkpoint.root, note=note, signed_at=signed_at
            )
        )
        return SignedCheckpoint(checkpoint=checkpoint, note=note, signed_at=signed_at)

    async def append(self, records: Sequence[ConsumedRecord]) -> AppendResult:
        """Append ``records`` in order, once each, and sign the grown tree, in one transaction.

        On any failure nothing is stored and the in-memory frontier is reloaded, so the caller
        can retry the same batch.
        """
        async with self._lock:
            try:
                return await self._append(records)
            except BaseException:
                self._frontier = None  # reloaded from what the database really holds
                raise

    async def _append(self, records: Sequence[ConsumedRecord]) -> AppendResult:
        leaves: dict[bytes, tuple[bytes, ConsumedRecord]] = {}
        for record in records:
            data = record_leaf(record)
            leaves.setdefault(leaf_hash(data), (data, record))
        async with self._engine.begin() as conn:
            if self._frontier is None:
                await self._load(conn)
            frontier = self._frontier
            assert frontier is not None
            known: set[bytes] = set()
            hashes = list(leaves)
            for chunk in _chunks(hashes):
                rows = await conn.execute(
                    sa.select(LEAVES.c.leaf_hash).where(LEAVES.c.leaf_hash.in_(chunk))
                )
                known.update(bytes(h) for (h,) in rows)
            now = self._clock()
            leaf_rows: list[dict[str, Any]] = []
            node_rows: list[dict[str, Any]] = []
            for h in hashes:
                if h in known:
                    continue
                data, record = leaves[h]
                completed = frontier.append(h)
                leaf_rows.append(
                    {
                        "idx": completed[0][0].index,
                        "leaf_hash": h,
                        "leaf": data,
                        "topic": record.topic,
                        "partition": record.partition,
                        "offset": record.offset,
                        "subject": _subject(record.key),
                        "logged_at": now,
                    }
                )
                node_rows.extend(
                    {"level": node.level, "idx": node.index, "hash": value}
                    for node, value in completed
                )
            if leaf_rows:
                await conn.execute(sa.insert(LEAVES), leaf_rows)
                await conn.execute(sa.insert(NODES), node_rows)
                await self._sign(conn, frontier)
        if leaf_rows:
            self.last_signed_size = frontier.size
        return AppendResult(
            appended=len(leaf_rows),
            duplicates=len(records) - len(leaf_rows),
            tree_size=frontier.size,
        )

    async def sign_if_unsigned(self) -> bool:
        """Sign the current tree if no checkpoint covers it yet (the periodic safety net)."""
        async with self._lock:
            if self._frontier is None or self._frontier.size == self.last_signed_size:
                return False
            async with self._engine.begin() as conn:
                latest = await latest_checkpoint(conn)
                if latest is None or latest.checkpoint.size < self._frontier.size:
                    await self._sign(conn, self._frontier)
            self.last_signed_size = self._frontier.size
            return True
