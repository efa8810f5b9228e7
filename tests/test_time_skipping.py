"""``tests.time_skipping``: the test server's start-up timeout is tried again, nothing else is."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, cast

import pytest
from temporalio.testing import WorkflowEnvironment

from tests import time_skipping
from tests.time_skipping import (
    ATTEMPTS,
    STARTUP_TIMEOUT,
    is_startup_timeout,
    start_time_skipping,
    time_skipping_environment,
)

_TIMED_OUT = RuntimeError(
    "Failed starting test server: ephemeral server at 127.0.0.1:24001 did not start within 30s; "
    "last connection error: Connection refused"
)


class _Environment:
    """Stands in for a started ``WorkflowEnvironment``."""

    def __init__(self) -> None:
        self.shut_down = False

    async def shutdown(self) -> None:
        self.shut_down = True


class _Starts:
    """Replaces ``WorkflowEnvironment.start_time_skipping``: raises ``errors`` in turn, then
    starts; records the arguments of every call."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls: list[dict[str, Any]] = []
        self.started = _Environment()

    async def __call__(self, **kwargs: Any) -> _Environment:
        self.calls.append(kwargs)
        if self.errors:
            raise self.errors.pop(0)
        return self.started


def _install(monkeypatch: pytest.MonkeyPatch, starts: _Starts) -> _Starts:
    monkeypatch.setattr(WorkflowEnvironment, "start_time_skipping", starts)
    return starts


async def test_the_server_gets_a_long_start_up_timeout_and_a_port_of_ours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    starts = _install(monkeypatch, _Starts())
    async with time_skipping_environment() as env:
        assert env is cast(object, starts.started)
    assert starts.started.shut_down
    [call] = starts.calls
    assert call["test_server_startup_timeout"] == STARTUP_TIMEOUT > timedelta(seconds=5)
    assert call["test_server_existing_path"]
    assert 20000 <= call["port"] < 32768


async def test_a_start_up_timeout_is_tried_again_on_another_port_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    starts = _install(monkeypatch, _Starts(_TIMED_OUT, _TIMED_OUT))
    with caplog.at_level(logging.WARNING, logger=time_skipping.__name__):
        env = await start_time_skipping()
    assert env is cast(object, starts.started)
    assert len(starts.calls) == 3
    assert len({call["port"] for call in starts.calls}) == 3
    retries = [r.getMessage() for r in caplog.records if r.name == time_skipping.__name__]
    assert len(retries) == 2
    assert "(try 1 of 3)" in retries[0]
    assert "did not start within 30s" in retries[0]


async def test_the_last_start_up_timeout_fails_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    starts = _install(monkeypatch, _Starts(*[_TIMED_OUT] * ATTEMPTS))
    with pytest.raises(RuntimeError, match="did not start within"):
        await start_time_skipping()
    assert len(starts.calls) == ATTEMPTS


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("Failed starting test server: ephemeral server executable does not exist"),
        OSError("something else"),
    ],
)
async def test_any_other_error_fails_at_once(
    monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    starts = _install(monkeypatch, _Starts(error))
    with pytest.raises(type(error)):
        await start_time_skipping()
    assert len(starts.calls) == 1


def test_only_the_start_up_timeout_counts_as_one() -> None:
    assert is_startup_timeout(_TIMED_OUT)
    assert not is_startup_timeout(RuntimeError("Failed starting test server: no such file"))
    assert not is_startup_timeout(ValueError("did not start within"))
