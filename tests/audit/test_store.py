"""The log's single writer and reads, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.audit import store
from services.audit.domain.leaves import parse_leaf
from services.audit.domain.merkle import (
    EMPTY_ROOT,
    leaf_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)
from tests.audit.helpers import log_database, record, writer_for
from tests.kit.helpers import fresh_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        async with log_database(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}") as engine:
            yield engine
    else:
        pg_url = request.getfixturevalue("pg_url")
        async with fresh_database(pg_url, "auditlog") as url, log_database(url) as engine:
            yield engine


async def test_empty_log_is_signed_at_start(engine: AsyncEngine) -> None:
    writer = await writer_for(engine)
    async with engine.connect() as conn:
        latest = await store.latest_checkpoint(conn)
    assert latest is not None
    assert latest.checkpoint.size == 0
    assert latest.checkpoint.root == EMPTY_ROOT
    assert writer.signer.verifier.open_checkpoint(latest.note) == latest.checkpoint


async def test_appends_gap_free_once_and_proves(engine: AsyncEngine) -> None:
    writer = await writer_for(engine)
    first = [record(n) for n in range(37)]
    result = await writer.append(first)
    assert (result.appended, result.duplicates, result.tree_size) == (37, 0, 37)
    # A redelivery and a republish (new partition and offset, same bytes) are not appended.
    republished = [replace(r, partition=5, offset=r.offset + 1000) for r in first[:10]]
    second = [*republished, *first[30:], *[record(n) for n in range(37, 60)], record(60)]
    result = await writer.append([*second, second[-1]])
    assert (result.appended, result.tree_size) == (24, 61)

    async with engine.connect() as conn:
        rows = await store.entries(conn, 0, 1000)
        latest = await store.latest_checkpoint(conn)
        sizes = [c.checkpoint.size for c in await store.checkpoints(conn)]
        assert latest is not None
        assert [r.index for r in rows] == list(range(61))
        assert rows[3].partition == first[3].partition  # the first arrival's position is kept
        assert parse_leaf(rows[3].leaf).value == first[3].value
        root = root_from_leaves(r.leaf for r in rows)
        assert latest.checkpoint.root == root
        assert sizes == [0, 37, 61]
        for index in (0, 1, 36, 37, 60):
            proof = await store.inclusion_proof(conn, index, 61)
            verify_inclusion(leaf_hash(rows[index].leaf), index, 61, proof, root)
        for first_size in (1, 8, 37, 60, 61):
            proof = await store.consistency_proof(conn, first_size, 61)
            old_root = root_from_leaves(r.leaf for r in rows[:first_size])
            verify_consistency(first_size, 61, proof, old_root, root)


async def test_a_restarted_writer_continues_the_same_tree(engine: AsyncEngine) -> None:
    writer = await writer_for(engine)
    await writer.append([record(n) for n in range(13)])
    again = await writer_for(engine)
    assert again.size == 13
    await again.append([record(n) for n in range(13, 20)])
    async with engine.connect() as conn:
        rows = await store.entries(conn, 0, 100)
        latest = await store.latest_checkpoint(conn)
    assert latest is not None
    assert latest.checkpoint.root == root_from_leaves(r.leaf for r in rows)


async def test_a_failed_append_stores_nothing_and_can_be_retried(engine: AsyncEngine) -> None:
    writer = await writer_for(engine)
    await writer.append([record(0)])
    async with engine.begin() as conn:  # a competing row at the next index: the insert fails
        await conn.execute(
            sa.text("INSERT INTO audit_checkpoints VALUES (3, :r, 'x', CURRENT_TIMESTAMP)"),
            {"r": b"\x00" * 32},
        )
    batch = [record(1), record(2)]
    with pytest.raises(sa.exc.IntegrityError):
        await writer.append(batch)
    async with engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM audit_checkpoints WHERE tree_size = 3"))
        assert await store.tree_size(conn) == 1
    result = await writer.append(batch)
    assert result.tree_size == 3
