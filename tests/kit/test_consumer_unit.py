"""The idempotent consumer's logic, in memory: FastStream's TestKafkaBroker, SQLite, fake DLQ."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import catalog
from services.kit.consumer import (
    Handler,
    IdempotentConsumer,
    Incoming,
    Outcome,
    decode_envelope,
    subscribe,
)
from services.kit.db import create_session_factory
from services.kit.dlq import ConsumedRecord, parse_dead_letter
from services.kit.errors import (
    BusinessRefusal,
    DependencyUnavailable,
    RetryableError,
    StillWaiting,
)
from services.kit.messaging import Record
from services.kit.outbox import Publish
from services.kit.retry import RetryPolicy
from services.kit.uow import UnitOfWork, UnitOfWorkFactory
from tests.kit.helpers import counter, envelope, increment_counter, scalar

FAST = RetryPolicy(initial_delay=0.01, max_delay=0.02, jitter=0.0)
TOPIC = "unit.events"


class DeadLetters:
    """In-memory stand-in for the Kafka producer on the dead-letter path."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    async def __call__(self, records: Sequence[Record]) -> None:
        self.records.extend(records)


@pytest.fixture
def dead_letters() -> DeadLetters:
    return DeadLetters()


def make_consumer(
    engine: AsyncEngine,
    dead_letters: Publish,
    handler: Handler = increment_counter,
    **kwargs: Any,
) -> IdempotentConsumer:
    return IdempotentConsumer(
        "unit",
        handler,
        uow_factory=UnitOfWorkFactory(create_session_factory(engine)),
        dead_letters=dead_letters,
        **{"retry": FAST, **kwargs},
    )


def record(
    value: bytes, offset: int = 0, headers: tuple[tuple[str, bytes], ...] = ()
) -> ConsumedRecord:
    return ConsumedRecord(
        topic=TOPIC, partition=0, offset=offset, key=b"k", value=value, headers=headers
    )


async def test_processes_once_and_ignores_duplicates(
    sqlite_engine: AsyncEngine, dead_letters: DeadLetters
) -> None:
    consumer = make_consumer(sqlite_engine, dead_letters)
    env = envelope()
    raw = catalog.encode(env)
    assert await consumer.process(record(raw, 0)) is Outcome.PROCESSED
    assert await consumer.process(record(raw, 1)) is Outcome.DUPLICATE
    assert await counter(sqlite_engine, env.subject) == 1
    assert await scalar(sqlite_engine, "SELECT count(*) FROM processed_messages") == 1
    assert dead_letters.records == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xfe garbage", "undecodable"),
        (b"[1, 2, 3]", "undecodable"),
        (json.dumps({"type": "application.submitted", "payload": {}}).encode(), "schema_invalid"),
        (
            catalog.encode(envelope()).replace(
                b'"application.submitted"', b'"application.teleported"'
            ),
            "unknown_message_type",
        ),
        (
            catalog.encode(envelope()).replace(b'"schema_version":1', b'"schema_version":9'),
            "unsupported_schema_version",
        ),
    ],
    ids=["garbage", "not-an-object", "schema-invalid", "unknown-type", "future-version"],
)
async def test_poison_goes_to_dlq_with_reason_bytes_and_headers(
    sqlite_engine: AsyncEngine, dead_letters: DeadLetters, value: bytes, reason: str
) -> None:
    consumer = make_consumer(sqlite_engine, dead_letters)
    headers = (("trace", b"t-1"),)
    assert await consumer.process(record(value, 7, headers)) is Outcome.DEAD_LETTERED
    (dlq,) = dead_letters.records
    assert dlq.topic == f"{TOPIC}.dlq"
    assert dlq.value == value
    assert dlq.key == b"k"
    info = parse_dead_letter(dlq.headers)
    assert info.reason == reason
    assert info.original_headers == headers
    assert (info.source_topic, info.source_offset, info.consumer) == (TOPIC, 7, "unit")
    assert await scalar(sqlite_engine, "SELECT count(*) FROM processed_messages") == 0


