"""Unit of work and outbox relay on the embedded SQLite default, with a fake publisher."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from contracts import catalog
from contracts.envelope import utcnow
from services.kit.db import create_session_factory
from services.kit.messaging import Record
from services.kit.outbox import OutboxRelay
from services.kit.tables import OutboxMessage
from services.kit.uow import UnitOfWorkError, UnitOfWorkFactory
from tests.kit.helpers import envelope, scalar


class FakePublisher:
    """Collects records; can be told to fail after publishing (a crash before the mark)."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.crash_after_publish = False

    async def __call__(self, records: Sequence[Record]) -> None:
        self.records.extend(records)
        if self.crash_after_publish:
            raise RuntimeError("simulated crash between publish and mark")


async def test_commit_writes_outbox_and_wakes_relay(sqlite_engine: AsyncEngine) -> None:
    woken: list[bool] = []
    uow_factory = UnitOfWorkFactory(
        create_session_factory(sqlite_engine), on_outbox_committed=lambda: woken.append(True)
    )
    env = envelope()
    async with uow_factory() as uow:
        uow.add_outbox(env, "applications.events")
        assert uow.outbox_count == 1
        await uow.commit()
    assert woken == [True]
    async with create_session_factory(sqlite_engine)() as session:
        (row,) = (await session.exec(select(OutboxMessage))).all()
    assert row.id is not None
    assert row.published_at is None
    assert row.key == env.subject
    assert catalog.decode(row.value) == env
    assert dict(row.headers)["event_id"] == str(env.event_id)
    assert row.created_at.tzinfo is not None


async def test_leaving_without_commit_rolls_back(sqlite_engine: AsyncEngine) -> None:
    uow_factory = UnitOfWorkFactory(create_session_factory(sqlite_engine))

    async def failing_handler() -> None:
        async with uow_factory() as uow:
            uow.add_outbox(envelope(), "applications.events")
            raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError):
        await failing_handler()
    async with uow_factory() as uow:
        uow.add_outbox(envelope(), "applications.events")  # never committed
    assert await scalar(sqlite_engine, "SELECT count(*) FROM outbox") == 0


async def test_commit_is_allowed_once(sqlite_engine: AsyncEngine) -> None:
    uow_factory = UnitOfWorkFactory(create_session_factory(sqlite_engine))
    async with uow_factory() as uow:
        await uow.commit()
        with pytest.raises(UnitOfWorkError):
            await uow.commit()


async def test_mark_processed_is_insert_once(sqlite_engine: AsyncEngine) -> None:
    uow_factory = UnitOfWorkFactory(create_session_factory(sqlite_engine))
    event_id = envelope().event_id
    async with uow_factory() as uow:
        assert await uow.mark_processed("c1", event_id) is True
        assert await uow.mark_processed("c1", event_id) is False
        assert await uow.mark_processed("c2", event_id) is True  # another consumer's scope
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.is_processed("c1", event_id)
        assert await uow.mark_processed("c1", event_id) is False


async def _stage(uow_factory: UnitOfWorkFactory, count: int, subject: str) -> list[str]:
    ids = []
    for _ in range(count):
        env = envelope(subject)
        async with uow_factory() as uow:
            uow.add_outbox(env, "applications.events")
            await uow.commit()
        ids.append(str(env.event_id))
    return ids


async def test_relay_publishes_in_commit_order_and_marks(sqlite_engine: AsyncEngine) -> None:
    sessions = create_session_factory(sqlite_engine)
    uow_factory = UnitOfWorkFactory(sessions)
    staged = await _stage(uow_factory, 7, "app_order")
    publisher = FakePublisher()
    relay = OutboxRelay(sessions, publisher, batch_size=3)
    assert await relay.pending() == 7
    assert await relay.run_once() == 7
    assert [dict(r.headers)["event_id"].decode() for r in publisher.records] == staged
    assert all(r.key == b"app_order" for r in publisher.records)
    assert await relay.pending() == 0
    assert await relay.run_once() == 0  # nothing twice


async def test_crash_between_publish_and_mark_republishes(sqlite_engine: AsyncEngine) -> None:
    sessions = create_session_factory(sqlite_engine)
    staged = await _stage(UnitOfWorkFactory(sessions), 2, "app_crash")
    publisher = FakePublisher()
    publisher.crash_after_publish = True
    with pytest.raises(RuntimeError, match="simulated crash"):
        await OutboxRelay(sessions, publisher).run_once()
    assert await OutboxRelay(sessions, publisher).pending() == 2  # not marked

    publisher.crash_after_publish = False
    assert await OutboxRelay(sessions, publisher).run_once() == 2
    published = [dict(r.headers)["event_id"].decode() for r in publisher.records]
    assert published == staged + staged  # at least once: the batch went out again


async def test_background_relay_wakes_on_commit(sqlite_engine: AsyncEngine) -> None:
    sessions = create_session_factory(sqlite_engine)
    publisher = FakePublisher()
    relay = OutboxRelay(sessions, publisher, poll_interval=30)  # only the hint can be in time
    uow_factory = UnitOfWorkFactory(sessions, on_outbox_committed=relay.wake)
    relay.start()
    try:
        # Idle with nothing to publish: the row staged now can only go out on the hint.
        await asyncio.wait_for(relay.idle.wait(), 10)
        await _stage(uow_factory, 1, "app_wake")
        for _ in range(50):
            if publisher.records:
                break
            await asyncio.sleep(0.05)
        assert len(publisher.records) == 1
        assert relay.running
    finally:
        await relay.stop()
    assert not relay.running


async def test_relay_keeps_going_after_publish_failures(sqlite_engine: AsyncEngine) -> None:
    sessions = create_session_factory(sqlite_engine)
    attempts = 0

    async def broker_down_twice(records: Sequence[Record]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            raise ConnectionError("broker unreachable")

    relay = OutboxRelay(sessions, broker_down_twice, poll_interval=0.02, max_backoff=0.05)
    await _stage(UnitOfWorkFactory(sessions), 1, "app_retry")
    relay.start()
    try:
        for _ in range(100):
            if await relay.pending() == 0:
                break
            await asyncio.sleep(0.02)
        assert await relay.pending() == 0
        assert attempts == 3
    finally:
        await relay.stop()


async def test_republish_since_requeues_recent_rows(sqlite_engine: AsyncEngine) -> None:
    sessions = create_session_factory(sqlite_engine)
    await _stage(UnitOfWorkFactory(sessions), 3, "app_replay")
    publisher = FakePublisher()
    relay = OutboxRelay(sessions, publisher)
    await relay.run_once()
    async with sessions() as session:
        rows = (await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))).all()
        old = rows[0]
        old.created_at = utcnow() - timedelta(days=2)
        session.add(old)
        await session.commit()
    assert await relay.republish_since(utcnow() - timedelta(days=1)) == 2
    assert await relay.run_once() == 2
    assert len(publisher.records) == 5
