"""Health probes for every part of the platform, used by ``up`` and ``status``."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from services.cli.embedded import kafka_ready, temporal_ready


@dataclass(frozen=True)
class Health:
    """The outcome of one probe."""

    part: str
    address: str
    healthy: bool
    detail: str
    pid: int | None = None


async def http_health(client: httpx.AsyncClient, url: str) -> tuple[bool, str]:
    """GET ``url``: healthy only on HTTP 200; otherwise say why (status and failing checks)."""
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        return False, f"not reachable ({type(exc).__name__})"
    if response.status_code == 200:
        return True, "ok"
    detail = f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return False, detail
    checks = body.get("checks") if isinstance(body, dict) else None
    waiting = body.get("waiting_for") if isinstance(body, dict) else None
    if isinstance(waiting, list) and waiting:
        # The service names what it waits for (failing checks included): say that.
        detail += ": degraded, waiting for " + ", ".join(str(name) for name in waiting)
    elif isinstance(checks, dict):
        failing = [name for name, value in checks.items() if not _check_ok(value)]
        if failing:
            detail += ": " + ", ".join(failing)
    return False, detail


def _check_ok(value: object) -> bool:
    """Interpret one entry of a health ``checks`` map (bool, "ok" or {"status": "ok"})."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.lower() in {"ok", "up", "healthy", "pass"}
    if isinstance(value, dict):
        return _check_ok(value.get("status", value.get("ok", False)))
    return False


async def probe_kafka(bootstrap: str, timeout_s: float = 3.0) -> Health:
    """Probe the broker with a Kafka metadata request."""
    ok = await kafka_ready(bootstrap, timeout_s=timeout_s)
    return Health("broker", bootstrap, ok, "ok" if ok else "no answer to a metadata request")


async def probe_temporal(target: str, timeout_s: float = 3.0) -> Health:
    """Probe the Temporal frontend with a client connection and a health check."""
    ok = await temporal_ready(target, timeout_s=timeout_s)
    return Health("temporal", target, ok, "ok" if ok else "no client connection / not serving")


async def probe_http(part: str, url: str, timeout_s: float = 3.0) -> Health:
    """Probe an HTTP endpoint (a service's /health, the Temporal UI)."""
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        ok, detail = await http_health(client, url)
    return Health(part, url, ok, detail)
