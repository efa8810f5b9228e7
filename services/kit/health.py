"""``GET /health``: 200 when every dependency answers, 503 naming those that do not.

Besides its checks, a service reports what its work is waiting for right now (:class:`Waits`):
a consumer retrying a transient failure registers the dependency it waits for, and the health
document says ``"status": "degraded"`` with ``"waiting_for": ["database"]`` until it passes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

#: A check passes by returning (optionally a short detail string) and fails by raising.
Check = Callable[[], Awaitable[str | None]]


class CheckResult(BaseModel):
    """The outcome of one dependency check."""

    status: Literal["ok", "error"] = Field(description="Whether the check passed.")
    latency_ms: float = Field(description="How long the check took.", examples=[1.7])
    detail: str | None = Field(
        default=None,
        description="Why it failed, or a short note when it passed.",
        examples=["broker 127.0.0.1:9092 not reachable yet"],
    )


class Health(BaseModel):
    """The health document."""

    status: Literal["ok", "degraded"] = Field(
        description="`ok` only if every check passed and nothing is waited for."
    )
    service: str = Field(description="The service answering.", examples=["applications"])
    checks: dict[str, CheckResult] = Field(description="One entry per dependency.")
    waiting_for: list[str] = Field(
        default_factory=list,
        description=(
            "What the service waits for: the failing checks, and the dependencies its consumers"
            " are waiting out (they hold their partitions and retry until it answers)."
        ),
        examples=[["database"]],
    )


@dataclass(frozen=True)
class Wait:
    """One piece of work waiting for a dependency."""

    waiter: str
    dependency: str
    detail: str
    since: float


class Waits:
    """What a process waits for right now, by key (one per waiting piece of work).

    A consumer lane that retries a transient failure ``begin``s a wait under a key of its own
    and ``end``s it when the call is over; a background job (the payout loop) can keep one
    under a fixed key while its dependency stays away.
    """

    def __init__(self) -> None:
        self._active: dict[Hashable, Wait] = {}

    def begin(self, key: Hashable, waiter: str, dependency: str, detail: str) -> None:
        """Record (or update) that ``waiter`` waits for ``dependency``."""
        previous = self._active.get(key)
        since = previous.since if previous is not None else time.monotonic()
        self._active[key] = Wait(waiter, dependency, detail, since)

    def end(self, key: Hashable) -> None:
        """The wait under ``key`` is over (nothing happens if there was none)."""
        self._active.pop(key, None)

    def dependencies(self) -> list[str]:
        """The names waited for, sorted, each once."""
        return sorted({wait.dependency for wait in self._active.values()})

    def active(self) -> list[Wait]:
        """Every current wait, oldest first."""
        return sorted(self._active.values(), key=lambda wait: wait.since)


async def _run(check: Check, within: float) -> CheckResult:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(within):
            detail = await check()
    except TimeoutError:
        status, detail = "error", f"no answer within {within:.1f}s"
    except Exception as exc:
        status, detail = "error", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    else:
        status = "ok"
    return CheckResult(
        status=status,
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
        detail=detail,
    )


async def evaluate(
    service: str,
    checks: Mapping[str, Check],
    within: float = 2.0,
    waits: Waits | None = None,
) -> Health:
    """Run every check concurrently, each bounded by ``within`` seconds; add ``waits``."""
    names = list(checks)
    results = await asyncio.gather(*(_run(checks[name], within) for name in names))
    by_name = dict(zip(names, results, strict=True))
    waiting = {name for name, result in by_name.items() if result.status != "ok"}
    if waits is not None:
        waiting.update(waits.dependencies())
    return Health(
        status="degraded" if waiting else "ok",
        service=service,
        checks=by_name,
        waiting_for=sorted(waiting),
    )


def health_router(
    service: str,
    checks: Mapping[str, Check] | Callable[[], Mapping[str, Check]],
    *,
    timeout: float = 2.0,
    waits: Waits | None = None,
) -> APIRouter:
    """A router serving ``GET /health`` for ``service`` from ``checks`` (or a provider of them)
    and the process's ``waits``."""
    router = APIRouter(tags=["health"])

    @router.get(
        "/health",
        response_model=Health,
        responses={
            503: {
                "model": Health,
                "description": "A dependency is failing, or the service waits for one.",
            }
        },
        summary="Service health",
    )
    async def health() -> Any:
        current = checks() if callable(checks) else checks
        report = await evaluate(service, current, timeout, waits)
        return JSONResponse(report.model_dump(), status_code=200 if report.status == "ok" else 503)

    return router
