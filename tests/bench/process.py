"""Services under test in processes of their own: started, awaited, and stopped by PID."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from contracts.topics import TOPICS
from services.kit.messaging import ensure_topics
from tests.bench.common import BenchError

#: The repository root: the child processes import ``services`` and ``tests`` from here.
ROOT = Path(__file__).resolve().parents[2]


async def create_registry_topics(bootstrap: str) -> None:
    """Every domain topic and its ``.dlq`` twin, with their registry partition counts."""
    await ensure_topics(
        bootstrap,
        [(name, t.partitions) for t in TOPICS for name in (t.name, t.dlq)],
    )


def service_env(bootstrap: str, workdir: Path, **extra: str) -> dict[str, str]:
    """Environment of a service process: quiet logs, this run's broker and state folder."""
    return {
        "INCENTIVES_KAFKA_BOOTSTRAP": bootstrap,
        "INCENTIVES_VAR_DIR": str(workdir),
        "INCENTIVES_LOG_LEVEL": "WARNING",
        **extra,
    }


@asynccontextmanager
async def process(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    health_url: str | None = None,
    ready_timeout: float = 60.0,
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``python <args>`` with ``env`` added; yields once ``health_url`` answers 200.

    Stopped by its PID afterwards (SIGTERM, then SIGKILL after 15 s), also on errors.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        if health_url is not None:
            await _wait_healthy(proc, health_url, ready_timeout, log_path)
        yield proc
        if proc.poll() is not None:
            raise BenchError(f"{args[-1]} exited with {proc.returncode} (log: {log_path})")
    finally:
        await asyncio.to_thread(_stop, proc)


async def _wait_healthy(
    proc: subprocess.Popen[bytes], url: str, timeout: float, log_path: Path
) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(
                    f"process exited with {proc.returncode} before it was ready (log: {log_path})"
                )
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise BenchError(f"{url} not healthy within {timeout:.0f}s (log: {log_path})")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