async def test_business_refusal_is_dead_lettered_without_state_change(
    sqlite_engine: AsyncEngine, dead_letters: DeadLetters
) -> None:
    async def refuse(incoming: Incoming, uow: UnitOfWork) -> None:
        await increment_counter(incoming, uow)  # rolled back with the refusal
        raise BusinessRefusal("zone capacity exhausted")

    consumer = make_consumer(sqlite_engine, dead_letters, handler=refuse)
    env = envelope()
    assert await consumer.process(record(catalog.encode(env))) is Outcome.DEAD_LETTERED
    info = parse_dead_letter(dead_letters.records[0].headers)
    assert info.reason == "business_refusal"
    assert info.error == "zone capacity exhausted"
    assert info.attempts == 1
    assert await counter(sqlite_engine, env.subject) == 0
    # Not marked processed: a replay after the rule changes is processed.
    assert await scalar(sqlite_engine, "SELECT count(*) FROM processed_messages") == 0


async def test_transient_errors_are_retried_then_succeed(
    sqlite_engine: AsyncEngine, dead_letters: DeadLetters
) -> None:
    attempts = 0

    async def flaky(incoming: Incoming, uow: UnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        await increment_counter(incoming, uow)
        if attempts < 3:
            raise RetryableError("lock timeout")

    consumer = make_consumer(sqlite_engine, dead_letters, handler=flaky)
    env = envelope()
    assert await consumer.process(record(catalog.encode(env))) is Outcome.PROCESSED
    assert attempts == 3
    assert await counter(sqlite_engine, env.subject) == 1  # failed attempts rolled back
    assert dead_letters.records == []


async def test_a_transient_failure_never_dead_letters_and_names_what_it_waits_for(
    sqlite_engine: AsyncEngine, dead_letters: DeadLetters
) -> None:
    attempts = 0
    waiting_seen: list[list[str]] = []
    consumer: IdempotentConsumer

    async def down_for_a_while(incoming: Incoming, uow: UnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        waiting_seen.append(consumer.waits.dependencies())
        if attempts < 25:  # many more attempts than any retry budget would allow
            raise DependencyUnavailable("payment rail unreachable", dependency="rail")
        await increment_counter(incoming, uow)

    consumer = make_consumer(sqlite_engine, dead_letters, handler=down_for_a_while)
    env = envelope()
    assert await consumer.process(record(catalog.encode(env))) is Outcome.PROCESSED
    assert attempts == 25
    assert dead_letters.records == []
    assert await counter(sqlite_engine, env.subject) == 1
    assert waiting_seen[0] == []  # the first attempt, in the batch, before any wait
    assert all(seen == ["rail"] for seen in waiting_seen[2:])
    assert consumer.waits.dependencies() == []  # the wait ended with the success


async def test_a_final_error_dead_letters_at_once_even_after_transient_failures(
    sqlite_engine: AsyncEngine, dead_letters: DeadLetters
) -> None:
    attempts = 0

    async def flaky_then_refused(incoming: Incoming, uow: UnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("database restarting")
        raise BusinessRefusal("over budget")

    consumer = make_consumer(sqlite_engine, dead_letters, handler=flaky_then_refused)
    assert await consumer.process(record(catalog.encode(envelope()))) is Outcome.DEAD_LETTERED
    assert attempts == 3  # not retried once it was final
    (letter,) = dead_letters.records
    info = parse_dead_letter(letter.headers)
    assert info.reason == "business_refusal"
    assert info.attempts == 3
    assert consumer.waits.dependencies() == []


async def test_after_the_hold_the_batch_is_handed_back_unacknowledged(
    sqlite_engine: AsyncEngine, dead_letters: DeadLetters
) -> None:
    async def down(incoming: Incoming, uow: UnitOfWork) -> None:
        raise ConnectionError("connection refused")

    consumer = make_consumer(
        sqlite_engine,
        dead_letters,
        handler=down,
        retry=RetryPolicy(initial_delay=0.01, max_delay=0.02, jitter=0.0, hold=0.2),
    )
    env = envelope()
    with pytest.raises(StillWaiting):  # the subscriber rewinds and polls the records again
        await consumer.process(record(catalog.encode(env)))
    assert dead_letters.records == []
    assert await counter(sqlite_engine, env.subject) == 0


async def test_types_filter_skips_other_types(
    sqlite_engine: AsyncEngine, dead_letters: DeadLetters
) -> None:
    consumer = make_consumer(sqlite_engine, dead_letters, types={"application.amended"})
    env = envelope()
    assert await consumer.process(record(catalog.encode(env))) is Outcome.IGNORED
    assert await counter(sqlite_engine, env.subject) == 0
    assert dead_letters.records == []


async def test_a_type_header_of_another_type_skips_the_record_without_decoding_it(
    sqlite_engine: AsyncEngine, dead_letters: DeadLetters
) -> None:
    decoded: list[bytes] = []

    def decode(raw: bytes, type_hint: str | None) -> Any:
        decoded.append(raw)
        return decode_envelope(raw, type_hint)

    consumer = make_consumer(
        sqlite_engine, dead_letters, types={"application.amended"}, decode=decode
    )
    other, mine = envelope(), envelope(message_type="application.amended")
    outcomes = await consumer.process_batch(
        [
            record(catalog.encode(other), 0, tuple(other.headers())),
            record(catalog.encode(mine), 1, tuple(mine.headers())),
            # No header: decoded, then skipped by its body's type, as before.
            record(catalog.encode(other), 2),
            # A type the catalogue does not know: decoded, and dead-lettered with its reason.
            record(b"{not json", 3, (("type", b"application.unheard_of"),)),
        ]
    )
    assert outcomes == [
        Outcome.IGNORED,
        Outcome.PROCESSED,
        Outcome.IGNORED,
        Outcome.DEAD_LETTERED,
    ]
    assert decoded == [catalog.encode(mine), catalog.encode(other), b"{not json"]
    assert len(dead_letters.records) == 1


async def test_failing_dead_letter_publish_propagates(sqlite_engine: AsyncEngine) -> None:
    async def broker_down(records: Sequence[Record]) -> None:
        raise ConnectionError("broker down")

    consumer = make_consumer(sqlite_engine, broker_down)
    # Never swallowed: FastStream sees the error and rewinds to the record.
    with pytest.raises(ConnectionError):
        await consumer.process(record(b"garbage"))


async def test_subscriber_wiring_with_test_broker(
    sqlite_engine: AsyncEngine, dead_letters: DeadLetters
) -> None:
    broker = KafkaBroker("127.0.0.1:1")  # never contacted: TestKafkaBroker patches it
    consumer = make_consumer(sqlite_engine, dead_letters)
    subscribe(broker, consumer, TOPIC, group_id="unit")
    env = envelope()
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(catalog.encode(env), TOPIC, key=env.subject.encode())
        await test_broker.publish(catalog.encode(env), TOPIC, key=env.subject.encode())
        await test_broker.publish(b"poison", TOPIC, headers={"origin": "fuzzer"})
        other = envelope()
        await test_broker.publish(catalog.encode(other), TOPIC)
    assert await counter(sqlite_engine, env.subject) == 1
    assert await counter(sqlite_engine, other.subject) == 1
    (dlq,) = dead_letters.records
    assert dlq.value == b"poison"
    assert ("origin", b"fuzzer") in parse_dead_letter(dlq.headers).original_headers


def test_asyncapi_documents_the_envelope_schemas() -> None:
    from faststream.specification import AsyncAPI

    broker = KafkaBroker("127.0.0.1:1")

    async def noop(incoming: Incoming, uow: UnitOfWork) -> None:
        return None

    consumer = IdempotentConsumer(
        "docs",
        noop,
        uow_factory=None,  # type: ignore[arg-type]
        dead_letters=None,  # type: ignore[arg-type]
        types={"application.submitted", "application.amended"},
    )
    subscribe(broker, consumer, "applications.events", group_id="docs")
    schemas = AsyncAPI(broker).to_specification().to_jsonable()["components"]["schemas"]
    assert "Envelope_ApplicationSubmitted_" in schemas
    assert "Envelope_ApplicationAmended_" in schemas
    assert "Envelope_ZoneAllocated_" not in schemas
