"""``/health`` says what a service waits for, and names the dependency of a transient failure."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from services.cli.health import http_health
from services.kit.db import create_engine
from services.kit.errors import (
    UNKNOWN_DEPENDENCY,
    DependencyUnavailable,
    RetryableError,
    dependency_of,
)
from services.kit.health import Waits, evaluate, health_router


async def _ok() -> str | None:
    return None


async def _down() -> str | None:
    raise DependencyUnavailable("database 127.0.0.1:1 refused")


async def test_a_wait_makes_the_service_degraded_until_it_ends() -> None:
    waits = Waits()
    report = await evaluate("zones", {"database": _ok}, waits=waits)
    assert (report.status, report.waiting_for) == ("ok", [])

    waits.begin("lane-1", "zones", "database", "ConnectionRefusedError")
    waits.begin("lane-2", "zones", "database", "ConnectionRefusedError")
    waits.begin("payouts", "payouts", "rail", "rail answered 503")
    report = await evaluate("zones", {"database": _ok}, waits=waits)
    assert report.status == "degraded"
    assert report.waiting_for == ["database", "rail"]
    assert report.checks["database"].status == "ok"  # the checks themselves can pass

    waits.end("lane-1")
    waits.end("payouts")
    waits.end("payouts")  # ending twice is harmless
    assert (await evaluate("zones", {}, waits=waits)).waiting_for == ["database"]
    waits.end("lane-2")
    assert (await evaluate("zones", {}, waits=waits)).status == "ok"


async def test_a_failing_check_is_waited_for_too() -> None:
    report = await evaluate("worker", {"database": _ok, "temporal": _down})
    assert (report.status, report.waiting_for) == ("degraded", ["temporal"])


async def test_the_health_endpoint_answers_503_naming_what_it_waits_for() -> None:
    waits = Waits()
    app = FastAPI()
    app.include_router(health_router("zones", {"database": _ok}, waits=waits))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://zones") as client:
        assert (await client.get("/health")).json()["waiting_for"] == []
        waits.begin("k", "zones", "database", "refused")
        response = await client.get("/health")
        assert response.status_code == 503
        assert response.json()["status"] == "degraded"
        assert response.json()["waiting_for"] == ["database"]
        # The CLI's status line says it in words.
        healthy, detail = await http_health(client, "http://zones/health")
        assert not healthy
        assert detail == "HTTP 503: degraded, waiting for database"
        waits.end("k")
        assert (await client.get("/health")).status_code == 200


async def test_a_named_dependency_wins_and_causes_are_followed() -> None:
    assert dependency_of(DependencyUnavailable("x", dependency="temporal")) == "temporal"
    outer = RetryableError("payout failed")
    outer.__cause__ = DependencyUnavailable("rail away", dependency="rail")
    assert dependency_of(outer) == "rail"
    assert dependency_of(KeyError("bug")) == UNKNOWN_DEPENDENCY


async def test_a_refused_database_connection_is_the_database() -> None:
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/nothing")
    try:
        with pytest.raises(Exception) as caught:  # noqa: PT011 - whatever the driver raises
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
    finally:
        await engine.dispose()
    assert dependency_of(caught.value) == "database"
