"""``GET /health``: 200 when every dependency answers, 503 naming those that do not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
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

    status: Literal["ok", "degraded"] = Field(description="`ok` only if every check passed.")
    service: str = Field(description="The service answering.", examples=["applications"])
    checks: dict[str, CheckResult] = Field(description="One entry per dependency.")


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


async def evaluate(service: str, checks: Mapping[str, Check], within: float = 2.0) -> Health:
    """Run every check concurrently, each bounded by ``within`` seconds."""
    names = list(checks)
    results = await asyncio.gather(*(_run(checks[name], within) for name in names))
    by_name = dict(zip(names, results, strict=True))
    ok = all(result.status == "ok" for result in results)
    return Health(status="ok" if ok else "degraded", service=service, checks=by_name)


def health_router(
    service: str,
    checks: Mapping[str, Check] | Callable[[], Mapping[str, Check]],
    *,
    timeout: float = 2.0,
) -> APIRouter:
    """A router serving ``GET /health`` for ``service`` from ``checks`` (or a provider of them)."""
    router = APIRouter(tags=["health"])

    @router.get(
        "/health",
        response_model=Health,
        responses={503: {"model": Health, "description": "A dependency is failing."}},
        summary="Service health",
    )
    async def health() -> Any:
        current = checks() if callable(checks) else checks
        report = await evaluate(service, current, timeout)
        return JSONResponse(report.model_dump(), status_code=200 if report.status == "ok" else 503)

    return router
