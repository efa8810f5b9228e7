"""The eligibility service end to end through the broker: decisions per second.

``n`` ``application.submitted`` envelopes (valid content, one distinct application each) are
produced to ``applications.events`` first; then the eligibility service starts in a process of
its own (uvicorn, fresh PostgreSQL database, a unique consumer group prefix) and assesses them,
publishing ``eligibility.assessed`` through its outbox relay. A consumer in this process counts
the decisions on ``eligibility.events``; afterwards each application must have exactly one
decision, each with its own event id.

The clock runs from the first decisions seen on the topic (after startup, migrations and the
group join) to the last; the rate counts only the decisions after that first fetch.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts import catalog
from contracts.envelope import Actor
from contracts.topics import get_topic
from contracts.v1.applications import CONTENT_EXAMPLE, ApplicationSubmitted
from services.cli.embedded import free_port
from services.kit.messaging import Record
from tests.bench.common import (
    BenchError,
    Result,
    assert_exactly_once,
    header,
    produce,
    raw_producer,
    read_all,
)
from tests.bench.kit_hop import HOP_TARGET
from tests.bench.process import create_registry_topics, process, service_env
from tests.bench.raw import RAW_HOP

ELIGIBILITY = "eligibility"
INPUT_TOPIC = get_topic("applications.events").name
OUTPUT_TOPIC = get_topic("eligibility.events").name
#: DESIGN target: decisions per second, deduplication and persistence included.
RATE_TARGET = 2_000.0


def make_submissions(n: int) -> tuple[list[Record], list[str]]:
    """``n`` encoded ``application.submitted`` records, one application each, and their ids.

    One envelope is built and validated with :func:`catalog.make_envelope`; the others are
    copies with a fresh event id and application id (encoding outside any timed section).
    """
    run = uuid.uuid4().hex[:6]
    example = catalog.example_payloads("application.submitted")[0]
    base_payload = ApplicationSubmitted.model_validate(
        {**example.model_dump(mode="json"), "firm_id": "BENCH", "content": CONTENT_EXAMPLE}
    )
    base = catalog.make_envelope(
        "application.submitted",
        base_payload,
        subject=base_payload.application_id,
        actor=Actor.system("bench"),
        producer="bench",
        correlation_id=uuid.uuid4(),
    )
    records: list[Record] = []
    subjects: list[str] = []
    for i in range(n):
        subject = f"app_bench{run}{i:07d}"
        envelope = base.model_copy(
            update={
                "event_id": uuid.uuid4(),
                "correlation_id": uuid.uuid4(),
                "subject": subject,
                "payload": base_payload.model_copy(update={"application_id": subject}),
            }
        )
        records.append(
            Record(
                topic=INPUT_TOPIC,
                value=catalog.encode(envelope),
                key=subject.encode(),
                headers=tuple(envelope.headers()),
            )
        )
        subjects.append(subject)
    return records, subjects


async def bench_eligibility(
    bootstrap: str,
    database_url: str,
    workdir: Path,
    n: int,
    *,
    stall_timeout: float = 60.0,
    on_progress: Callable[[int], None] | None = None,
) -> Result:
    """Decisions/s of the eligibility service; checks one decision per application after."""
    await create_registry_topics(bootstrap)
    records, subjects = make_submissions(n)
    producer = raw_producer(bootstrap)
    await producer.start()
    try:
        await produce(producer, records)
    finally:
        await producer.stop()

    wanted = set(subjects)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(OUTPUT_TOPIC, p) for p in range(get_topic(OUTPUT_TOPIC).partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        port = free_port()
        env = service_env(
            bootstrap,
            workdir,
            INCENTIVES_CONSUMER_GROUP_PREFIX=f"bench-{uuid.uuid4().hex[:8]}-",
            INCENTIVES_ELIGIBILITY_PORT=str(port),
            INCENTIVES_ELIGIBILITY_HOST="127.0.0.1",
            INCENTIVES_ELIGIBILITY_DATABASE_URL=database_url,
        )
        launched = time.perf_counter()
        async with process(
            ["-m", "services.eligibility.main"],
            env=env,
            log_path=workdir / "eligibility.log",
        ) as proc:
            seen = 0
            first: tuple[float, int] | None = None
            last_change = time.monotonic()
            while seen < n:
                if proc.poll() is not None:
                    raise BenchError(f"{ELIGIBILITY}: service exited with {proc.returncode}")
                batch = await consumer.getmany(timeout_ms=100)
                got = sum(
                    1 for recs in batch.values() for r in recs if (r.key or b"").decode() in wanted
                )
                if got:
                    seen += got
                    last_change = time.monotonic()
                    if first is None:
                        first = (time.perf_counter(), seen)
                    if on_progress is not None:
                        on_progress(min(seen, n))
                elif time.monotonic() - last_change > stall_timeout:
                    raise BenchError(
                        f"{ELIGIBILITY}: stuck at {seen} of {n} for {stall_timeout:.0f}s"
                    )
            finished = time.perf_counter()
            # Anything the relay would publish twice shows up in the read-back below.
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()

    assert first is not None
    started, in_first = first
    if n - in_first >= n // 10 and finished > started:
        seconds = (finished - started) * n / (n - in_first)
        timing = "from the first decisions seen to the last, rate over the rest"
    else:  # everything came in one fetch: only the whole run's time is meaningful
        seconds = finished - launched
        timing = "from process start (all decisions arrived at once)"
    decisions = [r for r in await read_all(bootstrap, OUTPUT_TOPIC) if r.key.decode() in wanted]
    decided = assert_exactly_once(ELIGIBILITY, subjects, decisions, lambda r: bytes(r.key).decode())
    ids = {header(r, "event_id") for r in decisions}
    kinds = {header(r, "type") for r in decisions}
    if len(ids) != len(decisions) or kinds != {"eligibility.assessed"}:
        raise BenchError(f"{ELIGIBILITY}: {len(ids)} event ids, types {kinds}")
    return Result(
        ELIGIBILITY,
        decided,
        seconds,
        baseline=RAW_HOP,
        target=HOP_TARGET,
        rate_target=RATE_TARGET,
        note=f"service in its own process, {timing}; one decision per application checked",
    )
