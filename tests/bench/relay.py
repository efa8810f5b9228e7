"""Outbox relay throughput alone: committed outbox rows -> published and marked, on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from services.kit.db import create_engine, create_session_factory
from services.kit.messaging import create_producer, send_all
from services.kit.migrations import upgrade_to_head
from services.kit.outbox import OutboxRelay
from services.kit.uow import UnitOfWorkFactory
from tests.bench.common import (
    BenchError,
    Result,
    assert_exactly_once,
    create_topics,
    header,
    make_inputs,
    read_all,
    unique,
)
from tests.bench.schema import MIGRATIONS

RELAY = "outbox relay (pg)"
#: Outbox rows committed per transaction while filling (untimed).
FILL_CHUNK = 1000


async def bench_relay(
    bootstrap: str,
    database_url: str,
    n: int,
    *,
    on_progress: Callable[[int], None] | None = None,
    profiler: Any = None,
) -> Result:
    """Commit ``n`` outbox rows (untimed), then time the kit relay draining the backlog.

    The relay is configured as :class:`~services.kit.runtime.Service` configures it (default
    batch size, the kit's producer); ``run_once`` publishes until nothing is left, which is what
    the background relay does after a wake-up.
    """
    topic = unique("relay-out")
    await create_topics(bootstrap, topic)
    batch = make_inputs(n, topic)
    engine = create_engine(database_url)
    producer = create_producer(bootstrap, client_id="bench-relay")
    try:
        await upgrade_to_head(engine, MIGRATIONS)
        sessions = create_session_factory(engine)
        uow_factory = UnitOfWorkFactory(sessions)
        for start in range(0, n, FILL_CHUNK):
            async with uow_factory() as uow:
                for envelope in batch.envelopes[start : start + FILL_CHUNK]:
                    uow.add_outbox(envelope, topic)
                await uow.commit()
        await producer.start()
        relay = OutboxRelay(sessions, partial(send_all, producer))
        if profiler is not None:
            profiler.enable()
        started = time.perf_counter()
        try:
            published = await relay.run_once()
        finally:
            seconds = time.perf_counter() - started
            if profiler is not None:
                profiler.disable()
        pending = await relay.pending()
    finally:
        await producer.stop()
        await engine.dispose()
    if on_progress is not None:
        on_progress(n)
    if published != n or pending:
        raise BenchError(f"{RELAY}: published {published} of {n}, {pending} still pending")
    records = await read_all(bootstrap, topic)
    delivered = assert_exactly_once(
        RELAY, batch.event_ids, records, lambda r: header(r, "event_id")
    )
    return Result(
        RELAY, delivered, seconds, baseline="raw produce", note="run_once on a committed backlog"
    )
