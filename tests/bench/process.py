"""Services under test in processes of their own: started, awaited, and stopped by PID."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.topics import TOPICS, get_topic
from services.cli.embedded import free_port
from services.kit.messaging import Record, ensure_topics
from tests.bench.common import BenchError, produce, raw_producer

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


@dataclass(frozen=True)
class ServiceHop:
    """How long a service took to turn the produced inputs into outputs."""

    seconds: float
    #: How the clock ran, for the result's note.
    timing: str


async def service_hop(
    service: str,
    bootstrap: str,
    database_url: str,
    workdir: Path,
    records: Sequence[Record],
    subjects: Sequence[str],
    output_topic: str,
    output_types: Collection[str],
    *,
    what: str,
    extra_env: Mapping[str, str] | None = None,
    stall_timeout: float = 60.0,
    on_progress: Callable[[int], None] | None = None,
) -> ServiceHop:
    """Produce ``records`` first, then run ``services.<service>.main`` in a process of its own
    (fresh database, unique consumer group prefix) until one ``output_types`` record per
    subject (the record key) arrived on ``output_topic``.

    The clock runs from the first outputs seen (after startup, migrations and the group join)
    to the last; the rate counts only the outputs after that first fetch. The caller reads the
    topic back afterwards to check exactly-once.
    """
    await create_registry_topics(bootstrap)
    producer = raw_producer(bootstrap)
    await producer.start()
    try:
        await produce(producer, records)
    finally:
        await producer.stop()

    n = len(subjects)
    wanted = set(subjects)
    types = {t.encode() for t in output_types}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(output_topic, p) for p in range(get_topic(output_topic).partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        prefix = f"INCENTIVES_{service.upper()}_"
        env = service_env(
            bootstrap,
            workdir,
            INCENTIVES_CONSUMER_GROUP_PREFIX=f"bench-{uuid.uuid4().hex[:8]}-",
            **{
                f"{prefix}PORT": str(free_port()),
                f"{prefix}HOST": "127.0.0.1",
                f"{prefix}DATABASE_URL": database_url,
                **(extra_env or {}),
            },
        )
        launched = time.perf_counter()
        async with process(
            ["-m", f"services.{service}.main"], env=env, log_path=workdir / f"{service}.log"
        ) as proc:
            seen = 0
            first: tuple[float, int] | None = None
            last_change = time.monotonic()
            while seen < n:
                if proc.poll() is not None:
                    raise BenchError(f"{what}: service exited with {proc.returncode}")
                batch = await consumer.getmany(timeout_ms=100)
                got = sum(
                    1
                    for recs in batch.values()
                    for r in recs
                    if (r.key or b"").decode() in wanted
                    and dict(r.headers or ()).get("type") in types
                )
                if got:
                    seen += got
                    last_change = time.monotonic()
                    if first is None:
                        first = (time.perf_counter(), seen)
                    if on_progress is not None:
                        on_progress(min(seen, n))
                elif time.monotonic() - last_change > stall_timeout:
                    raise BenchError(f"{what}: stuck at {seen} of {n} for {stall_timeout:.0f}s")
            finished = time.perf_counter()
            # Anything the relay would publish twice shows up in the caller's read-back.
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()

    assert first is not None
    started, in_first = first
    if n - in_first >= n // 10 and finished > started:
        return ServiceHop(
            (finished - started) * n / (n - in_first),
            "from the first outputs seen to the last, rate over the rest",
        )
    # Everything came in one fetch: only the whole run's time is meaningful.
    return ServiceHop(finished - launched, "from process start (all outputs arrived at once)")
