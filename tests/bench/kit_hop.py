"""The kit hop: a real service's consume -> dedupe + state + outbox -> relay path, end to end.

A :class:`~services.kit.runtime.Service` (FastStream batch subscriber, idempotent consumer, unit
of work, outbox relay, shared producer), configured as every service is, consumes
``application.submitted`` from topic A. A batch handler loads and locks the batch's aggregate
rows, decides each message from them and stages its new aggregate row and an
``eligibility.assessed`` outbox row; the consumer commits a batch of those together with their
processed marks; the relay publishes to topic B. The clock
runs from the first handler call (after the group join) until the relay has published the last
output record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import catalog
from contracts.envelope import Actor, deterministic_event_id
from services.kit.consumer import Incoming
from services.kit.db import create_engine
from services.kit.runtime import Service
from services.kit.settings import ServiceSettings, service_settings_config
from services.kit.uow import UnitOfWork
from tests.bench.common import (
    BenchError,
    Result,
    assert_exactly_once,
    causation_of,
    create_topics,
    make_inputs,
    read_all,
    seed,
    unique,
    wait_for_count,
)
from tests.bench.schema import MIGRATIONS, STATE

#: The DESIGN target for every service hop, as a fraction of the raw hop's rate.
HOP_TARGET = 0.25


class BenchSettings(ServiceSettings):
    """Settings of the benchmark service (env prefix ``INCENTIVES_BENCH_``)."""

    model_config = service_settings_config("bench")
    service_name: ClassVar[str] = "bench"


class HopHandler:
    """What a real service's handler does: change the subject's aggregate, stage an event.

    This one is the per-message reference: one ``INSERT … ON CONFLICT DO UPDATE`` statement per
    message through the session, which shows what a statement per message costs.
    :class:`BatchHopHandler` is what services are written as.
    """

    def __init__(self, output_topic: str) -> None:
        self.output_topic = output_topic
        self.calls = 0
        self.first_call: float | None = None
        self._payload = catalog.example_payloads("eligibility.assessed")[0]
        self._actor = Actor.system("bench")

    async def __call__(self, incoming: Incoming, uow: UnitOfWork) -> None:
        if self.first_call is None:
            self.first_call = time.perf_counter()
        await self.change_state(incoming.envelope.subject, uow)
        received = incoming.envelope
        decision = catalog.make_envelope(
            "eligibility.assessed",
            self._payload.model_copy(update={"application_id": received.subject}),
            subject=received.subject,
            actor=self._actor,
            producer="bench",
            correlation_id=received.correlation_id,
            causation_id=received.event_id,
            # Deterministic, as a producer that may be retried must make it.
            event_id=deterministic_event_id("bench-hop", str(received.event_id)),
        )
        uow.add_outbox(decision, self.output_topic)
        self.calls += 1

    async def change_state(self, subject: str, uow: UnitOfWork) -> None:
        """Count one more event for ``subject``: one statement now."""
        await uow.session.exec(
            pg_insert(STATE)
            .values(subject=subject, events=1)
            .on_conflict_do_update(
                index_elements=[STATE.c.subject], set_={"events": STATE.c.events + 1}
            )
        )


class BatchHopHandler(HopHandler):
    """The kit's batch handler: ``preload`` reads and locks the batch's aggregate rows with one
    statement, each message is decided from that memo, and its new aggregate value is staged as
    an upsert (all of a batch's rows are then written with one statement)."""

    async def preload(self, batch: Sequence[Incoming], uow: UnitOfWork) -> None:
        """Read and lock the batch's aggregate rows: one statement."""
        if self.first_call is None:
            self.first_call = time.perf_counter()
        rows = await uow.load_many(
            STATE, "subject", {incoming.envelope.subject for incoming in batch}, lock=True
        )
        uow.memo["events"] = {row.subject: row.events for row in rows}

    async def change_state(self, subject: str, uow: UnitOfWork) -> None:
        """Count one more event for ``subject`` in the memo; stage the row."""
        known: dict[str, int] = uow.memo["events"]
        events = known[subject] = known.get(subject, 0) + 1
        uow.upsert(STATE, {"subject": subject, "events": events}, key=("subject",))


async def bench_kit_hop(
    bootstrap: str,
    database_url: str,
    n: int,
    *,
    name: str,
    upsert: bool = False,
    stall_timeout: float = 30.0,
    on_progress: Callable[[int], None] | None = None,
    profiler: Any = None,
) -> Result:
    """Run ``n`` messages through a kit service on ``database_url``; verify and time them.

    ``database_url`` must point at an empty database (the service migrates it). ``upsert``
    selects the per-message one-statement handler (PostgreSQL only). ``profiler`` (a
    ``cProfile.Profile``) is enabled for the timed section only, when given.
    """
    source, target = unique("kit-in"), unique("kit-out")
    await create_topics(bootstrap, source, target)
    batch = make_inputs(n, source)
    await seed(bootstrap, batch)

    settings = BenchSettings(kafka_bootstrap=bootstrap, database_url=database_url)
    service = Service(settings, migrations=MIGRATIONS)
    handler = HopHandler(target) if upsert else BatchHopHandler(target)
    service.consume(
        source, handler=handler, name=unique("kit-hop"), types=("application.submitted",)
    )
    await service.start()
    try:
        if profiler is not None:
            profiler.enable()
        try:
            finished = await wait_for_count(
                name,
                lambda: service.relay.published_total,
                n,
                stall_timeout=stall_timeout,
                on_progress=on_progress,
            )
        finally:
            if profiler is not None:
                profiler.disable()
    finally:
        await service.stop()
    if handler.first_call is None:
        raise BenchError(f"{name}: the handler never ran")
    seconds = finished - handler.first_call

    records = await read_all(bootstrap, target)
    delivered = assert_exactly_once(name, batch.event_ids, records, causation_of)
    await _check_state(database_url, name, n)
    return Result(name, delivered, seconds, baseline="raw hop", target=HOP_TARGET)


async def _check_state(database_url: str, name: str, n: int) -> None:
    """The database agrees: n processed marks, n state changes, nothing left to publish."""
    engine: AsyncEngine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            processed = await conn.scalar(sa.text("SELECT count(*) FROM processed_messages"))
            changes = await conn.scalar(sa.select(sa.func.coalesce(sa.func.sum(STATE.c.events), 0)))
            pending = await conn.scalar(
                sa.text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            )
    finally:
        await engine.dispose()
    if (processed, changes, pending) != (n, n, 0):
        raise BenchError(
            f"{name}: database disagrees: {processed} processed marks, {changes} state changes, "
            f"{pending} unpublished outbox rows (expected {n}, {n}, 0)"
        )
