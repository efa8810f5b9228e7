"""What the outage tests share: a paced load, topic readers and the recovery figure."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import httpx
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import catalog
from services.kit.messaging import Record

#: How long each dependency stays away (the issue asks for a minute).
OUTAGE_SECONDS = 60.0
#: How long the backlog may take to drain after the outage: a bound for a shared, busy host,
#: not a target (the figure printed is the target's business, in ``make bench``).
RECOVERY_TIMEOUT = 480.0
#: Tries per load record before the load itself fails.
SEND_ATTEMPTS = 5
#: Each outage test's own time limit (the suite's default of 5 minutes is less than one
#: outage with its load, drain and checks on a busy host).
TEST_TIMEOUT = 1200


@dataclass
class Load:
    """Publishes ``records`` at ``rate`` per second, in the background, in order."""

    producer: AIOKafkaProducer
    records: Sequence[Record]
    rate: float
    sent: int = 0
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outage-load")

    async def _run(self) -> None:
        started = time.monotonic()
        for index, record in enumerate(self.records):
            due = started + index / self.rate
            pause = due - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)  # pacing the load, not synchronising a check
            await self._send(record)
            self.sent += 1

    async def _send(self, record: Record) -> None:
        # A broker starved of CPU may time a request out; the record is sent again (a copy
        # that did land is a redelivery the consumer drops), as any producer would.
        for attempt in range(SEND_ATTEMPTS):
            try:
                await self.producer.send_and_wait(
                    record.topic, record.value, key=record.key, headers=list(record.headers)
                )
                return
            except KafkaError:
                if attempt == SEND_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.5)

    async def finished(self) -> None:
        assert self._task is not None
        await self._task

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def wait_for(
    check: Callable[[], Awaitable[bool]], *, timeout: float, interval: float = 0.2
) -> float:
    """Wait until ``check()`` holds; the time it took. Fails the test after ``timeout``."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not reached within {timeout:.0f}s")
        await asyncio.sleep(interval)
    return time.monotonic() - started


async def records_with_keys(
    bootstrap: str, topic: str, keys: set[bytes], *, timeout: float = 30.0
) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of ``topic`` whose key is in ``keys``, read to the end offsets."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        client_id=f"outage-reader-{uuid.uuid4().hex[:6]}",
    )
    await consumer.start()
    try:
        partitions: set[int] | None = None
        for _ in range(50):
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                break
            await consumer.topics()
            await asyncio.sleep(0.1)
        assert partitions, f"topic {topic} has no partitions"
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        found: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + timeout
        while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end within {timeout:.0f}s")
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                found.extend((r.key, r.value) for r in recs if r.key in keys)
        return found
    finally:
        await consumer.stop()


def event_ids_by_subject(values: Sequence[bytes], message_type: str) -> dict[str, set[uuid.UUID]]:
    """The distinct event ids of ``message_type`` per subject among encoded envelopes."""
    out: dict[str, set[uuid.UUID]] = {}
    for value in values:
        envelope = catalog.decode(value)
        if envelope.type == message_type:
            out.setdefault(envelope.subject, set()).add(envelope.event_id)
    return out


def report(name: str, **figures: object) -> None:
    """Print the outage figures (shown with ``pytest -s``, and in the captured output).

    The host's load average goes with them: on a shared machine, the drain rate after an
    outage says as much about the neighbours as about the service.
    """
    load_1m = os.getloadavg()[0]
    shown = ", ".join(f"{key}={value}" for key, value in {**figures, "load_1m": load_1m}.items())
    print(f"\n[outage] {name}: {shown}", flush=True)


async def is_ok(client: httpx.AsyncClient) -> bool:
    """Whether the service answers 200 on ``/health`` (False while it does not answer)."""
    try:
        return (await client.get("/health")).status_code == 200
    except httpx.TransportError:
        return False


async def waits_for(client: httpx.AsyncClient, dependency: str) -> bool:
    """Whether the service's ``/health`` names ``dependency`` in ``waiting_for``."""
    body = (await client.get("/health")).json()
    return dependency in body.get("waiting_for", [])


async def at_least(value: Callable[[], float], target: float) -> bool:
    """``value() >= target``, as a check for :func:`wait_for`."""
    return value() >= target


#: The decisions of a given set of applications, and how many applications they are about.
_DECISIONS_OF = sa.text(
    "SELECT count(*), count(DISTINCT application_id) FROM eligibility_decisions"
    " WHERE application_id IN :ids"
).bindparams(sa.bindparam("ids", expanding=True))


async def decisions_of(engine: AsyncEngine, subjects: Sequence[str]) -> tuple[int, int]:
    """(decisions, decisions beyond one per application) among ``subjects`` only.

    A consumer in a new group reads ``applications.events`` from its start, so in a full run it
    also decides what other tests published there, amendments included (a second revision, a
    second decision by design): counting the whole table counts them too.
    """
    async with engine.connect() as conn:
        row = (await conn.execute(_DECISIONS_OF, {"ids": list(subjects)})).one()
    decisions, applications = int(row[0]), int(row[1])
    return decisions, decisions - applications
