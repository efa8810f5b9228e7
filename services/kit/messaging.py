"""Kafka plumbing shared by the relay, the dead-letter publisher and the service runtime.

Tansu (the embedded broker) rejects aiokafka's idempotent and transactional producers, so the
producer here is a plain one with ``acks="all"``; exactly-once effects come from the outbox and
idempotent consumers instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka import client as aiokafka_client
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin import client as aiokafka_admin_client
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.protocol.metadata import MetadataRequest

from services.kit.logging import get_logger
from services.kit.retry import wait_until_available

log = get_logger(__name__)

#: Consumer settings Tansu needs: it completes a group join after half the session timeout.
CONSUMER_SESSION_TIMEOUT_MS = 2000
CONSUMER_HEARTBEAT_INTERVAL_MS = 500
#: A member that has not polled for this long leaves its group (heartbeats run in the
#: background meanwhile). A consumer waiting out an outage hands its batch back and polls again
#: well before that (``RetryPolicy.hold``).
CONSUMER_MAX_POLL_INTERVAL_MS = 5 * 60 * 1000
#: Producer batch size per partition (bytes).
PRODUCER_MAX_BATCH_BYTES = 256 * 1024
#: How often a service's clients refresh their cluster metadata (the client default is 5
#: minutes). A broker that comes back empty gets its topics again from whoever notices it first
#: (the supervisor, a service's :class:`~services.kit.republish.BrokerEpoch`); a consumer group
#: sees them within this and rebalances onto their partitions.
METADATA_MAX_AGE_MS = 5_000


class _MetadataRequestCreatingNothing(MetadataRequest):  # type: ignore[misc]
    """aiokafka's metadata request with ``allow_auto_topic_creation`` false by default."""

    def __init__(
        self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = False
    ) -> None:
        super().__init__(topics, allow_auto_topic_creation)


def forbid_topic_auto_creation() -> Callable[[], None]:
    """Make every Kafka client of this process name topics without creating them.

    A broker creates a topic any client names in a metadata request, with its default partition
    count (Tansu: 4), unless the request says not to; aiokafka always says it may, and has no
    setting for it. A consumer still subscribed across a broker restart names its topics to the
    new, empty broker as it reconnects: ``disbursement.events`` then came back with 4 partitions
    instead of the registry's 6, and the partitions the group never read stranded two journeys
    (Tansu cannot add partitions afterwards). Topics are created from the registry only
    (``incentives topics create``, the supervisor, :class:`~services.kit.republish.BrokerEpoch`);
    until they exist a consumer is assigned none of their partitions and a producer waits.

    The service runner calls this before a service is built; it swaps the request class in
    aiokafka's client and admin modules, where every producer, consumer and admin client of the
    process builds its metadata requests (Tansu answers such a request for a missing topic with
    ``UNKNOWN_TOPIC_OR_PARTITION`` and creates nothing). Returns what undoes it (for tests).
    """
    modules = (aiokafka_client, aiokafka_admin_client)
    before = [module.MetadataRequest for module in modules]
    for module in modules:
        module.MetadataRequest = _MetadataRequestCreatingNothing

    def undo() -> None:
        for module, request in zip(modules, before, strict=True):
            module.MetadataRequest = request

    return undo


