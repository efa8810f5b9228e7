"""Helpers for tests that run the kit against the real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import catalog
from contracts.envelope import Actor, Envelope
from services.kit.consumer import Incoming
from services.kit.migrations import service_metadata
from services.kit.uow import UnitOfWork

#: State a test handler changes: one counter per subject. Deliberately not a SQLModel table,
#: so it stays out of the global metadata the services' schemas are built from.
_STATE = sa.MetaData()
COUNTERS = sa.Table(
    "test_counters",
    _STATE,
    sa.Column("subject", sa.String(100), primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)


def admin_dsn(url: str) -> str:
    """A libpq DSN for the maintenance database of the server behind ``url``."""
    return (
        make_url(url)
        .set(drivername="postgresql", database="postgres")
        .render_as_string(hide_password=False)
    )


@asynccontextmanager
async def fresh_database(pg_url: str, label: str = "t") -> AsyncIterator[str]:
    """A new, empty database on the server of ``pg_url``; dropped afterwards."""
    base = make_url(pg_url)
    name = f"{base.database}_{label}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_dsn(pg_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        conn = await asyncpg.connect(admin_dsn(pg_url))
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            await conn.close()


async def create_kit_schema(engine: AsyncEngine) -> None:
    """Kit tables plus the test counters table."""
    metadata = service_metadata(COUNTERS)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


def envelope(
    subject: str | None = None,
    *,
    message_type: str = "application.submitted",
    event_id: uuid.UUID | None = None,
) -> Envelope[Any]:
    """A valid envelope built from the contract's documented example payload."""
    subject = subject or f"app_{uuid.uuid4().hex[:12]}"
    example = catalog.example_payloads(message_type)[0]
    payload = example.model_copy(update={"application_id": subject})
    return catalog.make_envelope(
        message_type,
        payload,
        subject=subject,
        actor=Actor.system("tests"),
        producer="tests",
        correlation_id=uuid.uuid4(),
        event_id=event_id,
    )


async def increment_counter(incoming: Incoming, uow: UnitOfWork) -> None:
    """A handler with a visible effect: counter[subject] += 1."""
    subject = incoming.envelope.subject
    session = uow.session
    current = (
        await session.exec(sa.select(COUNTERS.c.value).where(COUNTERS.c.subject == subject))  # type: ignore[call-overload]
    ).first()
    if current is None:
        await session.exec(sa.insert(COUNTERS).values(subject=subject, value=1))
    else:
        await session.exec(
            sa.update(COUNTERS).where(COUNTERS.c.subject == subject).values(value=current[0] + 1)
        )


async def counter(engine: AsyncEngine, subject: str) -> int:
    """The counter of ``subject`` (0 when absent)."""
    async with engine.connect() as conn:
        value = await conn.scalar(sa.select(COUNTERS.c.value).where(COUNTERS.c.subject == subject))
    return int(value or 0)


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    """Run one scalar query."""
    async with engine.connect() as conn:
        return await conn.scalar(sa.text(sql), params)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 20.0, interval: float = 0.1
) -> None:
    """Wait until ``check()`` is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def read_topic(
    bootstrap: str, topic: str, *, count: int, timeout: float = 20.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read at least ``count`` records of ``topic`` from the beginning (no consumer group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic)
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def topic_size(bootstrap: str, topic: str) -> int:
    """How many records ``topic`` holds (end minus beginning offsets, every partition)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await _partitions(consumer, topic)]
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    for _ in range(50):
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        await consumer.topics()  # refreshes the cluster metadata
        await asyncio.sleep(0.1)
    raise AssertionError(f"topic {topic} has no partitions")


class RecordingLog:
    """Stands in for a module's structlog logger (``monkeypatch.setattr(module, "log", ...)``).

    structlog caches a logger on first use once logging is configured (as an earlier test in
    the same process may have done), after which ``structlog.testing.capture_logs`` sees
    nothing; replacing the module's logger works whatever ran before.
    """

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def _record(self, level: str, event: str, **fields: Any) -> None:
        self.entries.append({"level": level, "event": event, **fields})

    def debug(self, event: str, **fields: Any) -> None:
        self._record("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._record("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._record("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._record("error", event, **fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._record("exception", event, **fields)
