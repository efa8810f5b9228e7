"""The broker is a cache of the outboxes: republish an outbox, and notice a broker that lost it.

:func:`republish_outbox` queues a service's outbox rows for publication again (all of them, or
those created since a time); the relay then publishes them in id order and idempotent consumers
drop what they had processed. ``incentives outbox republish`` calls it.

:class:`BrokerEpoch` makes that automatic. Tansu keeps nothing across a restart, and its cluster
id is the constant ``tansu_cluster`` (measured: the same before and after a restart), so the
cluster id cannot tell one broker life from the next. A marker record can: after publishing its
outbox to a broker, a service writes a record keyed by its name, holding a fresh token, to the
one-partition topic :data:`MARKER_TOPIC`. A broker that does not hold the service's marker is
one the service has not published to:

- at start-up, before its relay runs, the service reads the marker topic; no record with its
  key means a new broker: it republishes the outbox and writes its marker;
- while it runs, each relay batch first reads the service's marker back at its place (at most
  every :data:`VERIFY_EVERY` seconds), and so does a check every ``interval`` seconds when it
  publishes nothing. A missing record, or another token there (another life of the broker,
  whose offset someone else's marker took), means the broker was replaced under the service:
  the batch is refused, the outbox is queued again, and the relay starts over from its oldest
  row, so old rows keep their order before new ones.

Either way the service first creates the registry's topics that are missing (a restarted broker
has none, and Tansu auto-creates a topic a client names, with its default partition count of
4), and writes its new marker only once the relay has published the whole outbox. A crash in
between leaves no marker, so the next start republishes again; duplicates are what idempotent
consumers are for. Replicas of a service share the outbox: each republishes, which duplicates
and loses nothing.

Not covered: a consumer that stays subscribed across a broker restart names its topics to the
new broker as soon as it reconnects, and Tansu then creates them with 4 partitions if nobody
created them first.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from contracts.topics import TOPICS
from services.kit.errors import DependencyUnavailable
from services.kit.logging import get_logger
from services.kit.messaging import (
    Record,
    ensure_topics,
    read_topics,
    topic_partitions,
    topic_reader,
)
from services.kit.outbox import OutboxRelay

log = get_logger(__name__)

#: The topic of publisher markers: one partition, one record per service per broker life.
MARKER_TOPIC = "_incentives.publishers"
#: Where every outbox row was created: republishing "since" this republishes everything.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
#: How often a running service checks that the broker still holds its marker (seconds).
DEFAULT_CHECK_INTERVAL = 5.0
#: A relay batch re-checks the marker first when the last check is older than this (seconds).
VERIFY_EVERY = 0.25
#: How long one marker check may take (seconds); a broker that does not answer fails it.
CHECK_TIMEOUT = 10.0


async def _never_publish(_records: Sequence[Record]) -> None:
    raise RuntimeError("republish_outbox only marks rows; the service's relay publishes them")


async def republish_outbox(
    session_factory: async_sessionmaker[AsyncSession], since: datetime | None = None
) -> int:
    """Queue the outbox rows created at or after ``since`` (default: all) for publication again.

    Only marks rows; the service's relay (running now, or at its next start) publishes them.
    Returns the number of rows queued.
    """
    relay = OutboxRelay(session_factory, _never_publish)
    return await relay.republish_since(since or BEGINNING)


def registry_topics() -> list[tuple[str, int]]:
    """Every topic of the registry and its ``.dlq`` twin, with its partition count."""
    return [(name, topic.partitions) for topic in TOPICS for name in (topic.name, topic.dlq)]


@dataclass(frozen=True)
class Marker:
    """A marker this process wrote: where it is and what it holds."""

    partition: int
    offset: int
    token: bytes


class BrokerEpoch:
    """Notices a broker this service has not published to, and republishes the outbox to it.

    Give the relay :meth:`publish_outbox` as its publish function (then :meth:`attach` it):
    every batch first checks the marker, so a new broker gets its topics and the whole outbox,
    in id order, before any newer row.
    """

    def __init__(
        self,
        service: str,
        bootstrap: str,
        *,
        session_factory: async_sessionmaker[AsyncSession],
        publish: Callable[[Sequence[Record]], Awaitable[None]],
        topics: Sequence[tuple[str, int]] | None = None,
        interval: float = DEFAULT_CHECK_INTERVAL,
    ) -> None:
        """``publish`` sends records (the service's producer). ``topics`` (name, partitions)
        are created on a new broker before the republish (default: :func:`registry_topics`)."""
        self.service = service
        self.bootstrap = bootstrap
        self.session_factory = session_factory
        self.publish = publish
        self.topics = list(topics) if topics is not None else registry_topics()
        self.interval = interval
        self.relay: OutboxRelay | None = None
        self.marker: Marker | None = None
        #: How many times this process found a new broker and republished its outbox.
        self.republished = 0
        self._awaiting_marker = False
        self._lock = asyncio.Lock()
        self._verified_at = -float("inf")
        self._needs_requeue = False
        self._woken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def attach(self, relay: OutboxRelay) -> None:
        """The relay whose backlog the marker waits for."""
        self.relay = relay

    async def publish_outbox(self, records: Sequence[Record]) -> None:
        """The relay's publish: checks the broker holds this service's marker, then publishes.

        The check comes first (at most every :data:`VERIFY_EVERY` seconds; a broker restarts
        slower than that): after a restart, a publish to a topic the new broker lacks would
        auto-create it with the broker's default partition count, and a producer that waits
        for the broker to come back does not fail, so nothing else tells.
        """
        async with self._lock:
            now = asyncio.get_running_loop().time()
            stale = now - self._verified_at >= VERIFY_EVERY
            if not self._needs_requeue and not self._awaiting_marker and stale:
                if await self._known():
                    self._verified_at = now
                else:
                    self._needs_requeue = True
            if self._needs_requeue:
                # Queued again by :meth:`check`, outside the relay's transaction (on PostgreSQL
                # it holds this batch's rows locked); the next cycle starts with the old rows.
                self._woken.set()
                raise DependencyUnavailable(f"new broker {self.bootstrap}: outbox to queue again")
        await self.publish(records)

    async def _queue_again(self) -> int:
        await ensure_topics(self.bootstrap, [(MARKER_TOPIC, 1), *self.topics])
        count = await republish_outbox(self.session_factory)
        self._awaiting_marker = True
        self.marker = None
        self.republished += 1
        log.info("new broker: outbox queued again", rows=count, broker=self.bootstrap)
        return count

    async def _write_marker(self) -> None:
        token = uuid.uuid4().hex.encode()
        await self.publish([Record(MARKER_TOPIC, token, key=self.service.encode())])
        records = await read_topics(self.bootstrap, [MARKER_TOPIC])
        mine = [r for r in records if r.key == self.service.encode() and r.value == token]
        self.marker = Marker(mine[-1].partition, mine[-1].offset, token) if mine else None
        self._awaiting_marker = False

    async def _known(self) -> bool:
        """Whether the broker holds this service's marker."""
        if self.marker is None:
            await ensure_topics(self.bootstrap, [(MARKER_TOPIC, 1)])
            records = await read_topics(self.bootstrap, [MARKER_TOPIC], within=CHECK_TIMEOUT)
            ours = [r for r in records if r.key == self.service.encode()]
            if ours:
                self.marker = Marker(
                    ours[-1].partition, ours[-1].offset, bytes(ours[-1].value or b"")
                )
            return bool(ours)
        return await self._holds(self.marker)

    async def _holds(self, marker: Marker) -> bool:
        consumer = topic_reader(self.bootstrap)
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await consumer.start()
                return await self._read_marker(consumer, marker)
        finally:
            # Stopping a reader whose broker vanished must not hang the check either.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CHECK_TIMEOUT):
                    await consumer.stop()

    async def _read_marker(self, consumer: AIOKafkaConsumer, marker: Marker) -> bool:
        # A marker topic auto-created by some client has several partitions: look where the
        # marker went, not just at partition 0.
        if marker.partition not in await topic_partitions(consumer, MARKER_TOPIC, within=1.0):
            return False
        tp = TopicPartition(MARKER_TOPIC, marker.partition)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if end <= marker.offset:
            return False
        consumer.seek(tp, marker.offset)
        while True:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=1)
            for record in batch.get(tp, ()):
                return bool(
                    record.offset == marker.offset
                    and record.key == self.service.encode()
                    and record.value == marker.token
                )

    async def ensure(self) -> bool:
        """At start-up, before the relay runs: republish the outbox to a new broker.

        Returns True when the broker was new to this service.
        """
        async with self._lock:
            if await self._known():
                return False
            await self._queue_again()
        if self.relay is not None:  # its publishes take the lock
            await self.relay.run_once()  # published and acknowledged before the marker
        async with self._lock:
            await self._write_marker()
        return True

    async def check(self) -> None:
        """One periodic check: write the marker once the outbox is out; notice a new broker."""
        async with self._lock:
            if self._needs_requeue:
                await self._queue_again()
                self._needs_requeue = False
                if self.relay is not None:
                    self.relay.wake()
                return
            if self._awaiting_marker:
                if self.relay is None or await self.relay.pending() == 0:
                    await self._write_marker()
                return
            if not await self._known():
                # Replaced while this service published nothing: no failure told it.
                await self._queue_again()
                if self.relay is not None:
                    self.relay.wake()

    async def watch(self) -> None:
        """:meth:`check` every ``interval`` seconds; failures (a broker restarting) are retried."""
        failing = False
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._woken.wait()
            self._woken.clear()
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    log.warning("broker epoch check failed; will retry", exc_info=exc)
                failing = True
                continue
            failing = False

    def start(self) -> asyncio.Task[None]:
        """Start :meth:`watch` in the background (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.watch(), name=f"{self.service}-broker-epoch")
        return self._task

    async def stop(self) -> None:
        """Stop watching."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
