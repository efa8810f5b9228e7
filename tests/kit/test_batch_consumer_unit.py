"""The batch path of the idempotent consumer, on SQLite with an in-memory dead-letter sink.

Splits around failing messages, the retry of a batch whose commit fails (and the fallback to one
message at a time), deduplication inside one batch and across batches, handlers that try to
commit, and the one-statement processed marks.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import catalog
from services.kit.consumer import Handler, IdempotentConsumer, Incoming, Outcome
from services.kit.db import create_session_factory
from services.kit.dlq import ConsumedRecord, parse_dead_letter
from services.kit.errors import BusinessRefusal, RetryableError
from services.kit.messaging import Record
from services.kit.retry import RetryPolicy
from services.kit.uow import UnitOfWork, UnitOfWorkFactory
from tests.kit.helpers import counter, envelope, increment_counter, scalar

FAST = RetryPolicy(initial_delay=0.0, max_delay=0.0, jitter=0.0)
TOPIC = "unit.batch"


class DeadLetters:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def __call__(self, records: Sequence[Record]) -> None:
        self.records.extend(records)

    def reasons(self) -> list[str]:
        return [parse_dead_letter(r.headers).reason for r in self.records]


def records(*values: bytes, partition: int = 0) -> list[ConsumedRecord]:
    return [
        ConsumedRecord(topic=TOPIC, partition=partition, offset=i, key=b"k", value=v)
        for i, v in enumerate(values)
    ]


class CountingHandler:
    """increment_counter, plus scripted failures per subject, counting every invocation."""

    def __init__(self, refuse: Sequence[str] = (), transient_once: Sequence[str] = ()) -> None:
        self.refuse = set(refuse)
        self.transient_once = set(transient_once)
        self.calls: Counter[str] = Counter()

    async def __call__(self, incoming: Incoming, uow: UnitOfWork) -> None:
        subject = incoming.envelope.subject
        self.calls[subject] += 1
        await increment_counter(incoming, uow)
        if subject in self.refuse:
            raise BusinessRefusal(f"{subject} refused")
        if subject in self.transient_once and self.calls[subject] == 1:
            raise RetryableError("lock timeout")


def make_consumer(
    engine: AsyncEngine,
    handler: Handler,
    dead: DeadLetters,
    uow_factory: Any = None,
    **kwargs: Any,
) -> IdempotentConsumer:
    return IdempotentConsumer(
        "unit",
        handler,
        uow_factory=uow_factory or UnitOfWorkFactory(create_session_factory(engine)),
        dead_letters=dead,
        retry=FAST,
        **kwargs,
    )


async def test_a_failing_message_is_isolated_and_the_rest_commit_once(
    sqlite_engine: AsyncEngine,
) -> None:
    g1, refused, g2, flaky, g3 = (envelope() for _ in range(5))
    handler = CountingHandler(refuse=[refused.subject], transient_once=[flaky.subject])
    dead = DeadLetters()
    consumer = make_consumer(sqlite_engine, handler, dead)
    batch = records(*(catalog.encode(e) for e in (g1, refused, g2, flaky, g3)))

    outcomes = await consumer.process_batch(batch)

    assert outcomes == [
        Outcome.PROCESSED,
        Outcome.DEAD_LETTERED,
        Outcome.PROCESSED,
        Outcome.PROCESSED,
        Outcome.PROCESSED,
    ]
    for env in (g1, g2, flaky, g3):
        assert await counter(sqlite_engine, env.subject) == 1
    assert await counter(sqlite_engine, refused.subject) == 0  # rolled back with the refusal
    assert await scalar(sqlite_engine, "SELECT count(*) FROM processed_messages") == 4
    assert dead.reasons() == ["business_refusal"]
    assert parse_dead_letter(dead.records[0].headers).source_offset == 1
    # The messages before a failure ran again (their first run was rolled back); the refused
    # one ran once (final errors are not retried); the flaky one twice (batch, then alone).
    assert handler.calls == {
        g1.subject: 2,
        refused.subject: 1,
        g2.subject: 2,
        flaky.subject: 2,
        g3.subject: 1,
    }


async def test_duplicates_inside_a_batch_and_across_batches_change_state_once(
    sqlite_engine: AsyncEngine,
) -> None:
    a, b = envelope(), envelope()
    raw_a, raw_b = catalog.encode(a), catalog.encode(b)
    consumer = make_consumer(sqlite_engine, increment_counter, DeadLetters())

    first = await consumer.process_batch(records(raw_a, raw_a, raw_b, raw_a))
    again = await consumer.process_batch(records(raw_b, raw_a))

    assert first == [Outcome.PROCESSED, Outcome.DUPLICATE, Outcome.PROCESSED, Outcome.DUPLICATE]
    assert again == [Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert await counter(sqlite_engine, a.subject) == 1
    assert await counter(sqlite_engine, b.subject) == 1
    assert await scalar(sqlite_engine, "SELECT count(*) FROM processed_messages") == 2


class FailingUnits(UnitOfWorkFactory):
    """Units of work whose first ``failures`` calls of ``method`` raise, as a dropped
    connection would (``commit``, or the staged-row write ``_flush_staged``)."""

    def __init__(self, engine: AsyncEngine, failures: int, method: str = "commit") -> None:
        super().__init__(create_session_factory(engine))
        self.failures = failures
        self.method = method
        self.calls = 0

    def __call__(self) -> UnitOfWork:
        uow = super().__call__()
        original = getattr(uow, self.method)

        async def failing() -> None:
            self.calls += 1
            if self.calls <= self.failures:
                raise ConnectionError("server closed the connection unexpectedly")
            await original()

        setattr(uow, self.method, failing)
        return uow


@pytest.mark.parametrize(
    ("failures", "commits"),
    [
        (1, 2),  # the batch is retried and commits on its second attempt
        # A transient failure is waited out: the batch is retried until it commits, however
        # many attempts that takes, and never given up on or dead-lettered.
        (12, 13),
    ],
)
async def test_a_batch_whose_commit_fails_is_retried_then_split(
    sqlite_engine: AsyncEngine, failures: int, commits: int
) -> None:
    envs = [envelope() for _ in range(3)]
    uow_factory = FailingUnits(sqlite_engine, failures)
    dead = DeadLetters()
    consumer = make_consumer(sqlite_engine, increment_counter, dead, uow_factory=uow_factory)

    outcomes = await consumer.process_batch(records(*(catalog.encode(e) for e in envs)))

    assert outcomes == [Outcome.PROCESSED] * 3
    assert uow_factory.calls == commits
    for env in envs:
        assert await counter(sqlite_engine, env.subject) == 1
    assert dead.records == []


async def test_a_handler_that_commits_cannot_lose_the_rest_of_its_batch(
    sqlite_engine: AsyncEngine,
) -> None:
    rogue, after = envelope(), envelope()

    async def handler(incoming: Incoming, uow: UnitOfWork) -> None:
        await increment_counter(incoming, uow)
        if incoming.envelope.subject == rogue.subject:
            await uow.commit()  # forbidden: would make the whole batch's marks durable now

    consumer = make_consumer(sqlite_engine, handler, DeadLetters())
    outcomes = await consumer.process_batch(records(catalog.encode(rogue), catalog.encode(after)))

    # Refused inside the batch; alone, the rogue commit goes through and the consumer's own
    # second commit is refused and retried, which then finds the message marked.
    assert outcomes == [Outcome.DUPLICATE, Outcome.PROCESSED]
    assert await counter(sqlite_engine, rogue.subject) == 1
    assert await counter(sqlite_engine, after.subject) == 1


async def test_poison_ignored_and_good_records_in_one_batch(sqlite_engine: AsyncEngine) -> None:
    good = envelope()
    other = envelope(message_type="application.amended")
    dead = DeadLetters()
    consumer = make_consumer(
        sqlite_engine, increment_counter, dead, types={"application.submitted"}
    )

    outcomes = await consumer.process_batch(
        records(b"garbage", catalog.encode(other), catalog.encode(good), b"{}")
    )

    assert outcomes == [
        Outcome.DEAD_LETTERED,
        Outcome.IGNORED,
        Outcome.PROCESSED,
        Outcome.DEAD_LETTERED,
    ]
    assert dead.reasons() == ["undecodable", "schema_invalid"]
    assert [r.value for r in dead.records] == [b"garbage", b"{}"]
    assert await counter(sqlite_engine, good.subject) == 1


async def test_failing_dead_letter_publish_fails_the_batch(sqlite_engine: AsyncEngine) -> None:
    async def broker_down(_records: Sequence[Record]) -> None:
        raise ConnectionError("broker down")

    good = envelope()
    consumer = IdempotentConsumer(
        "unit",
        increment_counter,
        uow_factory=UnitOfWorkFactory(create_session_factory(sqlite_engine)),
        dead_letters=broker_down,
        retry=FAST,
    )
    # The caller must not commit the offsets: the batch is redelivered, and the good message,
    # already committed, is then a duplicate.
    with pytest.raises(ConnectionError):
        await consumer.process_batch(records(catalog.encode(good), b"garbage"))
    assert await counter(sqlite_engine, good.subject) == 1


async def test_mark_processed_many_returns_only_new_ids(sqlite_engine: AsyncEngine) -> None:
    uow_factory = UnitOfWorkFactory(create_session_factory(sqlite_engine))
    # More than one page of SQLAlchemy's multi-row VALUES (1,000 rows), old ids on both pages.
    ids = [uuid.uuid4() for _ in range(2500)]
    async with uow_factory() as uow:
        assert await uow.mark_processed_many("c", ids[:400]) == set(ids[:400])
        assert await uow.mark_processed_many("c", ids[1200:1400]) == set(ids[1200:1400])
        assert await uow.mark_processed_many("c", []) == set()
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.mark_processed_many("c", ids) == set(ids[400:1200] + ids[1400:])
        assert await uow.mark_processed_many("other", ids[:3]) == set(ids[:3])
        await uow.commit()
    assert await scalar(sqlite_engine, "SELECT count(*) FROM processed_messages") == 2503


def test_lanes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="lanes"):
        IdempotentConsumer(
            "x",
            increment_counter,
            uow_factory=None,  # type: ignore[arg-type]
            dead_letters=DeadLetters(),
            lanes=0,
        )
