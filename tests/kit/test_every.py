"""The kit's background job loop: again at once after work, after the interval when idle,
and on after a failure (logged)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import pytest

from services.kit import retry
from services.kit.retry import every
from tests.kit.helpers import RecordingLog


async def test_a_job_runs_again_at_once_after_work_and_survives_a_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logs = RecordingLog()
    monkeypatch.setattr(retry, "log", logs)
    results: list[int | Exception] = [2, 1, RuntimeError("database away"), 0, 3, 0]
    calls: list[float] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def job() -> int:
        calls.append(loop.time())
        outcome = results[len(calls) - 1] if len(calls) <= len(results) else 0
        if len(calls) == len(results):
            done.set()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    # An idle round (0) or a failure waits the interval; a round with work goes on at once.
    task = asyncio.create_task(every("test job", 0.2, job))
    try:
        await asyncio.wait_for(done.wait(), timeout=10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    # after 2 and 1: at once; after the failure and after 0: the interval; after 3: at once
    assert [gap >= 0.2 for gap in gaps[:5]] == [False, False, True, True, False]
    assert [(entry["event"], entry["error"]) for entry in logs.entries] == [
        ("test job failed", "RuntimeError: database away")
    ]
