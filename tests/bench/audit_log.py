"""The audit log over many synthetic records, each figure a ratio to hashlib SHA-256.

Baseline: one SHA-256 (hashlib) over each leaf's bytes, in the same run. Figures:

- ``audit verify``: what ``incentives audit verify`` does per leaf once the leaves are read:
  the leaf hash and the tree (frontier) update; also at 10k and 100k leaves, to show it is
  linear;
- ``audit append (writer, in memory)``: the single writer's per-record work without the
  database: leaf hash, duplicate check, tree update, the leaf and node rows it would insert;
- ``audit append (writer, PostgreSQL)``: :class:`LogWriter` itself, batches of 500, on a fresh
  database (fewer records: it is bounded by the database);
- ``audit rebuild``: the tree rebuilt from the stored leaves: read every leaf from a SQLite log,
  recompute every node (2n) and the root, and compare it with the signed checkpoint;
- ``inclusion proof``: p50/p99 latency of :func:`services.audit.store.inclusion_proof` on that
  SQLite log at full size (random leaves).
"""

from __future__ import annotations

import base64
import hashlib
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from services.audit.domain.checkpoint import Checkpoint, Signer
from services.audit.domain.leaves import leaf_bytes
from services.audit.domain.merkle import Frontier, leaf_hash
from services.kit.dlq import ConsumedRecord
from tests.bench.common import Point, Result

SHA256 = "sha256 (hashlib)"
VERIFY = "audit verify"
#: The chart verify time against log size is drawn on (:mod:`tests.bench.charts`).
VERIFY_CHART = "audit-verify"
APPEND = "audit append (writer, in memory)"
APPEND_PG = "audit append (writer, PostgreSQL)"
REBUILD = "audit rebuild"
PROOF = "inclusion proof"
AUDIT = "audit log"

VERIFY_TARGET = 200_000.0
REBUILD_TARGET = 50_000.0
#: Records through the real writer on PostgreSQL (bounded by the database, not the hashing).
PG_RECORDS = 20_000
PROOFS = 1_000
ORIGIN = "incentives.example/audit"

Report = Callable[[int], None]


