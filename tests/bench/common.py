"""What every benchmark shares: results, infrastructure, input data and exactly-once checks."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from sqlalchemy.engine import make_url

from contracts import catalog
from contracts.envelope import Actor, Envelope
from contracts.topics import DEFAULT_PARTITIONS
from services.kit.messaging import (
    CONSUMER_HEARTBEAT_INTERVAL_MS,
    CONSUMER_SESSION_TIMEOUT_MS,
    Record,
    ensure_topics,
)
from tests.pg_cluster import PG_ADMIN_DSN
from tests.support import running_broker

#: Partitions of every benchmark topic: what the real domain topics have.
PARTITIONS = DEFAULT_PARTITIONS
#: Input events per subject (application id): several events per aggregate, so the hop's
#: handler takes both its insert and its update path.
EVENTS_PER_SUBJECT = 4
#: Aiokafka consumer settings Tansu needs (group join after half the session timeout).
CONSUMER_TIMEOUTS: dict[str, int] = {
    "session_timeout_ms": CONSUMER_SESSION_TIMEOUT_MS,
    "heartbeat_interval_ms": CONSUMER_HEARTBEAT_INTERVAL_MS,
}


class BenchError(RuntimeError):
    """A benchmark could not produce a trustworthy figure (lost, duplicated or stuck messages)."""


@dataclass(frozen=True)
class Point:
    """A figure's place on a chart: which chart, which line on it, and where on the x axis."""

    chart: str
    series: str
    x: float


@dataclass(frozen=True)
class Result:
    """One measured figure."""

    name: str
    n: int
    seconds: float
    baseline: str | None = None
    target: float | None = None
    note: str = ""
    #: Absolute targets (DESIGN) next to the ratio target: rate per second, p99 in ms.
    rate_target: float | None = None
    p99_target_ms: float | None = None
    #: p50 and p99 latency in milliseconds, for request/response benchmarks.
    latency_ms: tuple[float, float] | None = None
    #: Where the figure is drawn (:mod:`tests.bench.charts`): a chart, a series, an x value.
    point: Point | None = None

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.n / self.seconds if self.seconds > 0 else float("inf")


# --- infrastructure ---------------------------------------------------------------------------


@asynccontextmanager
async def tansu(workdir: Path) -> AsyncIterator[str]:
    """A Tansu broker of our own on a free port; yields its bootstrap, stops it by PID after."""
    async with running_broker(workdir / "tansu.log") as broker:
        yield broker.bootstrap


def _admin_dsn(server_url: str | None) -> str:
    if server_url is None:
        return PG_ADMIN_DSN
    return (
        make_url(server_url)
        .set(drivername="postgresql", database="postgres")
        .render_as_string(hide_password=False)
    )


@asynccontextmanager
async def fresh_pg_database(
    server_url: str | None = None, label: str = "bench"
) -> AsyncIterator[str]:
    """A new empty database (``postgresql+asyncpg://`` URL) on the server; dropped afterwards.

    ``server_url`` is any database URL on the wanted server (the test fixture's, for example);
    by default the local server of :data:`PG_ADMIN_DSN`.
    """
    admin = _admin_dsn(server_url)
    name = f"incentives_{label}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield (
            make_url(admin)
            .set(drivername="postgresql+asyncpg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        conn = await asyncpg.connect(admin, timeout=10)
        try:
            # A pool the benchmark failed to dispose of must not keep the database alive.
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            await conn.close()


async def create_topics(bootstrap: str, *names: str) -> None:
    """Create benchmark topics explicitly (Tansu's auto-creation gives another count)."""
    await ensure_topics(bootstrap, [(name, PARTITIONS) for name in names])


def unique(prefix: str) -> str:
    """A topic or group name no other run uses."""
    return f"bench-{prefix}-{uuid.uuid4().hex[:8]}"


# --- input data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """``n`` input envelopes, encoded as records, and their event ids, in production order."""

    envelopes: tuple[Envelope[Any], ...]
    records: tuple[Record, ...]
    event_ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.records)