@dataclass(frozen=True)
class Record:
    """One Kafka record to publish."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = field(default_factory=tuple)


def create_producer(bootstrap: str, *, client_id: str = "incentives") -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas; call ``await producer.start()``.

    ``linger_ms`` batches the relay's bursts into few requests without hurting latency much.
    ``max_batch_size`` (per partition; the client default is 16 KiB, about seven envelopes)
    lets one relay cycle go out as a few large batches: measured, it halves the producer's CPU
    per record. It stays well under the broker's default 1 MiB message limit.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        linger_ms=2,
        max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        request_timeout_ms=10_000,
        metadata_max_age_ms=METADATA_MAX_AGE_MS,
    )


async def send_all(producer: AIOKafkaProducer, records: Iterable[Record]) -> None:
    """Send records and wait until the broker acknowledged every one of them.

    Sends are queued in order before any is awaited, so they batch; aiokafka keeps one request in
    flight per partition, so records of one key arrive in the order given.
    """
    futures = [
        await producer.send(r.topic, value=r.value, key=r.key, headers=list(r.headers))
        for r in records
    ]
    if futures:
        await asyncio.gather(*futures)


def bootstrap_addresses(bootstrap: str) -> list[tuple[str, int]]:
    """``"h1:9092,h2:9093"`` -> ``[("h1", 9092), ("h2", 9093)]``."""
    out: list[tuple[str, int]] = []
    for part in bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        out.append((host or part.strip(), int(port or 9092)))
    return out


async def broker_reachable(bootstrap: str, within: float = 1.0) -> bool:
    """Whether any bootstrap server accepts a TCP connection.

    A plain socket probe: aiokafka logs an error line per failed connect, which is noise while a
    service simply waits for the broker to come up.
    """
    for host, port in bootstrap_addresses(bootstrap):
        try:
            async with asyncio.timeout(within):
                _reader, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            continue
        writer.close()
        await writer.wait_closed()
        return True
    return False


async def wait_for_broker(
    bootstrap: str, *, interval: float = 1.0, deadline: float | None = None
) -> None:
    """Block until the broker accepts connections, logging one line while it does not."""

    async def reachable() -> None:
        if not await broker_reachable(bootstrap):
            raise ConnectionError(f"broker {bootstrap} refused the connection")

    try:
        await wait_until_available(
            reachable, name=f"broker {bootstrap}", interval=interval, deadline=deadline
        )
    except ConnectionError:
        raise TimeoutError(f"broker {bootstrap} not reachable after {deadline:.0f}s") from None


async def ensure_topics(
    bootstrap: str, topics: Iterable[tuple[str, int]], *, replication_factor: int = 1
) -> None:
    """Create topics with explicit partition counts; existing topics are left alone.

    Explicit creation matters: auto-created topics get the broker's default partition count.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name=name, num_partitions=partitions, replication_factor=replication_factor)
            for name, partitions in topics
            if name not in existing
        ]
        if wanted:
            # Created concurrently by another process: the goal is reached all the same.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
    finally:
        await admin.close()


async def topic_partitions(
    consumer: AIOKafkaConsumer, topic: str, *, within: float = 10.0
) -> set[int]:
    """The partitions of ``topic``, or none when it does not exist ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        if time.monotonic() > deadline:
            return set()  # the topic does not exist (yet): it holds nothing
        await consumer.topics()  # refreshes the cluster metadata
        await asyncio.sleep(0.1)


def topic_reader(bootstrap: str) -> AIOKafkaConsumer:
    """A consumer for reading topics by partition; call ``await consumer.start()``."""
    # No group: reading commits nothing and disturbs no consumer.
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=10_000,
    )


async def read_topics(
    bootstrap: str, topics: Iterable[str], *, within: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record the broker holds on ``topics`` now, in (topic, partition, offset) order.

    A topic that does not exist holds nothing. Raises ``TimeoutError`` after ``within`` seconds.
    """
    consumer = topic_reader(bootstrap)
    await consumer.start()
    try:
        assigned = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(await topic_partitions(consumer, topic))
        ]
        if not assigned:
            return []
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        starts = await consumer.beginning_offsets(assigned)
        await consumer.seek_to_beginning(*assigned)
        remaining = {tp for tp in assigned if ends[tp] > starts[tp]}
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + within
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {sorted(t.topic for t in remaining)} timed out")
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, batch_records in batch.items():
                records.extend(r for r in batch_records if r.offset < ends[tp])
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return sorted(records, key=lambda r: (r.topic, r.partition, r.offset))
    finally:
        await consumer.stop()
