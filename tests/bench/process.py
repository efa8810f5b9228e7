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
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

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


def cpu_seconds(procs: Sequence[subprocess.Popen[bytes]]) -> float:
    """User + system CPU seconds the processes ``procs`` have used so far (Linux ``/proc``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for proc in procs:
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
        # The fields after the command name, which is in parentheses and may hold spaces.
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


@dataclass(frozen=True)
class ServiceHop:
    """How long a service took to turn the produced inputs into outputs."""

    seconds: float
    #: How the clock ran, for the result's note.
    timing: str
    #: CPU seconds (user + system) the service processes spent per output over the timed
    #: part; a shared, loaded machine stretches the clock but much less this figure.
    cpu_per_output: float | None = None


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
    await _produce_all(bootstrap, records)
    outputs = _Outputs(subjects, output_types, what=what, stall_timeout=stall_timeout)
    async with _reading(bootstrap, output_topic, get_topic(output_topic).partitions) as consumer:
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
            await outputs.count(consumer, [proc], on_progress)
    return outputs.hop(launched)


async def scaled_hop(
    service: str,
    bootstrap: str,
    database_url: str,
    workdir: Path,
    records: Sequence[Record],
    subjects: Sequence[str],
    output_topic: str,
    output_types: Collection[str],
    *,
    instances: int,
    partitions: int,
    what: str,
    stall_timeout: float = 60.0,
    on_progress: Callable[[int], None] | None = None,
) -> ServiceHop:
    """:func:`service_hop` with ``instances`` processes of the service in one consumer group,
    on topics of ``partitions`` partitions (``bootstrap`` must be a broker of the caller's own,
    with none of the domain topics yet).

    The instances start one after the other (the first runs the migrations), and the records
    are produced only once the group is stable with every instance in it, so the clock measures
    the group at work, not its joins.
    """
    await ensure_topics(bootstrap, [(name, partitions) for t in TOPICS for name in (t.name, t.dlq)])
    group_prefix = f"bench-{uuid.uuid4().hex[:8]}-"
    prefix = f"INCENTIVES_{service.upper()}_"
    outputs = _Outputs(subjects, output_types, what=what, stall_timeout=stall_timeout)
    async with _reading(bootstrap, output_topic, partitions) as consumer, AsyncExitStack() as stack:
        procs = []
        for i in range(instances):
            port = free_port()
            env = service_env(
                bootstrap,
                workdir,
                INCENTIVES_CONSUMER_GROUP_PREFIX=group_prefix,
                **{
                    f"{prefix}PORT": str(port),
                    f"{prefix}HOST": "127.0.0.1",
                    f"{prefix}DATABASE_URL": database_url,
                },
            )
            procs.append(
                await stack.enter_async_context(
                    process(
                        ["-m", f"services.{service}.main"],
                        env=env,
                        log_path=workdir / f"{service}-{i}.log",
                        health_url=f"http://127.0.0.1:{port}/health",
                    )
                )
            )
        await wait_for_stable_group(bootstrap, f"{group_prefix}{service}", members=instances)
        launched = time.perf_counter()
        await _produce_all(bootstrap, records)
        await outputs.count(consumer, procs, on_progress)
    return outputs.hop(launched)


async def wait_for_stable_group(
    bootstrap: str, group: str, *, members: int, timeout: float = 120.0
) -> None:
    """Until consumer group ``group`` is ``Stable`` with ``members`` members."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        state, count = "unknown", 0
        while time.monotonic() < deadline:
            (response,) = await admin.describe_consumer_groups([group])
            for described in response.groups:
                state, count = described[2], len(described[5])
            if state == "Stable" and count == members:
                return
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    raise BenchError(f"group {group}: {state} with {count} of {members} members after {timeout}s")


async def _produce_all(bootstrap: str, records: Sequence[Record]) -> None:
    producer = raw_producer(bootstrap)
    await producer.start()
    try:
        await produce(producer, records)
    finally:
        await producer.stop()


@asynccontextmanager
async def _reading(bootstrap: str, topic: str, partitions: int) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer assigned to every partition of ``topic``, from the beginning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        yield consumer
    finally:
        await consumer.stop()


class _Outputs:
    """Counts one output per subject as the services produce them, and times it."""

    def __init__(
        self, subjects: Sequence[str], types: Collection[str], *, what: str, stall_timeout: float
    ) -> None:
        self.n = len(subjects)
        self.wanted = set(subjects)
        self.types = {t.encode() for t in types}
        self.what = what
        self.stall_timeout = stall_timeout
        self.first: tuple[float, int] | None = None
        self.finished = 0.0
        self.cpu_first = 0.0
        self.cpu_finished = 0.0

    async def count(
        self,
        consumer: AIOKafkaConsumer,
        procs: Sequence[subprocess.Popen[bytes]],
        on_progress: Callable[[int], None] | None,
    ) -> None:
        seen = 0
        last_change = time.monotonic()
        while seen < self.n:
            for proc in procs:
                if proc.poll() is not None:
                    raise BenchError(f"{self.what}: service exited with {proc.returncode}")
            batch = await consumer.getmany(timeout_ms=100)
            got = sum(
                1
                for recs in batch.values()
                for r in recs
                if (r.key or b"").decode() in self.wanted
                and dict(r.headers or ()).get("type") in self.types
            )
            if got:
                seen += got
                last_change = time.monotonic()
                if self.first is None:
                    self.first = (time.perf_counter(), seen)
                    self.cpu_first = cpu_seconds(procs)
                if on_progress is not None:
                    on_progress(min(seen, self.n))
            elif time.monotonic() - last_change > self.stall_timeout:
                raise BenchError(
                    f"{self.what}: stuck at {seen} of {self.n} for {self.stall_timeout:.0f}s"
                )
        self.finished = time.perf_counter()
        self.cpu_finished = cpu_seconds(procs)
        # A quiet poll: anything the relay would publish twice arrives meanwhile, and the
        # caller's read-back counts it.
        await consumer.getmany(timeout_ms=500)

    def hop(self, launched: float) -> ServiceHop:
        assert self.first is not None
        started, in_first = self.first
        n = self.n
        if n - in_first >= n // 10 and self.finished > started:
            return ServiceHop(
                (self.finished - started) * n / (n - in_first),
                "from the first outputs seen to the last, rate over the rest",
                (self.cpu_finished - self.cpu_first) / (n - in_first),
            )
        # Everything came in one fetch: only the whole run's time is meaningful.
        return ServiceHop(self.finished - launched, "from the start (all outputs arrived at once)")
