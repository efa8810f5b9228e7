"""Waiting for a dependency: until it answers, with one warning line and one recovery line."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from services.kit.logging import configure_logging
from services.kit.retry import wait_until_available


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


async def test_several_failures_make_one_warning_and_one_recovery_line() -> None:
    buffer = io.StringIO()
    configure_logging("tests", "INFO", stream=buffer)
    attempts = 0

    async def probe() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 4:
            raise ConnectionRefusedError(f"attempt {attempts} refused")
        return "up"

    assert await wait_until_available(probe, name="thing 127.0.0.1:1", interval=0) == "up"
    assert attempts == 4
    logged = [(r["level"], r["event"]) for r in lines(buffer)]
    assert logged == [
        ("warning", "thing 127.0.0.1:1 not reachable yet, retrying"),
        ("info", "thing 127.0.0.1:1 reachable"),
    ]
    assert lines(buffer)[0]["error"] == "ConnectionRefusedError: attempt 1 refused"


async def test_an_answer_at_once_logs_nothing() -> None:
    buffer = io.StringIO()
    configure_logging("tests", "INFO", stream=buffer)

    async def probe() -> int:
        return 1

    assert await wait_until_available(probe, name="thing", interval=0) == 1
    assert lines(buffer) == []


async def test_a_deadline_raises_the_last_error() -> None:
    attempts = 0

    async def probe() -> None:
        nonlocal attempts
        attempts += 1
        raise TimeoutError(f"attempt {attempts}")

    with pytest.raises(TimeoutError) as info:
        await wait_until_available(probe, name="thing", interval=0.01, deadline=0.05)
    assert str(info.value) == f"attempt {attempts}"
    assert attempts >= 2


async def test_cancelling_ends_the_wait() -> None:
    failing = asyncio.Event()

    async def probe() -> None:
        failing.set()
        raise ConnectionError("down")

    task = asyncio.create_task(wait_until_available(probe, name="thing", interval=3600))
    await failing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_lambda_returning_a_coroutine_is_awaited() -> None:
    attempts = 0

    async def connect() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 2:
            raise ConnectionError("down")
        return "client"

    assert await wait_until_available(lambda: connect(), name="thing", interval=0) == "client"
    assert attempts == 2
