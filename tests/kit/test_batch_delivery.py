"""The batch consumer and the relay on the real broker (Tansu) and PostgreSQL.

- one batch holding poison, a business refusal, a duplicate and good messages: the bad ones go
  to the DLQ with their reasons, the good ones are processed exactly once, offsets advance;
- duplicates inside one batch and across batches change state once;
- a consumer process killed (SIGKILL) mid-batch, or between its commit and its offset commit,
  loses nothing and duplicates nothing once a consumer resumes;
- relays sharing one database publish every row once, in commit order; wake-ups are debounced.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import catalog
from contracts.envelope import Envelope
from services.kit.consumer import Handler, IdempotentConsumer, Incoming, Outcome, subscribe
from services.kit.db import create_session_factory
from services.kit.dlq import ConsumedRecord, parse_dead_letter
from services.kit.errors import BusinessRefusal
from services.kit.messaging import Record, send_all
from services.kit.outbox import OutboxRelay
from services.kit.retry import RetryPolicy
from services.kit.uow import UnitOfWork, UnitOfWorkFactory
from tests.kit.consumer_crash_process import CONSUMER, CountAndEmit
from tests.kit.helpers import counter, envelope, eventually, read_topic, scalar

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST = RetryPolicy(initial_delay=0.05, max_delay=0.2, jitter=0.0)


class BatchRecorder(IdempotentConsumer):
    """Remembers every batch it was given and every outcome, in delivery order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []
        self.outcomes: list[Outcome] = []

    async def process_batch(self, records: Sequence[ConsumedRecord]) -> list[Outcome]:
        outcomes = await super().process_batch(records)
        self.batches.append(len(records))
        self.outcomes.extend(outcomes)
        return outcomes


@asynccontextmanager
async def consuming(
    bootstrap: str,
    engine: AsyncEngine,
    producer: AIOKafkaProducer,
    topic: str,
    group: str,
    handler: Handler,
    *,
    lanes: int = 3,
) -> AsyncIterator[BatchRecorder]:
    """A real FastStream batch subscriber running the consumer on ``topic``."""
    broker = KafkaBroker(bootstrap, acks="all")
    consumer = BatchRecorder(
        CONSUMER,
        handler,
        uow_factory=UnitOfWorkFactory(create_session_factory(engine)),
        dead_letters=partial(send_all, producer),
        retry=FAST,
        lanes=lanes,
    )
    subscribe(broker, consumer, topic, group_id=group)
    await broker.start()
    try:
        yield consumer
    finally:
        await broker.stop()


async def burst(
    producer: AIOKafkaProducer, topic: str, items: Sequence[tuple[bytes, bytes, Any]]
) -> None:
    """Send all, then wait for all: they travel (and are fetched) together."""
    futures = [await producer.send(topic, value, key=key, headers=h) for value, key, h in items]
    await asyncio.gather(*futures)


def as_item(env: Envelope[Any]) -> tuple[bytes, bytes, Any]:
    return catalog.encode(env), env.subject.encode(), env.headers()