def synthetic_leaves(n: int) -> list[bytes]:
    """``n`` distinct leaves of about 200 bytes, byte-identical to :func:`leaf_bytes` output.

    Built by template (RFC 8785 output for these plain ASCII members is exactly this), which is
    checked against the real encoder on a sample.
    """
    payload = b'{"type":"application.submitted","payload":{"amount":125000,"n":%d}}'
    out = []
    head = b'{"headers":[["type","YXBwbGljYXRpb24uc3VibWl0dGVk"]],"key":"'
    middle = b'","topic":"applications.events","value":"'
    for i in range(n):
        key = base64.b64encode(b"APP-%08d" % (i % 10_000))
        value = base64.b64encode(payload % i)
        out.append(head + key + middle + value + b'"}')
    for i in (0, n // 2, n - 1):
        record = leaf_bytes(
            "applications.events",
            b"APP-%08d" % (i % 10_000),
            [("type", b"application.submitted")],
            payload % i,
        )
        assert out[i] == record, "the synthetic leaves must be real leaves"
    return out


def _timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def _baseline(leaves: list[bytes]) -> float:
    sha256 = hashlib.sha256

    def run() -> None:
        for leaf in leaves:
            sha256(leaf).digest()

    return _timed(run)


def _verify(leaves: list[bytes]) -> tuple[float, bytes]:
    frontier = Frontier()
    root = b""

    def run() -> None:
        nonlocal root
        frontier.extend_leaves(leaves)
        root = frontier.root()

    return _timed(run), root


def _append_in_memory(leaves: list[bytes]) -> float:
    frontier = Frontier()
    seen: set[bytes] = set()

    def run() -> None:
        rows: list[dict[str, object]] = []
        nodes: list[dict[str, object]] = []
        for start in range(0, len(leaves), 500):
            rows.clear()
            nodes.clear()
            for leaf in leaves[start : start + 500]:
                h = leaf_hash(leaf)
                if h in seen:
                    continue
                seen.add(h)
                completed = frontier.append(h)
                rows.append({"idx": completed[0][0].index, "leaf_hash": h, "leaf": leaf})
                nodes.extend(
                    {"level": node.level, "idx": node.index, "hash": value}
                    for node, value in completed
                )

    return _timed(run)


def _store_sqlite(path: Path, leaves: list[bytes], signer: Signer) -> bytes:
    """A SQLite log with every leaf, node and the checkpoint (set-up, not timed)."""
    from services.audit.models import metadata

    conn = sqlite3.connect(path)
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(f"sqlite:///{path}")
        metadata().create_all(engine)
        engine.dispose()
        frontier = Frontier()
        leaf_rows = []
        node_rows = []
        for i, leaf in enumerate(leaves):
            h = leaf_hash(leaf)
            for node, value in frontier.append(h):
                node_rows.append((node.level, node.index, value))
            leaf_rows.append((i, h, leaf, "applications.events", 0, i, None, "2026-12-01 00:00:00"))
        conn.executemany("INSERT INTO audit_leaves VALUES (?, ?, ?, ?, ?, ?, ?, ?)", leaf_rows)
        conn.executemany("INSERT INTO audit_nodes VALUES (?, ?, ?)", node_rows)
        root = frontier.root()
        note = signer.sign(Checkpoint(ORIGIN, len(leaves), root))
        conn.execute(
            "INSERT INTO audit_checkpoints VALUES (?, ?, ?, '2026-12-01 00:00:00')",
            (len(leaves), root, note),
        )
        conn.commit()
        return root
    finally:
        conn.close()


def _rebuild(path: Path, signer: Signer) -> tuple[float, int]:
    """Read every leaf, recompute every node and the root, check the signed checkpoint."""
    count = 0

    def run() -> None:
        nonlocal count
        conn = sqlite3.connect(path)
        try:
            note = conn.execute(
                "SELECT note FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1"
            ).fetchone()[0]
            checkpoint = signer.verifier.open_checkpoint(note)
            frontier = Frontier()
            cursor = conn.execute("SELECT leaf FROM audit_leaves ORDER BY idx")
            while rows := cursor.fetchmany(10_000):
                # Every node of the tree is hashed on the way (each complete subtree once).
                frontier.extend_leaves([leaf for (leaf,) in rows])
            if frontier.root() != checkpoint.root or frontier.size != checkpoint.size:
                raise AssertionError("the rebuilt tree does not match the signed checkpoint")
            count = frontier.size
        finally:
            conn.close()

    return _timed(run), count


async def _proof_latency(path: Path, size: int, root: bytes) -> tuple[float, float]:
    import sqlalchemy as sa

    from services.audit import store
    from services.audit.domain.merkle import verify_inclusion
    from services.kit.db import create_engine

    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    rng = random.Random(7)
    samples = []
    try:
        async with engine.connect() as conn:
            for _ in range(PROOFS):
                index = rng.randrange(size)
                start = time.perf_counter()
                proof = await store.inclusion_proof(conn, index, size)
                samples.append(time.perf_counter() - start)
                leaf = await conn.scalar(
                    sa.text("SELECT leaf_hash FROM audit_leaves WHERE idx = :i"), {"i": index}
                )
                verify_inclusion(bytes(leaf), index, size, proof, root)
    finally:
        await engine.dispose()
    samples.sort()
    return samples[len(samples) // 2] * 1000, samples[int(len(samples) * 0.99)] * 1000


async def _append_pg(url: str, n: int) -> float:
    from services.audit.main import MIGRATIONS
    from services.audit.store import LogWriter
    from services.kit.db import create_engine
    from services.kit.migrations import upgrade_to_head

    engine = create_engine(url)
    try:
        await upgrade_to_head(engine, MIGRATIONS)
        writer = LogWriter(engine, Signer.from_seed(ORIGIN, bytes(32)))
        await writer.load()
        records = [
            ConsumedRecord(
                topic="applications.events",
                partition=i % 6,
                offset=i,
                key=b"APP-%06d" % (i % 1000),
                value=b'{"n": %d, "pad": "%s"}' % (i, b"x" * 120),
            )
            for i in range(n)
        ]
        start = time.perf_counter()
        for first in range(0, n, 500):
            await writer.append(records[first : first + 500])
        seconds = time.perf_counter() - start
        if writer.size != n:
            raise AssertionError(f"the writer logged {writer.size} of {n} records")
        return seconds
    finally:
        await engine.dispose()


async def bench_audit(
    workdir: Path, n: int, *, pg_url: str | None, on_progress: Report | None = None
) -> list[Result]:
    """Every audit figure over ``n`` synthetic leaves (PostgreSQL append when ``pg_url``)."""
    report = on_progress or (lambda _done: None)
    leaves = synthetic_leaves(n)
    results: list[Result] = []
    results.append(Result(SHA256, n, _baseline(leaves), note="one SHA-256 per leaf's bytes"))
    report(n // 5)
    for size in sorted({s for s in (10_000, 100_000) if s < n} | {n}):
        seconds, _root = _verify(leaves[:size])
        results.append(
            Result(
                f"{VERIFY} ({size:,})",
                size,
                seconds,
                baseline=SHA256,
                rate_target=VERIFY_TARGET,
                note="" if size != n else "leaf hash + tree update per leaf; root at the end",
                point=Point(VERIFY_CHART, "verify (in memory)", size),
            )
        )
    report(2 * n // 5)
    results.append(Result(APPEND, n, _append_in_memory(leaves), baseline=SHA256))
    report(3 * n // 5)
    signer = Signer.from_seed(ORIGIN, bytes(32))
    path = workdir / "audit-bench.db"
    path.unlink(missing_ok=True)
    root = _store_sqlite(path, leaves, signer)
    del leaves
    seconds, count = _rebuild(path, signer)
    results.append(
        Result(
            REBUILD,
            count,
            seconds,
            baseline=SHA256,
            rate_target=REBUILD_TARGET,
            note="read every leaf from SQLite, recompute all 2n nodes and the root, check the "
            "signed checkpoint",
        )
    )
    report(4 * n // 5)
    p50, p99 = await _proof_latency(path, count, root)
    results.append(
        Result(
            f"{PROOF} ({count:,} leaves)",
            PROOFS,
            PROOFS * (p50 / 1000),
            baseline="(latency only)",
            latency_ms=(p50, p99),
            note=f"{PROOFS} random leaves, store.inclusion_proof on SQLite; each proof verified",
        )
    )
    path.unlink(missing_ok=True)
    if pg_url is not None:
        pg_n = min(n, PG_RECORDS)
        results.append(
            Result(
                APPEND_PG,
                pg_n,
                await _append_pg(pg_url, pg_n),
                baseline=SHA256,
                note="LogWriter.append in batches of 500: leaves, nodes and a checkpoint per batch",
            )
        )
    report(n)
    return results
