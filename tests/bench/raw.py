"""The baselines: plain aiokafka producing, and a plain aiokafka consume+produce hop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.bench.common import (
    BenchError,
    Result,
    assert_exactly_once,
    create_topics,
    header,
    make_inputs,
    raw_consumer,
    raw_producer,
    read_all,
    seed,
    unique,
)

RAW_PRODUCE = "raw produce"
RAW_HOP = "raw hop"


async def bench_raw(
    bootstrap: str,
    n: int,
    *,
    stall_timeout: float = 30.0,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[Result, Result]:
    """Measure raw produce (seeding topic A) and the raw hop A -> B; returns both results.

    The hop is the strongest simple at-least-once hop aiokafka allows: fetch a batch
    (``getmany``), send every record to B without awaiting each, wait for all acks
    (``acks=all``), commit the offsets, repeat. No decoding, no database. The clock runs from
    the first fetched batch (after the group join) to the last commit.
    """
    source, target = unique("raw-in"), unique("raw-out")
    await create_topics(bootstrap, source, target)
    batch = make_inputs(n, source)
    produce_seconds = await seed(bootstrap, batch)

    consumer = raw_consumer(bootstrap, source, group_id=unique("raw-hop"))
    producer = raw_producer(bootstrap)
    await producer.start()
    try:
        await consumer.start()
        try:
            hop_seconds = await _hop(consumer, producer, target, n, stall_timeout, on_progress)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()

    records = await read_all(bootstrap, target)
    delivered = assert_exactly_once(
        RAW_HOP, batch.event_ids, records, lambda r: header(r, "event_id")
    )
    return (
        Result(RAW_PRODUCE, delivered, produce_seconds, note="aiokafka send, acks=all"),
        Result(RAW_HOP, delivered, hop_seconds, note="getmany -> send -> commit"),
    )


async def _hop(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    target: str,
    n: int,
    stall_timeout: float,
    on_progress: Callable[[int], None] | None,
) -> float:
    done = 0
    started: float | None = None
    last_progress = time.monotonic()
    while done < n:
        fetched = await consumer.getmany(timeout_ms=100)
        if not fetched:
            if time.monotonic() - last_progress > stall_timeout:
                raise BenchError(f"{RAW_HOP}: stuck at {done} of {n} for {stall_timeout:.0f}s")
            continue
        if started is None:
            started = time.perf_counter()
        futures = [
            await producer.send(target, r.value, key=r.key, headers=list(r.headers))
            for records in fetched.values()
            for r in records
        ]
        await asyncio.gather(*futures)
        await consumer.commit()
        done += len(futures)
        last_progress = time.monotonic()
        if on_progress is not None:
            on_progress(done)
    assert started is not None
    return time.perf_counter() - started
