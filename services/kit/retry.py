"""Bounded retries with exponential backoff for transient failures on the message path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from services.kit.errors import RetriesExhausted, is_transient
from services.kit.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before dead-lettering: ``attempts`` tries, backoff doubling from
    ``initial_delay`` up to ``max_delay`` seconds, with up to ``jitter`` seconds of noise so
    replicas retrying the same outage do not synchronise."""

    attempts: int = 5
    initial_delay: float = 0.2
    max_delay: float = 5.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "transient failure, retrying",
        attempt=state.attempt_number,
        delay_s=round(state.upcoming_sleep, 3),
        error=f"{type(exc).__name__}: {exc}",
    )


async def call_with_retries(policy: RetryPolicy, func: Callable[[], Awaitable[T]]) -> T:
    """Call ``func`` until it succeeds, a final error occurs, or the policy runs out.

    Final errors propagate at once. When the attempts are used up the last transient error is
    wrapped in :class:`~services.kit.errors.RetriesExhausted` (chained, never swallowed).
    """
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential_jitter(
            multiplier=policy.initial_delay, max=policy.max_delay, jitter=policy.jitter
        ),
        retry=retry_if_exception(is_transient),
        before_sleep=_log_retry,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await func()
    except Exception as exc:
        if not is_transient(exc):
            raise
        attempts = retrying.statistics.get("attempt_number", policy.attempts)
        raise RetriesExhausted(
            f"gave up after {attempts} attempts: {type(exc).__name__}: {exc}",
            attempts=attempts,
            last_error=exc,
        ) from exc
    raise AssertionError(
        "unreachable: tenacity either returns a result or raises"
    )  # pragma: no cover