def make_inputs(n: int, topic: str) -> Batch:
    """``n`` valid ``application.submitted`` envelopes for ``topic``, already encoded.

    Copies of one validated envelope with a fresh event id and subject each: encoding is done
    here, outside any timed section, and every record still decodes and validates.
    """
    example = catalog.example_payloads("application.submitted")[0]
    base = catalog.make_envelope(
        "application.submitted",
        example,
        subject=example.application_id,  # type: ignore[attr-defined]
        actor=Actor.system("bench"),
        producer="bench",
        correlation_id=uuid.uuid4(),
    )
    subjects = max(1, n // EVENTS_PER_SUBJECT)
    envelopes: list[Envelope[Any]] = []
    records: list[Record] = []
    ids: list[str] = []
    for i in range(n):
        subject = f"app_bench{i % subjects:07d}"
        envelope = base.model_copy(
            update={
                "event_id": uuid.uuid4(),
                "correlation_id": uuid.uuid4(),
                "subject": subject,
                "payload": example.model_copy(update={"application_id": subject}),
            }
        )
        envelopes.append(envelope)
        records.append(
            Record(
                topic=topic,
                value=catalog.encode(envelope),
                key=subject.encode(),
                headers=tuple(envelope.headers()),
            )
        )
        ids.append(str(envelope.event_id))
    return Batch(envelopes=tuple(envelopes), records=tuple(records), event_ids=tuple(ids))


def raw_producer(bootstrap: str) -> AIOKafkaProducer:
    """Plain aiokafka producer: client defaults except ``acks=all`` (Tansu: no idempotence)."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)


async def produce(producer: AIOKafkaProducer, records: Iterable[Record]) -> None:
    """Queue every record, then wait for all acknowledgements (the way aiokafka batches)."""
    futures = [
        await producer.send(r.topic, r.value, key=r.key, headers=list(r.headers)) for r in records
    ]
    if futures:
        await asyncio.gather(*futures)


async def seed(bootstrap: str, batch: Batch) -> float:
    """Produce ``batch`` with a raw producer; returns the seconds from first send to last ack."""
    producer = raw_producer(bootstrap)
    await producer.start()
    try:
        started = time.perf_counter()
        await produce(producer, batch.records)
        return time.perf_counter() - started
    finally:
        await producer.stop()


def raw_consumer(bootstrap: str, *topics: str, group_id: str | None = None) -> AIOKafkaConsumer:
    """A consumer from the earliest offset with Tansu's short session timeouts, manual commits."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **CONSUMER_TIMEOUTS,
    )


# --- progress and verification ------------------------------------------------------------------


async def wait_for_count(
    what: str,
    count: Callable[[], int],
    n: int,
    *,
    stall_timeout: float,
    interval: float = 0.01,
    on_progress: Callable[[int], None] | None = None,
) -> float:
    """Wait until ``count() >= n``; returns ``time.perf_counter()`` at that moment.

    Raises :class:`BenchError` when the count has not moved for ``stall_timeout`` seconds.
    """
    last, last_change = -1, time.monotonic()
    while True:
        current = count()
        if on_progress is not None and current != last:
            on_progress(current)
        if current >= n:
            return time.perf_counter()
        if current != last:
            last, last_change = current, time.monotonic()
        elif time.monotonic() - last_change > stall_timeout:
            raise BenchError(f"{what}: stuck at {current} of {n} for {stall_timeout:.0f}s")
        await asyncio.sleep(interval)


async def read_all(
    bootstrap: str, topic: str, *, timeout: float = 60.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` up to its current end offsets (no consumer group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(await _partitions(consumer, topic))]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + timeout
        while not await _at_end(consumer, ends):
            if time.monotonic() > deadline:
                raise BenchError(f"reading {topic} back: only {len(records)} records in {timeout}s")
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


async def _at_end(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    for _ in range(100):
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        await consumer.topics()  # refreshes the cluster metadata
        await asyncio.sleep(0.1)
    raise BenchError(f"topic {topic} has no partitions")


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str:
    """A header's value as text; :class:`BenchError` when it is missing."""
    for key, value in record.headers or ():
        if key == name:
            return bytes(value).decode()
    raise BenchError(f"record {record.topic}/{record.partition}@{record.offset} has no {name}")


def causation_of(record: ConsumerRecord[bytes, bytes]) -> str:
    """The ``causation_id`` of an envelope record: the input event that caused it."""
    value = json.loads(record.value or b"{}")
    cause = value.get("causation_id")
    if not cause:
        raise BenchError(f"record {record.topic}/{record.partition}@{record.offset} has no cause")
    return str(cause)


def assert_exactly_once(
    what: str,
    expected: Sequence[str],
    records: Sequence[ConsumerRecord[bytes, bytes]],
    id_of: Callable[[ConsumerRecord[bytes, bytes]], str],
) -> int:
    """Every expected id appears exactly once among ``records`` and nothing else does.

    Returns the number of ids counted on the topic, which is what a result reports as its
    ``n``: a figure read back from the broker, not the number that was asked for.
    """
    seen = Counter(id_of(r) for r in records)
    wanted = set(expected)
    missing = [i for i in expected if i not in seen]
    duplicated = {i: c for i, c in seen.items() if c > 1}
    unexpected = [i for i in seen if i not in wanted]
    if missing or duplicated or unexpected:
        raise BenchError(
            f"{what}: {len(records)} records for {len(expected)} messages; "
            f"{len(missing)} missing, {len(duplicated)} duplicated, {len(unexpected)} unexpected "
            f"(e.g. missing {missing[:3]}, duplicated {list(duplicated.items())[:3]})"
        )
    return len(seen)
