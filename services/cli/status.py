"""``incentives status``: probe every part of the platform (the HTTP ones concurrently)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from services.cli.embedded import pid_alive
from services.cli.health import Health, probe_http, probe_kafka, probe_temporal
from services.cli.settings import SERVICE_NAMES, PlatformSettings
from services.cli.state import PlatformState, read_state


async def check_platform(settings: PlatformSettings) -> list[Health]:
    """Probe the broker, Temporal (and its UI when embedded) and every service's /health.

    A platform recorded in the var dir is probed where it was started; without one the
    configured addresses are probed (e.g. a docker-compose deployment on the default ports).
    """
    state = read_state(settings.resolved_var_dir())
    if state is not None:
        return await _check_recorded(state)
    probes: list[Awaitable[Health]] = [
        probe_kafka(settings.bootstrap()),
        probe_temporal(settings.temporal_target()),
    ]
    probes += [
        probe_http(name, f"http://{settings.host}:{settings.service_port(name)}/health")
        for name in SERVICE_NAMES
    ]
    return await _run(probes)


async def _run(probes: list[Awaitable[Health]]) -> list[Health]:
    """Run the probes in order: the broker's and Temporal's (the first two) one at a time, then
    the rest together.

    The Temporal probe's first client start-up holds the event loop for a moment (imports, the
    SDK's runtime). Run beside it, the broker probe's 3 s ran out while it waited: measured on
    a loaded machine, a broker answering in 0.1 s was reported "no answer to a metadata
    request" (3.3 s), and a loaded test platform's ``status --wait 60`` never came out healthy.
    """
    broker = await probes[0]
    temporal = await probes[1]
    return [broker, temporal, *await asyncio.gather(*probes[2:])]


async def _check_recorded(state: PlatformState) -> list[Health]:
    """Probe a platform started by ``incentives up``, also noticing processes that exited."""
    probes: list[Awaitable[Health]] = [
        probe_kafka(state.kafka_bootstrap),
        probe_temporal(state.temporal_address),
    ]
    if state.temporal_ui_url:
        probes.append(probe_http("temporal-ui", state.temporal_ui_url))
    names = ["broker", "temporal"] + (["temporal"] if state.temporal_ui_url else [])
    missing: list[Health] = []
    for name in SERVICE_NAMES:
        record = state.part(name)
        if record is None or record.health_url is None:
            missing.append(Health(name, "-", False, f"not started (platform {state.status})"))
            continue
        probes.append(probe_http(name, record.health_url))
        names.append(name)
    results = await _run(probes)
    checked: list[Health] = []
    for result, owner in zip(results, names, strict=True):
        record = state.part(owner)
        pid = record.pid if record else None
        if pid is not None and not pid_alive(pid):
            result = Health(result.part, result.address, False, f"process {pid} exited", pid)
        else:
            result = Health(result.part, result.address, result.healthy, result.detail, pid)
        checked.append(result)
    return checked + missing


def metrics_urls(settings: PlatformSettings) -> dict[str, str]:
    """Each service's ``/metrics`` URL: where the recorded platform runs it, else as configured."""
    state = read_state(settings.resolved_var_dir())
    urls: dict[str, str] = {}
    for name in SERVICE_NAMES:
        if state is not None:
            record = state.part(name)
            if record is None or record.health_url is None:
                continue
            base = record.health_url.removesuffix("/health")
        else:
            base = f"http://{settings.host}:{settings.service_port(name)}"
        urls[name] = f"{base}/metrics"
    return urls
