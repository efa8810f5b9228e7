"""Hundreds of competing holds for a small zone on PostgreSQL, from two engines at once (two
service replicas): the database keeps ``held + allocated <= capacity``, and every request ends
held, waitlisted or refused exactly once, duplicates included."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from contracts.envelope import utcnow
from contracts.v1.common import Sector
from services.kit.db import create_engine, create_session_factory
from services.kit.uow import UnitOfWorkFactory
from services.zones import commands, store
from services.zones.domain import Zone
from services.zones.models import REQUESTS
from tests.kit.helpers import fresh_database
from tests.zones.helpers import GPU, Db, hold_command, origin, zones_db

pytestmark = pytest.mark.integration

CAPACITY = 7
TINY = [Zone("z-tiny", "Tiny", "Lahore", frozenset({Sector.HEALTH}), {GPU: CAPACITY})]


async def _apply(uow_factory: UnitOfWorkFactory, allocation_id: str, wait: bool) -> None:
    """One command, retried on the transient failures a consumer would retry."""
    for _ in range(20):
        try:
            async with uow_factory() as uow:
                await commands.hold(
                    uow,
                    hold_command(allocation_id, (GPU, 1, ["z-tiny"]), allow_waitlist=wait),
                    origin(),
                    utcnow(),
                    default_hold_seconds=600,
                )
                await uow.commit()
            return
        except (IntegrityError, DBAPIError):
            await asyncio.sleep(0)  # a racing duplicate committed first: the retry sees it
    raise AssertionError(f"{allocation_id} never applied")


async def test_competing_holds_never_exceed_capacity(pg_url: str) -> None:
    async with fresh_database(pg_url, "zones_race") as url, zones_db(url, TINY) as db:
        second = create_engine(url, pool_size=5)
        try:
            factories = [db.uow, UnitOfWorkFactory(create_session_factory(second))]
            requests = [(f"r{i:03d}", i % 2 == 0) for i in range(300)]
            deliveries = requests + random.Random(7).sample(requests, 60)  # redelivered copies
            random.Random(8).shuffle(deliveries)
            await asyncio.gather(
                *(
                    _apply(factories[n % 2], allocation_id, wait)
                    for n, (allocation_id, wait) in enumerate(deliveries)
                )
            )
            await _check(db, requests)
        finally:
            await second.dispose()


async def _check(db: Db, requests: list[tuple[str, bool]]) -> None:
    capacity, held, allocated = await db.counter("z-tiny", GPU)
    assert (capacity, held, allocated) == (CAPACITY, CAPACITY, 0)
    outcomes: Counter[str] = Counter()
    per_request: dict[str, str] = {}
    for kind, payload in await db.events():
        allocation_id = payload["allocation_id"]
        assert allocation_id not in per_request, f"{allocation_id} answered twice"
        per_request[allocation_id] = kind
        outcomes[kind] += 1
    assert set(per_request) == {a for a, _ in requests}
    assert outcomes["zone.held"] == CAPACITY
    waiting = sum(1 for a, wait in requests if wait and per_request[a] != "zone.held")
    assert outcomes["zone.waitlisted"] == waiting
    assert outcomes["zone.refused"] == len(requests) - CAPACITY - waiting
    for allocation_id, wait in requests:
        if not wait:
            assert per_request[allocation_id] != "zone.waitlisted"
    states = Counter((await db.states()).values())
    assert states == {"held": CAPACITY, "waitlisted": waiting}


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_a_batch_claims_only_the_allocation_ids_not_answered_before(
    backend: str, pg_url: str, tmp_path: Path
) -> None:
    now = datetime(2027, 1, 2, 9, 0, tzinfo=UTC)
    pairs = [(f"al-{i}", f"app-{i}") for i in range(40)]
    async with contextlib.AsyncExitStack() as stack:
        if backend == "postgresql":
            url = await stack.enter_async_context(fresh_database(pg_url, "zones_claims"))
        else:
            url = f"sqlite+aiosqlite:///{tmp_path / 'zones.db'}"
        db = await stack.enter_async_context(zones_db(url, TINY))
        async with db.uow() as uow:
            assert await store.claim_requests(uow.session, pairs[:10], now) == {
                a for a, _ in pairs[:10]
            }
            assert await store.claim_requests(uow.session, [], now) == set()
            await uow.commit()
        async with db.uow() as uow:
            # Old and new ids mixed, one of them named twice.
            again = pairs[5:30] + pairs[20:21]
            assert await store.claim_requests(uow.session, again, now) == {
                a for a, _ in pairs[10:30]
            }
            await uow.commit()
        async with db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        REQUESTS.c.allocation_id, REQUESTS.c.application_id, REQUESTS.c.outcome
                    )
                )
            ).all()
        assert sorted(rows) == sorted((a, app, "placed") for a, app in pairs[:30])