def outcomes_at_least(consumer: BatchRecorder, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(consumer.outcomes) >= count

    return check


async def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    """The group's committed offset per partition (-1 when none), read without joining it."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        offsets = []
        for p in range(partitions):
            committed = await reader.committed(TopicPartition(topic, p))
            offsets.append(-1 if committed is None else committed)
        return offsets
    finally:
        await reader.stop()


async def end_offsets(bootstrap: str, topic: str, partitions: int, count: int) -> list[int]:
    """One past the last offset of each partition, from the ``count`` records on ``topic``."""
    ends = [0] * partitions
    for record in await read_topic(bootstrap, topic, count=count):
        ends[record.partition] = max(ends[record.partition], record.offset + 1)
    return ends


async def outbox_ids(engine: AsyncEngine) -> Counter[str]:
    async with engine.connect() as conn:
        rows = (await conn.exec_driver_sql("SELECT event_id FROM outbox")).all()
    return Counter(str(row[0]) for row in rows)


async def test_one_batch_with_poison_refusal_duplicate_and_good_messages(
    pg_engine: AsyncEngine,
    kafka_bootstrap: str,
    producer: AIOKafkaProducer,
    make_topic: Callable[..., Awaitable[str]],
    unique_name: Callable[[str], str],
) -> None:
    topic = await make_topic("mixed", partitions=1)
    good = [envelope() for _ in range(4)]
    refused = envelope()
    valid_json = json.loads(catalog.encode(envelope()))
    schema_invalid = json.dumps({**valid_json, "payload": {"oops": 1}}).encode()
    poison = b"\x00\xffnot json at all"
    key = b"k"
    items: list[tuple[bytes, bytes, Any]] = [
        as_item(good[0]),
        (poison, key, [("origin", b"fuzzer")]),
        as_item(good[1]),
        as_item(refused),
        as_item(good[2]),
        as_item(good[0]),  # a duplicate delivery inside the same batch
        (schema_invalid, key, [("origin", b"fuzzer")]),
        as_item(good[3]),
    ]
    await burst(producer, topic, items)
    count_and_emit = CountAndEmit()

    async def handler(incoming: Incoming, uow: UnitOfWork) -> None:
        await count_and_emit(incoming, uow)  # rolled back when the refusal follows
        if incoming.envelope.subject == refused.subject:
            raise BusinessRefusal("zone capacity exhausted")

    group = unique_name("mixed")
    async with consuming(kafka_bootstrap, pg_engine, producer, topic, group, handler) as consumer:
        await eventually(outcomes_at_least(consumer, len(items)))
        await eventually(
            lambda: _equals(committed_offsets(kafka_bootstrap, group, topic, 1), [len(items)])
        )

    assert consumer.batches == [len(items)]  # one batch carried them all
    assert consumer.outcomes == [
        Outcome.PROCESSED,
        Outcome.DEAD_LETTERED,
        Outcome.PROCESSED,
        Outcome.DEAD_LETTERED,
        Outcome.PROCESSED,
        Outcome.DUPLICATE,
        Outcome.DEAD_LETTERED,
        Outcome.PROCESSED,
    ]
    for env in good:
        assert await counter(pg_engine, env.subject) == 1
    assert await counter(pg_engine, refused.subject) == 0
    assert await scalar(pg_engine, "SELECT count(*) FROM processed_messages") == 4
    outputs = await outbox_ids(pg_engine)
    assert len(outputs) == 4
    assert set(outputs.values()) == {1}

    dead = await read_topic(kafka_bootstrap, f"{topic}.dlq", count=3)
    infos = [parse_dead_letter(r.headers) for r in dead]
    assert [i.reason for i in infos] == ["undecodable", "business_refusal", "schema_invalid"]
    assert [i.source_offset for i in infos] == [1, 3, 6]
    assert [r.value for r in dead] == [poison, catalog.encode(refused), schema_invalid]
    assert ("origin", b"fuzzer") in infos[0].original_headers
    assert infos[1].error == "zone capacity exhausted"
    assert {i.consumer for i in infos} == {CONSUMER}


async def _equals(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


async def test_duplicates_inside_and_across_batches_change_state_once(
    pg_engine: AsyncEngine,
    kafka_bootstrap: str,
    producer: AIOKafkaProducer,
    make_topic: Callable[..., Awaitable[str]],
    unique_name: Callable[[str], str],
) -> None:
    topic = await make_topic("dups", partitions=3)
    a, b, c = envelope(), envelope(), envelope()
    group = unique_name("dups")
    async with consuming(
        kafka_bootstrap, pg_engine, producer, topic, group, CountAndEmit()
    ) as consumer:
        await burst(producer, topic, [as_item(a), as_item(a), as_item(b), as_item(a)])
        await eventually(outcomes_at_least(consumer, 4))
        await burst(producer, topic, [as_item(b), as_item(a), as_item(c)])
        await eventually(outcomes_at_least(consumer, 7))

    assert Counter(consumer.outcomes) == {Outcome.PROCESSED: 3, Outcome.DUPLICATE: 4}
    for env in (a, b, c):
        assert await counter(pg_engine, env.subject) == 1
    assert await scalar(pg_engine, "SELECT count(*) FROM processed_messages") == 3
    outputs = await outbox_ids(pg_engine)
    assert len(outputs) == 3
    assert set(outputs.values()) == {1}


@pytest.mark.parametrize(
    ("mode", "at"),
    [
        ("handler", 150),  # inside a handler of the second batch, before its commit
        ("commit", 2),  # after the second batch committed, before its offsets did
    ],
)
async def test_a_consumer_killed_mid_batch_loses_nothing_and_duplicates_nothing(
    pg_engine: AsyncEngine,
    kafka_bootstrap: str,
    producer: AIOKafkaProducer,
    make_topic: Callable[..., Awaitable[str]],
    unique_name: Callable[[str], str],
    mode: str,
    at: int,
) -> None:
    partitions = 3
    topic = await make_topic("crash", partitions=partitions)
    subjects = [envelope().subject for _ in range(60)]
    events = [envelope(subjects[i % len(subjects)]) for i in range(300)]
    # Ten events delivered twice, as a producer retry would: they must still count once.
    deliveries = events + events[:10]
    await burst(producer, topic, [as_item(e) for e in deliveries])
    group = unique_name("crash")

    url = pg_engine.url.render_as_string(hide_password=False)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.kit.consumer_crash_process",
        url,
        kafka_bootstrap,
        topic,
        group,
        mode,
        str(at),
        "100",
        cwd=REPO_ROOT,
    )
    assert await asyncio.wait_for(process.wait(), 90) == -9
    before = await scalar(pg_engine, "SELECT count(*) FROM processed_messages")
    assert 0 < before < len(events)  # it died with work done and work left

    async def all_processed() -> bool:
        return await scalar(pg_engine, "SELECT count(*) FROM processed_messages") == len(events)

    ends = await end_offsets(kafka_bootstrap, topic, partitions, len(deliveries))
    async with consuming(
        kafka_bootstrap, pg_engine, producer, topic, group, CountAndEmit()
    ) as consumer:
        await eventually(all_processed, timeout=60)
        await eventually(
            lambda: _equals(committed_offsets(kafka_bootstrap, group, topic, partitions), ends),
            timeout=30,
        )

    per_subject = Counter(e.subject for e in events)
    for subject in subjects:
        assert await counter(pg_engine, subject) == per_subject[subject]
    outputs = await outbox_ids(pg_engine)
    assert len(outputs) == len(events)
    assert set(outputs.values()) == {1}  # one output per input: no handler effect twice
    assert Outcome.DEAD_LETTERED not in consumer.outcomes
    if mode == "commit":
        # The committed batch came again (its offsets were never committed) and was recognised.
        assert consumer.outcomes.count(Outcome.DUPLICATE) >= 1


async def test_relays_sharing_a_database_publish_each_row_once_in_order(
    pg_engine: AsyncEngine,
) -> None:
    sessions = create_session_factory(pg_engine)
    uow_factory = UnitOfWorkFactory(sessions)
    subjects = [envelope().subject for _ in range(20)]
    staged: list[str] = []
    for chunk in range(6):
        async with uow_factory() as uow:
            for i in range(100):
                env = envelope(subjects[(chunk * 100 + i) % len(subjects)])
                uow.add_outbox(env, "relay.events")
                staged.append(str(env.event_id))
            await uow.commit()
    published: list[str] = []

    async def slow_publish(records: Sequence[Record]) -> None:
        await asyncio.sleep(0.01)  # the broker takes a while: relays overlap
        published.extend(dict(r.headers)["event_id"].decode() for r in records)

    relays = [OutboxRelay(sessions, slow_publish, batch_size=50) for _ in range(3)]
    counts = await asyncio.gather(*(relay.run_once() for relay in relays))

    assert sum(counts) == len(staged)
    assert published == staged  # once each, and in commit (id) order across the relays
    assert await relays[0].pending() == 0


async def test_relay_wake_ups_are_debounced(sqlite_engine: AsyncEngine) -> None:
    sessions = create_session_factory(sqlite_engine)
    cycles: list[int] = []

    async def publish(records: Sequence[Record]) -> None:
        cycles.append(len(records))

    relay = OutboxRelay(sessions, publish, poll_interval=30, debounce=0.3)
    uow_factory = UnitOfWorkFactory(sessions, on_outbox_committed=relay.wake)
    relay.start()
    try:
        await asyncio.wait_for(relay.idle.wait(), 10)  # the relay waits for a hint
        for _ in range(20):  # twenty small commits, each a wake-up hint
            async with uow_factory() as uow:
                uow.add_outbox(envelope(), "relay.events")
                await uow.commit()

        async def all_published() -> bool:
            return sum(cycles) == 20

        await eventually(all_published, timeout=10)
    finally:
        await relay.stop()
    assert len(cycles) <= 3, cycles  # not one cycle per commit
