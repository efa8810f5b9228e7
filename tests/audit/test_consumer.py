"""The log consumer: raw records in, retried until stored (a storage failure is never final)."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from services.audit import consumer as consumer_module
from services.audit.consumer import LogConsumer, logged_topics, raw_record
from services.audit.store import AppendResult
from services.kit.dlq import ConsumedRecord
from tests.audit.helpers import record


class FlakyWriter:
    """Fails ``failures`` times (a database outage), then stores."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.stored: list[ConsumedRecord] = []

    async def append(self, records: Sequence[ConsumedRecord]) -> AppendResult:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionRefusedError("database down")
        self.stored.extend(records)
        return AppendResult(appended=len(records), duplicates=0, tree_size=len(self.stored))


async def test_storage_failures_are_retried_until_the_batch_is_stored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consumer_module, "INITIAL_DELAY_S", 0.0)
    waits: list[str | None] = []
    writer = FlakyWriter(failures=3)
    log_consumer = LogConsumer(writer)  # type: ignore[arg-type]
    original_sleep = consumer_module.asyncio.sleep

    async def observe(delay: float) -> None:
        waits.append(log_consumer.waiting_for)
        await original_sleep(0)

    monkeypatch.setattr(consumer_module.asyncio, "sleep", observe)
    batch = [record(n) for n in range(5)]
    result = await log_consumer.handle(batch)
    assert result.appended == 5
    assert writer.calls == 4
    assert writer.stored == batch
    assert waits == ["database: ConnectionRefusedError"] * 3  # /health names what it waits for
    assert log_consumer.waiting_for is None


def test_raw_records_keep_exact_bytes() -> None:
    kafka: Any = SimpleNamespace(
        topic="zones.events.dlq",
        partition=2,
        offset=9,
        key=None,
        value=None,
        headers=[("dlq.reason", b"undecodable"), ("empty", None)],
        timestamp=123,
    )
    converted = raw_record(kafka)
    assert converted.value == b""
    assert converted.key is None
    assert converted.headers == (("dlq.reason", b"undecodable"), ("empty", b""))
    kafka.value = b"\xff\x00"
    assert raw_record(kafka).value == b"\xff\x00"


def test_every_topic_and_dead_letter_twin_is_logged() -> None:
    from contracts.topics import TOPICS

    topics = set(logged_topics())
    for topic in TOPICS:
        assert {topic.name, topic.dlq} <= topics
