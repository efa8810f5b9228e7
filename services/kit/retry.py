"""Retries: patient, with capped exponential backoff, for transient failures on the message
path (they are waited out, never dead-lettered); and patient, with one log line, for the
dependencies a process waits on at start-up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_delay,
    stop_never,
    wait_exponential,
    wait_exponential_jitter,
    wait_fixed,
)

from services.kit.errors import StillWaiting, dependency_of, is_transient
from services.kit.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")

#: Seconds a consumer keeps retrying one batch before it hands the batch back to be polled
#: again. Well under the Kafka client's ``max.poll.interval`` (5 minutes), past which a member
#: that has not polled leaves its group; heartbeats run in the background meanwhile.
DEFAULT_HOLD_SECONDS = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """How a transient failure is waited out: backoff doubling from ``initial_delay`` up to
    ``max_delay`` seconds, with up to ``jitter`` seconds of noise so replicas retrying the same
    outage do not synchronise. There is no attempt budget: a transient error never becomes a
    dead letter. After ``hold`` seconds of failing, a call raises
    :class:`~services.kit.errors.StillWaiting` (the consumer hands its batch back and polls it
    again, so the wait goes on without starving the poll loop); ``None`` holds forever."""

    initial_delay: float = 0.2
    max_delay: float = 5.0
    jitter: float = 0.1
    hold: float | None = DEFAULT_HOLD_SECONDS

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ValueError("delays must satisfy 0 <= initial_delay <= max_delay")
        if self.hold is not None and self.hold <= 0:
            raise ValueError("hold must be positive (or None: forever)")


#: Told about every failed attempt that will be retried (the error, the attempt number).
OnRetry = Callable[[BaseException, int], None]


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "transient failure, waiting for it to pass",
        attempt=state.attempt_number,
        delay_s=round(state.upcoming_sleep, 3),
        waiting_for=dependency_of(exc) if exc is not None else None,
        error=f"{type(exc).__name__}: {exc}",
    )


class Retrier:
    """Runs calls under one :class:`RetryPolicy`; build it once, call it many times.

    The tenacity machinery (stop, wait and retry strategies) is built here, once, instead of
    per call. A tenacity object keeps per-call state on itself, so a call that overlaps another
    one (two consumers sharing a retrier) works on a copy rather than on the shared object.
    """

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        *,
        retry_on: Callable[[BaseException], bool] = is_transient,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self._retry_on = retry_on
        self._retrying = AsyncRetrying(
            stop=stop_never if self.policy.hold is None else stop_after_delay(self.policy.hold),
            wait=wait_exponential_jitter(
                multiplier=self.policy.initial_delay,
                max=self.policy.max_delay,
                jitter=self.policy.jitter,
            ),
            # Only errors: a cancellation (shutdown, a sibling lane failing) or an interrupt
            # must end the call, never be retried.
            retry=retry_if_exception(lambda exc: isinstance(exc, Exception) and retry_on(exc)),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        self._busy = False

    @staticmethod
    def _before_sleep(state: RetryCallState) -> None:
        _log_retry(state)
        on_retry: OnRetry | None = state.kwargs.get("on_retry")
        exc = state.outcome.exception() if state.outcome else None
        if on_retry is not None and exc is not None:
            on_retry(exc, state.attempt_number)

    async def call(
        self,
        func: Callable[[], Awaitable[T]],
        *,
        failed: BaseException | None = None,
        on_retry: OnRetry | None = None,
    ) -> T:
        """Call ``func`` until it succeeds or a final error occurs; its result.

        Final errors (and any error ``retry_on`` declines) propagate at once. A transient one
        is retried, with capped backoff, for as long as it lasts; ``on_retry`` hears of each
        failed attempt before the pause. Once the policy's ``hold`` has passed, the last
        transient error is raised as :class:`~services.kit.errors.StillWaiting` (chained): the
        caller gives its work back to be tried again later, it does not give up on it.

        ``failed`` is the error of a first attempt the caller already made (a message that
        failed inside a batch): it counts as attempt 1, so the backoff continues from there.
        """
        retrying = self._retrying.copy() if self._busy else self._retrying
        owner = not self._busy
        self._busy = True
        pending = failed

        async def attempt(*, on_retry: OnRetry | None) -> T:
            del on_retry  # for the before-sleep hook, which reads it from the call's kwargs
            nonlocal pending
            if pending is not None:
                error, pending = pending, None
                raise error
            return await func()

        try:
            result: T = await retrying(attempt, on_retry=on_retry)
            return result
        except Exception as exc:
            if not self._retry_on(exc):
                raise
            waited = float(retrying.statistics.get("delay_since_first_attempt", 0.0))
            raise StillWaiting(
                f"still waiting after {waited:.0f}s: {type(exc).__name__}: {exc}",
                dependency=dependency_of(exc),
            ) from exc
        finally:
            if owner:
                self._busy = False


async def call_with_retries(policy: RetryPolicy, func: Callable[[], Awaitable[T]]) -> T:
    """One-off :meth:`Retrier.call`; code that retries often keeps a :class:`Retrier`."""
    return await Retrier(policy).call(func)


async def wait_until_available(
    probe: Callable[[], Awaitable[T]],
    *,
    name: str,
    interval: float = 1.0,
    max_interval: float | None = None,
    deadline: float | None = None,
    final: tuple[type[BaseException], ...] = (),
    unavailable: str = "not reachable yet",
    recovered: str | None = "reachable",
    **context: Any,
) -> T:
    """Call ``probe`` until it returns, every ``interval`` seconds; its result.

    For dependencies a process waits on at start-up (a database, a broker, Temporal): a
    dependency that starts after its clients is a normal start-up order, so the wait logs one
    warning line (``"<name> not reachable yet, retrying"``, with the first error), not a
    traceback per attempt, and one info line (``"<name> reachable"``) once it answers. Any
    error of ``probe`` means "not yet"; a cancellation ends the wait. ``deadline`` (seconds)
    bounds it: the last error is then raised. ``None`` waits forever, as a container would.
    With ``max_interval`` the pause doubles from ``interval`` up to it (a long outage is then
    probed less often). An error of a ``final`` type is an answer, not unavailability: it is
    raised at once.
    """
    warned = False

    def first_failure(state: RetryCallState) -> None:
        nonlocal warned
        if warned:
            return
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            f"{name} {unavailable}, retrying",
            error=f"{type(exc).__name__}: {exc}",
            **context,
        )
        warned = True

    retrying = AsyncRetrying(
        stop=stop_never if deadline is None else stop_after_delay(deadline),
        wait=(
            wait_fixed(interval)
            if max_interval is None
            else wait_exponential(multiplier=interval, max=max_interval)
        ),
        retry=retry_if_exception_type(Exception) & retry_if_not_exception_type(final),
        before_sleep=first_failure,
        reraise=True,
    )

    async def attempt() -> T:
        # A coroutine function for tenacity, which would call a plain callable (a lambda
        # returning a coroutine) without awaiting what it returns.
        return await probe()

    result: T = await retrying(attempt)
    if warned and recovered is not None:
        log.info(f"{name} {recovered}", **context)
    return result


async def every(name: str, interval: float, job: Callable[[], Awaitable[int]]) -> None:
    """Run a background ``job`` forever: again at once while it reports work done (non-zero),
    else after ``interval`` seconds.

    A failure is logged and the next round retries: the job's dependencies (the database, the
    rail) may be away for a while. Cancel the task to stop it.
    """
    while True:
        try:
            if await job():
                continue  # more may be waiting: go again at once
        except Exception as exc:
            log.warning(f"{name} failed", error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(interval)
