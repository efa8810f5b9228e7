"""Bounded retries with backoff, and the dead-letter record format."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.kit.dlq import ConsumedRecord, dead_letter, dlq_topic, parse_dead_letter
from services.kit.errors import BusinessRefusal, Reason, RetriesExhausted, RetryableError
from services.kit.retry import Retrier, RetryPolicy, call_with_retries

FAST = RetryPolicy(attempts=4, initial_delay=0.05, max_delay=0.2, jitter=0.0)


async def test_transient_failures_are_retried_with_growing_delays() -> None:
    calls: list[float] = []

    async def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RetryableError("database restarting")
        return "done"

    assert await call_with_retries(FAST, flaky) == "done"
    assert len(calls) == 3
    first_gap, second_gap = calls[1] - calls[0], calls[2] - calls[1]
    assert first_gap >= 0.04
    assert second_gap >= first_gap * 1.5  # exponential, not constant


async def test_final_errors_are_not_retried() -> None:
    calls = 0

    async def refuses() -> None:
        nonlocal calls
        calls += 1
        raise BusinessRefusal("over budget")

    with pytest.raises(BusinessRefusal):
        await call_with_retries(FAST, refuses)
    assert calls == 1


async def test_exhaustion_wraps_the_last_error() -> None:
    async def down() -> None:
        raise ConnectionError("connection refused")

    with pytest.raises(RetriesExhausted) as caught:
        await call_with_retries(FAST, down)
    assert caught.value.attempts == 4
    assert isinstance(caught.value.last_error, ConnectionError)
    assert caught.value.__cause__ is caught.value.last_error
    assert caught.value.reason is Reason.RETRIES_EXHAUSTED


def test_policy_needs_an_attempt() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


def test_dead_letter_keeps_original_bytes_and_headers() -> None:
    record = ConsumedRecord(
        topic="applications.events",
        partition=2,
        offset=41,
        key=b"app_1",
        value=b"\xff\x00 not json",
        headers=(("event_id", b"e-1"), ("dlq.reason", b"stale")),
        timestamp_ms=1_700_000_000_000,
    )
    dlq = dead_letter(
        record,
        reason=Reason.UNDECODABLE,
        error=ValueError("bad bytes"),
        consumer="eligibility",
        attempts=1,
    )
    assert dlq.topic == dlq_topic("applications.events") == "applications.events.dlq"
    assert (dlq.key, dlq.value) == (b"app_1", b"\xff\x00 not json")
    info = parse_dead_letter(dlq.headers)
    assert info.reason == "undecodable"
    assert info.error == "bad bytes"
    assert info.error_type == "builtins.ValueError"
    assert info.consumer == "eligibility"
    assert (info.source_topic, info.source_partition, info.source_offset) == (
        "applications.events",
        2,
        41,
    )
    assert info.attempts == 1
    # Earlier dlq.* headers (from a replayed dead letter) are replaced, originals kept.
    assert info.original_headers == (("event_id", b"e-1"),)
    assert dict(dlq.headers)["dlq.source.timestamp_ms"] == b"1700000000000"


def test_dead_letter_truncates_huge_error_messages() -> None:
    record = ConsumedRecord(topic="t", partition=0, offset=0, key=None, value=b"x")
    dlq = dead_letter(
        record,
        reason=Reason.SCHEMA_INVALID,
        error=ValueError("e" * 100_000),
        consumer="c",
        attempts=1,
    )
    assert len(dict(dlq.headers)["dlq.error"]) == 4096


async def test_cancellation_is_never_retried() -> None:
    calls = 0
    started, never = asyncio.Event(), asyncio.Event()

    async def slow() -> None:
        nonlocal calls
        calls += 1
        started.set()
        await never.wait()

    task = asyncio.create_task(Retrier(FAST).call(slow))
    await asyncio.wait_for(started.wait(), 10)  # cancelled inside the attempt, not before it
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1  # a shutdown, or a sibling lane failing, ends the call at once


async def test_an_earlier_failure_counts_as_the_first_attempt() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RetryableError("still down")
        return "done"

    retrier = Retrier(FAST)
    assert await retrier.call(flaky, failed=RetryableError("down in the batch")) == "done"
    assert calls == 3
    with pytest.raises(BusinessRefusal):  # a final first failure is not retried at all
        await retrier.call(flaky, failed=BusinessRefusal("refused in the batch"))
    calls = -10
    with pytest.raises(RetriesExhausted) as caught:
        await retrier.call(flaky, failed=RetryableError("down in the batch"))
    assert caught.value.attempts == FAST.attempts
    assert calls == -10 + FAST.attempts - 1
