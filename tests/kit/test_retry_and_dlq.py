"""Transient failures waited out with capped backoff, and the dead-letter record format."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from services.kit import retry
from services.kit.dlq import ConsumedRecord, dead_letter, dlq_topic, parse_dead_letter
from services.kit.errors import (
    BusinessRefusal,
    DependencyUnavailable,
    Reason,
    RetryableError,
    StillWaiting,
)
from services.kit.retry import Retrier, RetryPolicy, call_with_retries
from tests.kit.helpers import RecordingLog

FAST = RetryPolicy(initial_delay=0.05, max_delay=0.2, jitter=0.0)
#: Holds only briefly: a test of the hand-back, not of the patience.
BRIEF = RetryPolicy(initial_delay=0.01, max_delay=0.02, jitter=0.0, hold=0.3)


async def test_transient_failures_are_retried_with_growing_delays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logs = RecordingLog()
    monkeypatch.setattr(retry, "log", logs)
    calls: list[float] = []

    async def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RetryableError("database restarting")
        return "done"

    assert await call_with_retries(FAST, flaky) == "done"
    assert len(calls) == 3
    # The waits the policy asked for double (exponential, not constant); measured gaps are
    # at least those (a loaded machine only lengthens them, so only the floor is checked).
    delays = [e["delay_s"] for e in logs.entries if e["event"].startswith("transient")]
    assert delays == [0.05, 0.1]
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert all(gap >= delay - 0.005 for gap, delay in zip(gaps, delays, strict=True))


async def test_final_errors_are_not_retried() -> None:
    calls = 0

    async def refuses() -> None:
        nonlocal calls
        calls += 1
        raise BusinessRefusal("over budget")

    with pytest.raises(BusinessRefusal):
        await call_with_retries(FAST, refuses)
    assert calls == 1


async def test_a_transient_failure_is_waited_out_however_many_attempts_it_takes() -> None:
    calls = 0
    heard: list[int] = []

    async def down_for_a_while() -> str:
        nonlocal calls
        calls += 1
        if calls < 40:  # far beyond any attempt budget the policy used to have
            raise ConnectionError("connection refused")
        return "done"

    policy = RetryPolicy(initial_delay=0.001, max_delay=0.002, jitter=0.0, hold=None)
    result = await Retrier(policy).call(down_for_a_while, on_retry=lambda _e, n: heard.append(n))
    assert result == "done"
    assert calls == 40
    assert heard == list(range(1, 40))  # told of every failed attempt before its pause


async def test_backoff_is_capped() -> None:
    calls: list[float] = []

    async def down() -> str:
        calls.append(time.monotonic())
        if len(calls) < 8:
            raise RetryableError("still down")
        return "done"

    policy = RetryPolicy(initial_delay=0.01, max_delay=0.04, jitter=0.0, hold=None)
    assert await Retrier(policy).call(down) == "done"
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert max(gaps[3:]) < 0.04 * 3  # doubling stopped at the cap (with room for a busy host)


async def test_after_the_hold_the_caller_is_told_to_try_again_later() -> None:
    async def down() -> None:
        raise DependencyUnavailable("rail away", dependency="rail")

    with pytest.raises(StillWaiting) as caught:
        await Retrier(BRIEF).call(down)
    assert caught.value.dependency == "rail"
    assert isinstance(caught.value.__cause__, DependencyUnavailable)
    assert caught.value.retryable  # not a final error: nothing may dead-letter it
    assert caught.value.reason is not Reason.RETRIES_EXHAUSTED


def test_policy_needs_a_positive_hold_and_ordered_delays() -> None:
    with pytest.raises(ValueError, match="hold"):
        RetryPolicy(hold=0)
    with pytest.raises(ValueError, match="delay"):
        RetryPolicy(initial_delay=1.0, max_delay=0.5)


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
    retried = 0

    async def down() -> None:
        nonlocal retried
        retried += 1
        raise RetryableError("still down")

    with pytest.raises(StillWaiting):
        await Retrier(BRIEF).call(down, failed=RetryableError("down in the batch"))
    assert retried >= 1  # retried after the batch's failure, until the hold ran out
