"""Fixtures for the kit tests: a fresh PostgreSQL database per test, topics on the broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from services.kit.db import create_engine
from services.kit.messaging import create_producer, ensure_topics
from tests.kit.helpers import create_kit_schema, fresh_database


@pytest.fixture
async def pg_engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a database of its own, with the kit tables and the test counters.

    One database per test: a relay publishes *every* unpublished outbox row, so tests sharing
    an outbox would publish each other's messages.
    """
    async with fresh_database(pg_url, "kit") as url:
        engine = create_engine(url)
        await create_kit_schema(engine)
        try:
            yield engine
        finally:
            await engine.dispose()


@pytest.fixture
async def sqlite_engine(tmp_path) -> AsyncIterator[AsyncEngine]:  # type: ignore[no-untyped-def]
    """A SQLite file database with the kit tables: the embedded default, for fast unit tests."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'kit.db'}")
    await create_kit_schema(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def make_topic(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> Callable[..., Awaitable[str]]:
    """``await make_topic(prefix, partitions=3)`` creates a unique topic and its ``.dlq`` twin."""

    async def make(prefix: str = "kit", partitions: int = 3) -> str:
        name = unique_name(prefix)
        await ensure_topics(kafka_bootstrap, [(name, partitions), (f"{name}.dlq", 1)])
        return name

    return make


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer on the session broker (acks=all, as the kit publishes)."""
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()
