"""The messaging guarantees, proven on the real broker (Tansu) and PostgreSQL.

- no message is lost when the relay crashes between commit and publish, or between publish and
  the published mark (a real SIGKILL), and the redelivery changes state once;
- a duplicate delivery changes state only once;
- poison messages land in the DLQ with reason, original bytes and headers, and the next
  message is still processed;
- transient errors are retried with backoff until they pass, across hand-backs of the batch to
  the broker, and never dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import catalog
from services.kit.consumer import Handler, IdempotentConsumer, Incoming, Outcome, subscribe
from services.kit.db import create_session_factory
from services.kit.dlq import ConsumedRecord, parse_dead_letter
from services.kit.errors import RetryableError, StillWaiting
from services.kit.messaging import send_all
from services.kit.outbox import OutboxRelay
from services.kit.retry import RetryPolicy
from services.kit.uow import UnitOfWork, UnitOfWorkFactory
from tests.kit.helpers import (
    counter,
    envelope,
    eventually,
    increment_counter,
    read_topic,
    scalar,
    topic_size,
)

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST = RetryPolicy(initial_delay=0.05, max_delay=0.2, jitter=0.0)
#: Hands a waiting batch back after one second, so a test sees several hand-backs quickly.
SHORT_HOLD = RetryPolicy(initial_delay=0.05, max_delay=0.2, jitter=0.0, hold=1.0)


class RecordingConsumer(IdempotentConsumer):
    """Remembers each record's outcome, so tests can wait for deliveries, not just effects."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.outcomes: list[Outcome] = []
        self.handed_back = 0

    async def process_batch(self, records: Sequence[ConsumedRecord]) -> list[Outcome]:
        try:
            outcomes = await super().process_batch(records)
        except StillWaiting:
            self.handed_back += 1
            raise
        self.outcomes.extend(outcomes)
        return outcomes


@asynccontextmanager
async def consuming(
    bootstrap: str,
    engine: AsyncEngine,
    producer: AIOKafkaProducer,
    topic: str,
    group: str,
    handler: Handler = increment_counter,
    retry: RetryPolicy = FAST,
) -> AsyncIterator[RecordingConsumer]:
    """A real FastStream subscriber running the idempotent consumer on ``topic``."""
    broker = KafkaBroker(bootstrap, acks="all")
    consumer = RecordingConsumer(
        "downstream",
        handler,
        uow_factory=UnitOfWorkFactory(create_session_factory(engine)),
        dead_letters=partial(send_all, producer),
        retry=retry,
    )
    subscribe(broker, consumer, topic, group_id=group)
    await broker.start()
    try:
        yield consumer
    finally:
        await broker.stop()


def delivered(consumer: RecordingConsumer, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(consumer.outcomes) >= count

    return check


async def test_relay_crashes_lose_nothing_and_duplicate_nothing(
    pg_engine: AsyncEngine,
    kafka_bootstrap: str,
    producer: AIOKafkaProducer,
    make_topic: Callable[..., Awaitable[str]],
    unique_name: Callable[[str], str],
) -> None:
    topic = await make_topic("relay-crash")
    sessions = create_session_factory(pg_engine)
    uow_factory = UnitOfWorkFactory(sessions)

    # 1. State change + outbox row committed; the relay process is killed (SIGKILL) after the
    #    broker acknowledged the record but before the row was marked published.
    first = envelope()
    async with uow_factory() as uow:
        uow.add_outbox(first, topic)
        await uow.commit()
    url = pg_engine.url.render_as_string(hide_password=False)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.kit.relay_crash_process", url, kafka_bootstrap, cwd=REPO_ROOT
    )
    assert await asyncio.wait_for(process.wait(), 60) == -9

    # 2. Another commit; this relay dies (is cancelled) before it gets to publish.
    second = envelope()
    async with uow_factory() as uow:
        uow.add_outbox(second, topic)
        await uow.commit()
    publishing, never = asyncio.Event(), asyncio.Event()

    async def hang(_records: object) -> None:
        publishing.set()
        await never.wait()

    stuck = OutboxRelay(sessions, hang)
    stuck.start()
    await asyncio.wait_for(publishing.wait(), 30)  # it holds both rows when it dies
    await stuck.stop()

    relay = OutboxRelay(sessions, partial(send_all, producer))
    assert await relay.pending() == 2  # both survived their relay's death

    # 3. A restarted relay publishes both: the first one for the second time.
    assert await relay.run_once() == 2
    assert await relay.pending() == 0
    on_topic = await read_topic(kafka_bootstrap, topic, count=3)
    ids = [catalog.decode(r.value).event_id for r in on_topic]
    assert sorted(map(str, ids)) == sorted(map(str, [first.event_id] * 2 + [second.event_id]))

    # 4. The consumer sees all three deliveries; each message changes state exactly once.
    async with consuming(
        kafka_bootstrap, pg_engine, producer, topic, unique_name("relay-crash")
    ) as consumer:
        await eventually(delivered(consumer, 3))
    assert sorted(consumer.outcomes) == sorted(
        [Outcome.PROCESSED, Outcome.PROCESSED, Outcome.DUPLICATE]
    )
    assert await counter(pg_engine, first.subject) == 1
    assert await counter(pg_engine, second.subject) == 1
    assert await scalar(pg_engine, "SELECT count(*) FROM processed_messages") == 2


