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
  every :data:`VERIFY_EVERY` seconds, with one long-lived reader), and so does a check every
  ``interval`` seconds. A missing record, or another token there (another life of the broker,
  whose offset someone else's marker took), means the broker was replaced under the service:
  the batch is refused, the outbox is queued again, and the relay starts over from its oldest
  row, so old rows keep their order before new ones.

Either way the service first creates the registry's topics that are missing (a restarted broker
has none, and Tansu auto-creates a topic a client names, with its default partition count of
4), queues the outbox again in its database, and then writes its new marker. The queued rows
are durable: a crash before they are out leaves them queued, and the next start publishes
them. The relay holds the epoch's lock across each batch, from its select to its mark, so the
outbox is never queued again between a batch's publish (perhaps to the broker that just died)
and its mark. Because the marker is written before the republish rather than after it, a
broker replaced again while the outbox goes out is noticed like the first (before, a marker
written at the end to the third broker vouched for rows the second had taken along).
Duplicates are what idempotent consumers are for. Replicas of a service share the outbox:
each republishes, which duplicates and loses nothing.

No client of a service creates a topic by naming it
(:func:`~services.kit.messaging.forbid_topic_auto_creation`): before, a consumer that stayed
subscribed across a broker restart named its topics to the new broker as it reconnected, and
Tansu created them with 4 partitions before anyone created them from the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
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


class BrokerReplaced(DependencyUnavailable):
    """The broker does not hold this service's marker: the batch in hand is not published."""


class BrokerEpoch:
    """Notices a broker this service has not published to, and republishes the outbox to it.

    Give the relay :meth:`publish_outbox` as its publish function and :meth:`batch` as its
    guard (then :meth:`attach` it): every batch first checks the marker, so a new broker gets
    its topics and the whole outbox, in id order, before any newer row. The relay holds the
    lock across each batch (select, publish, mark), so the outbox is never queued again
    between a batch's publish and its mark, which would mark rows the new broker never got.
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
        #: Held by the relay across each of its batches, and by every check here.
        self.lock = asyncio.Lock()
        self._verified_at = -float("inf")
        self._needs_requeue = False
        self._reader: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    def attach(self, relay: OutboxRelay) -> None:
        """The relay that publishes what :meth:`ensure` and the checks queue again."""
        self.relay = relay

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """One relay batch (the relay's ``guard``): holds :attr:`lock` across it.

        A batch refused because the broker was new queues the outbox again here first, with
        no batch in flight and (on PostgreSQL) no row locked, so the relay then starts over
        from its oldest row and old rows keep their order before new ones.
        """
        async with self.lock:
            if self._needs_requeue:
                await self._queue_again()
            yield

    async def publish_outbox(self, records: Sequence[Record]) -> None:
        """The relay's publish (under :attr:`lock`): checks the broker holds this service's
        marker, then publishes.

        The check comes first (at most every :data:`VERIFY_EVERY` seconds; a broker restarts
        slower than that): after a restart, a publish to a topic the new broker lacks would
        auto-create it with the broker's default partition count, and a producer that waits
        for the broker to come back does not fail, so nothing else tells.
        """
        now = asyncio.get_running_loop().time()
        if not self._needs_requeue and now - self._verified_at >= VERIFY_EVERY:
            if await self._known():
                self._verified_at = now
            else:
                self._needs_requeue = True
        if self._needs_requeue:
            if self.relay is not None:
                self.relay.wake()
            raise BrokerReplaced(f"new broker {self.bootstrap}: outbox to queue again")
        await self.publish(records)

    async def create_topics(self) -> None:
        """Create the marker topic and :attr:`topics` where the broker lacks them."""
        await ensure_topics(self.bootstrap, [(MARKER_TOPIC, 1), *self.topics])

    async def _queue_again(self) -> int:
        """Create the topics, queue the whole outbox again, then write a new marker.

        The rows are queued in the database before the marker is written, so a crash after
        the marker loses nothing: the next start finds the marker and its relay publishes the
        rows still queued. Every later batch checks the marker, so a broker replaced again
        while the outbox goes out is noticed as the first one was.
        """
        await self.create_topics()
        count = await republish_outbox(self.session_factory)
        self.marker = None
        self._needs_requeue = False
        self.republished += 1
        log.info("new broker: outbox queued again", rows=count, broker=self.bootstrap)
        await self._write_marker()
        self._verified_at = asyncio.get_running_loop().time()
        return count

    async def _write_marker(self) -> None:
        token = uuid.uuid4().hex.encode()
        await self.publish([Record(MARKER_TOPIC, token, key=self.service.encode())])
        # Read back for its place. Should that fail, the marker stays unknown and the next
        # check looks for it by key over the whole (one-partition, small) topic.
        self.marker = await self._find(token)

    async def _find(self, token: bytes | None = None) -> Marker | None:
        """This service's last marker on the broker (the one holding ``token``, if given)."""
        records = await read_topics(self.bootstrap, [MARKER_TOPIC], within=CHECK_TIMEOUT)
        ours = [
            r
            for r in records
            if r.key == self.service.encode() and (token is None or r.value == token)
        ]
        if not ours:
            return None
        return Marker(ours[-1].partition, ours[-1].offset, bytes(ours[-1].value or b""))

    async def _known(self) -> bool:
        """Whether the broker holds this service's marker."""
        if self.marker is None:
            await ensure_topics(self.bootstrap, [(MARKER_TOPIC, 1)])
            self.marker = await self._find()
            return self.marker is not None
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                return await self._holds(self.marker)
        except BaseException:
            # A reader that met a vanished broker may hold stale metadata: start a new one.
            await self._close_reader()
            raise

    async def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            # Stopping a reader whose broker vanished must not hang the check either.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CHECK_TIMEOUT):
                    await reader.stop()

    async def _holds(self, marker: Marker) -> bool:
        """Whether the marker is at its place: one long-lived reader (no group) reads it.

        A reader per check was a storm of short-lived connections on a loaded broker (a check
        before nearly every relay batch of every service).
        """
        if self._reader is None:
            reader = topic_reader(self.bootstrap)
            await reader.start()
            self._reader = reader
        consumer = self._reader
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
        async with self.lock:
            if await self._known():
                return False
            await self._queue_again()
        if self.relay is not None:  # its batches take the lock
            await self.relay.run_once()
        return True

    async def check(self) -> None:
        """One periodic check: notice a broker replaced while this service published nothing.

        Under :attr:`lock`, so no relay batch is between its publish and its mark meanwhile.
        """
        async with self.lock:
            if self._needs_requeue or not await self._known():
                await self._queue_again()
                if self.relay is not None:
                    self.relay.wake()

    async def watch(self) -> None:
        """:meth:`check` every ``interval`` seconds; failures (a broker restarting) are retried."""
        failing = False
        while True:
            await asyncio.sleep(self.interval)
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
        await self._close_reader()
