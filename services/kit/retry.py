"""Retries: bounded, with exponential backoff, for transient failures on the message path; and
patient, with one log line, for the dependencies a process waits on at start-up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_never,
    wait_exponential,
    wait_exponential_jitter,
    wait_fixed,
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
            stop=stop_after_attempt(self.policy.attempts),
            wait=wait_exponential_jitter(
                multiplier=self.policy.initial_delay,
                max=self.policy.max_delay,
                jitter=self.policy.jitter,
            ),
            # Only errors: a cancellation (shutdown, a sibling lane failing) or an interrupt
            # must end the call, never be retried.
            retry=retry_if_exception(lambda exc: isinstance(exc, Exception) and retry_on(exc)),
            before_sleep=_log_retry,
            reraise=True,
        )
        self._busy = False

    async def call(
        self, func: Callable[[], Awaitable[T]], *, failed: BaseException | None = None
    ) -> T:
        """Call ``func`` until it succeeds, a final error occurs, or the policy runs out.

        Final errors (and any error ``retry_on`` declines) propagate at once. When the attempts
        are used up the last transient error is wrapped in
        :class:`~services.kit.errors.RetriesExhausted` (chained, never swallowed).

        ``failed`` is the error of a first attempt the caller already made (a message that
        failed inside a batch): it counts as attempt 1, so the policy's backoff and attempt
        budget apply exactly as if this call had made it.
        """
        retrying = self._retrying.copy() if self._busy else self._retrying
        owner = not self._busy
        self._busy = True
        pending = failed

        async def attempt() -> T:
            nonlocal pending
            if pending is not None:
                error, pending = pending, None
                raise error
            return await func()

        try:
            result: T = await retrying(attempt)
            return result
        except Exception as exc:
            if not self._retry_on(exc):
                raise
            attempts = int(retrying.statistics.get("attempt_number", self.policy.attempts))
            raise RetriesExhausted(
                f"gave up after {attempts} attempts: {type(exc).__name__}: {exc}",
                attempts=attempts,
                last_error=exc,
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