async def test_duplicate_delivery_changes_state_once(
    pg_engine: AsyncEngine,
    kafka_bootstrap: str,
    producer: AIOKafkaProducer,
    make_topic: Callable[..., Awaitable[str]],
    unique_name: Callable[[str], str],
) -> None:
    topic = await make_topic("dup")
    env = envelope()
    raw, key = catalog.encode(env), env.subject.encode()
    for _ in range(3):
        await producer.send_and_wait(topic, raw, key=key, headers=env.headers())
    async with consuming(
        kafka_bootstrap, pg_engine, producer, topic, unique_name("dup")
    ) as consumer:
        await eventually(delivered(consumer, 3))
    assert consumer.outcomes == [Outcome.PROCESSED, Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert await counter(pg_engine, env.subject) == 1
    assert (
        await scalar(
            pg_engine,
            "SELECT count(*) FROM processed_messages WHERE event_id = :id",
            id=env.event_id,
        )
        == 1
    )


async def test_poison_messages_go_to_dlq_and_the_next_message_is_processed(
    pg_engine: AsyncEngine,
    kafka_bootstrap: str,
    producer: AIOKafkaProducer,
    make_topic: Callable[..., Awaitable[str]],
    unique_name: Callable[[str], str],
) -> None:
    topic = await make_topic("poison")
    good = envelope()
    key = good.subject.encode()  # one key: one partition, so "next" is well defined
    valid_json = json.loads(catalog.encode(envelope(good.subject)))
    schema_invalid = json.dumps({**valid_json, "payload": {"application_id": good.subject}})
    unknown_type = json.dumps({**valid_json, "type": "application.teleported"})
    poison = [
        (b"\x00\xffnot json at all", "undecodable"),
        (schema_invalid.encode(), "schema_invalid"),
        (unknown_type.encode(), "unknown_message_type"),
    ]
    for index, (value, _reason) in enumerate(poison):
        await producer.send_and_wait(
            topic, value, key=key, headers=[("origin", b"fuzzer"), ("n", str(index).encode())]
        )
    await producer.send_and_wait(topic, catalog.encode(good), key=key, headers=good.headers())

    async with consuming(
        kafka_bootstrap, pg_engine, producer, topic, unique_name("poison")
    ) as consumer:
        await eventually(delivered(consumer, 4))
    assert consumer.outcomes == [Outcome.DEAD_LETTERED] * 3 + [Outcome.PROCESSED]
    assert await counter(pg_engine, good.subject) == 1

    dead = await read_topic(kafka_bootstrap, f"{topic}.dlq", count=3)
    assert len(dead) == 3
    for record, (value, reason) in zip(sorted(dead, key=lambda r: r.offset), poison, strict=True):
        info = parse_dead_letter(record.headers)
        assert info.reason == reason
        assert record.value == value  # the original bytes, untouched
        assert record.key == key
        assert ("origin", b"fuzzer") in info.original_headers
        assert info.source_topic == topic
        assert info.consumer == "downstream"
        assert info.error


async def test_transient_errors_are_waited_out_across_hand_backs_and_never_dead_lettered(
    pg_engine: AsyncEngine,
    kafka_bootstrap: str,
    producer: AIOKafkaProducer,
    make_topic: Callable[..., Awaitable[str]],
    unique_name: Callable[[str], str],
) -> None:
    topic = await make_topic("transient")
    recovers, outlasts_the_hold, after = envelope(), envelope(), envelope()
    attempts: dict[str, list[float]] = {recovers.subject: [], outlasts_the_hold.subject: []}
    loop = asyncio.get_running_loop()
    running: list[RecordingConsumer] = []  # the consumer, once it runs

    async def handler(incoming: Incoming, uow: UnitOfWork) -> None:
        subject = incoming.envelope.subject
        if subject in attempts:
            attempts[subject].append(loop.time())
            outage = not running or running[0].handed_back < 2
            if subject == outlasts_the_hold.subject and outage:
                raise ConnectionError("payment rail unreachable")
            if subject == recovers.subject and len(attempts[subject]) < 3:
                raise RetryableError("database failover in progress")
        await increment_counter(incoming, uow)

    key = b"same-partition"
    for env in (recovers, outlasts_the_hold, after):
        await producer.send_and_wait(topic, catalog.encode(env), key=key, headers=env.headers())

    async with consuming(
        kafka_bootstrap,
        pg_engine,
        producer,
        topic,
        unique_name("transient"),
        handler,
        retry=SHORT_HOLD,
    ) as consumer:
        running.append(consumer)

        async def all_applied() -> bool:
            return await counter(pg_engine, after.subject) == 1

        await eventually(all_applied, timeout=60)
        handed_back = consumer.handed_back

    # Retried with growing delays, then succeeded, changing state once.
    times = attempts[recovers.subject]
    assert len(times) >= 3
    assert times[1] - times[0] >= 0.04
    assert times[2] - times[1] >= 0.08
    # The outage outlasted the hold twice: the batch went back to the broker unacknowledged,
    # came back, and was waited out; nothing was dead-lettered, every message applied once.
    assert handed_back == 2
    assert len(attempts[outlasts_the_hold.subject]) > 2
    for env in (recovers, outlasts_the_hold, after):
        assert await counter(pg_engine, env.subject) == 1
    assert Outcome.DEAD_LETTERED not in consumer.outcomes
    assert await topic_size(kafka_bootstrap, f"{topic}.dlq") == 0
