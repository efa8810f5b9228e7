"""Staged writes and batch handlers: rows collected per table, written with one statement.

The unit of work's ``insert``/``insert_once``/``upsert`` on SQLite and PostgreSQL (what reaches
the database, how many statements, which outbox rows survive), ``load_many``, and the consumer
calling a batch handler's ``preload`` with its failure isolation kept: a final error dead-letters
only its own message, a transient one is retried and never dead-lettered.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import catalog
from services.kit.consumer import IdempotentConsumer, Incoming, Outcome
from services.kit.db import create_session_factory
from services.kit.errors import BusinessRefusal
from services.kit.retry import RetryPolicy
from services.kit.uow import UnitOfWork, UnitOfWorkError, UnitOfWorkFactory
from tests.kit.helpers import COUNTERS, counter, envelope, scalar
from tests.kit.test_batch_consumer_unit import DeadLetters, FailingUnits, records

FAST = RetryPolicy(initial_delay=0.0, max_delay=0.0, jitter=0.0)


@pytest.fixture(
    params=[
        "sqlite",
        # Fetched by name below, so the tiers cannot see it from the fixture: marked here.
        pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.integration]),
    ]
)
def engine(request: pytest.FixtureRequest) -> AsyncEngine:
    """Each test on the embedded default and on PostgreSQL."""
    name = "sqlite_engine" if request.param == "sqlite" else "pg_engine"
    found: AsyncEngine = request.getfixturevalue(name)
    return found


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements sent while the block runs (an executemany counts once)."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


def _writes_to(sent: Sequence[str], table: str) -> list[str]:
    return [s for s in sent if s.lstrip().upper().startswith("INSERT") and table in s]


async def _values(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(COUNTERS.c.subject, COUNTERS.c.value))
        return {row.subject: row.value for row in rows}


async def test_staged_rows_are_written_at_commit_with_one_statement_per_table(
    engine: AsyncEngine,
) -> None:
    uow_factory = UnitOfWorkFactory(create_session_factory(engine))
    subjects = [f"s{i:03d}" for i in range(200)]
    with statements(engine) as sent:
        async with uow_factory() as uow:
            for subject in subjects:
                uow.insert(COUNTERS, {"subject": subject, "value": 1})
            assert uow.staged_count == 200
            assert await counter(engine, subjects[0]) == 0  # nothing written before the commit
            await uow.commit()
    assert await _values(engine) == dict.fromkeys(subjects, 1)
    assert len(_writes_to(sent, "test_counters")) == 1


async def test_writes_registered_before_commit_run_once_at_commit_before_the_staged_rows(
    engine: AsyncEngine,
) -> None:
    uow_factory = UnitOfWorkFactory(create_session_factory(engine))
    ran: list[str] = []
    async with uow_factory() as uow:
        decided = {"a": 1}

        async def write() -> None:
            ran.append("write")
            # What the batch decided in memory, staged last: it is still written at commit.
            for subject, value in decided.items():
                uow.insert(COUNTERS, {"subject": subject, "value": value})

        uow.before_commit(write)
        uow.insert(COUNTERS, {"subject": "staged", "value": 2})
        decided["b"] = 3  # decided after the registration: the write sees it
        assert ran == []
        await uow.commit()
    assert ran == ["write"]
    assert await _values(engine) == {"staged": 2, "a": 1, "b": 3}

    async with uow_factory() as uow:
        uow.before_commit(write)
        await uow.rollback()
    with pytest.raises(UnitOfWorkError):
        await uow.commit()
    assert ran == ["write"]  # a rolled-back unit forgets its writes


async def test_upsert_keeps_the_last_row_per_key_and_updates_existing_rows(
    engine: AsyncEngine,
) -> None:
    uow_factory = UnitOfWorkFactory(create_session_factory(engine))
    async with uow_factory() as uow:
        uow.insert(COUNTERS, {"subject": "old", "value": 1})
        await uow.commit()
    with statements(engine) as sent:
        async with uow_factory() as uow:
            for value in (2, 3, 4):
                uow.upsert(COUNTERS, {"subject": "old", "value": value}, key=("subject",))
            uow.upsert(COUNTERS, {"subject": "new", "value": 7}, key=("subject",))
            assert uow.staged_count == 2
            await uow.commit()
    assert await _values(engine) == {"old": 4, "new": 7}
    assert len(_writes_to(sent, "test_counters")) == 1


async def test_insert_once_publishes_only_for_new_rows_and_keeps_outbox_order(
    engine: AsyncEngine,
) -> None:
    uow_factory = UnitOfWorkFactory(create_session_factory(engine))
    async with uow_factory() as uow:
        uow.insert(COUNTERS, {"subject": "exists", "value": 1})
        await uow.commit()
    first, exists, again, plain, new = (envelope() for _ in range(5))
    async with uow_factory() as uow:
        uow.insert_once(
            COUNTERS, {"subject": "a", "value": 1}, key=("subject",), outbox=[(first, "t")]
        )
        uow.insert_once(
            COUNTERS, {"subject": "exists", "value": 9}, key=("subject",), outbox=[(exists, "t")]
        )
        # The same key again in this unit: a duplicate, it and its message are dropped.
        uow.insert_once(
            COUNTERS, {"subject": "a", "value": 5}, key=("subject",), outbox=[(again, "t")]
        )
        uow.add_outbox(plain, "t")
        uow.insert_once(
            COUNTERS, {"subject": "b", "value": 2}, key=("subject",), outbox=[(new, "t")]
        )
        await uow.commit()
    assert await _values(engine) == {"exists": 1, "a": 1, "b": 2}
    async with engine.connect() as conn:
        published = list(await conn.scalars(sa.text("SELECT event_id FROM outbox ORDER BY id")))
    assert [uuid.UUID(str(e)) for e in published] == [
        first.event_id,
        plain.event_id,
        new.event_id,
    ]


async def test_staged_rows_are_discarded_without_a_commit(engine: AsyncEngine) -> None:
    uow_factory = UnitOfWorkFactory(create_session_factory(engine))
    async with uow_factory() as uow:
        uow.upsert(COUNTERS, {"subject": "gone", "value": 1}, key=("subject",))
    assert await _values(engine) == {}


async def test_keyed_staging_needs_a_key(engine: AsyncEngine) -> None:
    uow_factory = UnitOfWorkFactory(create_session_factory(engine))
    async with uow_factory() as uow:
        with pytest.raises(UnitOfWorkError):
            uow.upsert(COUNTERS, {"subject": "x", "value": 1}, key=())
    with pytest.raises(UnitOfWorkError):
        UnitOfWorkFactory(create_session_factory(engine))().insert(COUNTERS, {"subject": "x"})


async def test_load_many_reads_the_rows_of_many_keys_in_one_statement(engine: AsyncEngine) -> None:
    uow_factory = UnitOfWorkFactory(create_session_factory(engine))
    async with uow_factory() as uow:
        for i in range(5):
            uow.insert(COUNTERS, {"subject": f"k{i}", "value": i})
        await uow.commit()
    with statements(engine) as sent:
        async with uow_factory() as uow:
            rows = await uow.load_many(COUNTERS, "subject", ["k4", "k1", "missing"], lock=True)
            assert await uow.load_many(COUNTERS, "subject", []) == []
    assert sorted((row.subject, row.value) for row in rows) == [("k1", 1), ("k4", 4)]
    assert len([s for s in sent if s.lstrip().upper().startswith("SELECT")]) == 1
    if engine.dialect.name == "postgresql":
        assert any("FOR UPDATE" in s for s in sent)


class BatchCounter:
    """A batch handler: preload the counters, decide from the memo, stage absolute values."""

    def __init__(self, refuse_in_preload: Sequence[str] = ()) -> None:
        self.refuse_in_preload = set(refuse_in_preload)
        self.preloads: list[list[str]] = []
        self.calls = 0

    async def preload(self, batch: Sequence[Incoming], uow: UnitOfWork) -> None:
        subjects = [incoming.envelope.subject for incoming in batch]
        self.preloads.append(subjects)
        refused = self.refuse_in_preload.intersection(subjects)
        if refused:
            raise BusinessRefusal(f"{sorted(refused)} refused")
        rows = await uow.load_many(COUNTERS, "subject", subjects, lock=True)
        uow.memo["values"] = {row.subject: row.value for row in rows}

    async def __call__(self, incoming: Incoming, uow: UnitOfWork) -> None:
        self.calls += 1
        subject = incoming.envelope.subject
        values: dict[str, int] = uow.memo["values"]
        value = values[subject] = values.get(subject, 0) + 1
        uow.upsert(COUNTERS, {"subject": subject, "value": value}, key=("subject",))


def _consumer(engine: AsyncEngine, handler: Any, dead: DeadLetters, **kwargs: Any) -> Any:
    return IdempotentConsumer(
        "staged",
        handler,
        uow_factory=kwargs.pop("uow_factory", None)
        or UnitOfWorkFactory(create_session_factory(engine)),
        dead_letters=dead,
        retry=FAST,
        **kwargs,
    )


async def test_a_batch_handler_is_preloaded_once_per_batch_with_its_new_messages(
    engine: AsyncEngine,
) -> None:
    a1, a2, b1 = (envelope("app_a"), envelope("app_a"), envelope("app_b"))
    handler = BatchCounter()
    dead = DeadLetters()
    consumer = _consumer(engine, handler, dead)
    raw = [catalog.encode(e) for e in (a1, a2, b1)]

    with statements(engine) as sent:
        first = await consumer.process_batch(records(raw[0], raw[1], raw[0], raw[2]))
    again = await consumer.process_batch(records(raw[2], raw[0]))

    assert first == [Outcome.PROCESSED, Outcome.PROCESSED, Outcome.DUPLICATE, Outcome.PROCESSED]
    assert again == [Outcome.DUPLICATE, Outcome.DUPLICATE]
    # Duplicates are not preloaded; the second batch had nothing new, so no preload at all.
    assert handler.preloads == [["app_a", "app_a", "app_b"]]
    assert await _values(engine) == {"app_a": 2, "app_b": 1}
    assert len(_writes_to(sent, "test_counters")) == 1
    assert dead.records == []


async def test_a_final_error_in_preload_dead_letters_only_its_own_message(
    engine: AsyncEngine,
) -> None:
    good1, bad, good2 = envelope("app_good1"), envelope("app_bad"), envelope("app_good2")
    handler = BatchCounter(refuse_in_preload=["app_bad"])
    dead = DeadLetters()
    consumer = _consumer(engine, handler, dead)

    outcomes = await consumer.process_batch(
        records(*(catalog.encode(e) for e in (good1, bad, good2)))
    )

    assert outcomes == [Outcome.PROCESSED, Outcome.DEAD_LETTERED, Outcome.PROCESSED]
    assert dead.reasons() == ["business_refusal"]
    assert await _values(engine) == {"app_good1": 1, "app_good2": 1}
    assert await scalar(engine, "SELECT count(*) FROM processed_messages") == 2
    # The batch, then each message alone.
    assert handler.preloads == [
        ["app_good1", "app_bad", "app_good2"],
        ["app_good1"],
        ["app_bad"],
        ["app_good2"],
    ]


async def test_a_transient_error_writing_staged_rows_is_retried_never_dead_lettered(
    engine: AsyncEngine,
) -> None:
    envs = [envelope() for _ in range(3)]
    handler = BatchCounter()
    dead = DeadLetters()
    # More failures than one batch's budget: the batch gives up, then each message commits.
    uow_factory = FailingUnits(engine, failures=4, method="_flush_staged")
    consumer = _consumer(engine, handler, dead, uow_factory=uow_factory)

    outcomes = await consumer.process_batch(records(*(catalog.encode(e) for e in envs)))

    assert outcomes == [Outcome.PROCESSED] * 3
    assert dead.records == []
    assert await _values(engine) == {e.subject: 1 for e in envs}
    assert await scalar(engine, "SELECT count(*) FROM processed_messages") == 3
