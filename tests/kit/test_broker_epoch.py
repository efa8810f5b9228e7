"""A broker that lost everything gets the outbox again, and consumers end up with it once.

The test runs its own Tansu (the session's broker is shared): it kills it with SIGKILL, starts
a new, empty one on the same port, and checks that the running service side noticed the new
broker, republished its whole outbox (rows written before and during the outage), and that the
consumer group, starting over on the new broker, applied every message exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from services.cli.embedded import TansuBroker
from services.cli.main import app
from services.kit.db import create_session_factory
from services.kit.messaging import (
    CONSUMER_HEARTBEAT_INTERVAL_MS,
    CONSUMER_SESSION_TIMEOUT_MS,
    METADATA_MAX_AGE_MS,
    create_producer,
    ensure_topics,
    forbid_topic_auto_creation,
    send_all,
)
from services.kit.outbox import OutboxRelay
from services.kit.republish import MARKER_TOPIC, BrokerEpoch, republish_outbox
from services.kit.uow import UnitOfWorkFactory
from tests.kit.helpers import counter, envelope, eventually, read_topic, scalar
from tests.kit.test_delivery_guarantees import consuming
from tests.support import running_broker, topic_names

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def private_broker(tmp_path: Path) -> AsyncIterator[TansuBroker]:
    async with running_broker(tmp_path / "tansu-1.log") as broker:
        yield broker


def _sigkill(broker: TansuBroker) -> None:
    """The broker dies with everything it held."""
    process = broker.proc.process if broker.proc else None
    assert process is not None
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)


async def _start_empty_on_its_port(broker: TansuBroker, log_path: Path) -> None:
    """A new, empty broker takes the dead one's port (the fixture stops it)."""
    replacement = TansuBroker(port=broker.port, log_path=log_path)
    replacement.start()
    broker.proc = replacement.proc
    await replacement.wait_ready()


async def test_a_new_empty_broker_gets_the_outbox_and_consumers_apply_it_once(
    pg_engine: AsyncEngine,
    private_broker: TansuBroker,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    bootstrap = private_broker.bootstrap
    topic = unique_name("epoch")
    topics = [(topic, 3), (f"{topic}.dlq", 3)]
    await ensure_topics(bootstrap, topics)
    sessions = create_session_factory(pg_engine)
    uow_factory = UnitOfWorkFactory(sessions)
    producer = create_producer(bootstrap)
    await producer.start()
    epoch = BrokerEpoch(
        unique_name("svc"),
        bootstrap,
        session_factory=sessions,
        publish=partial(send_all, producer),
        topics=topics,
        interval=0.5,
    )
    relay = OutboxRelay(sessions, epoch.publish_outbox, poll_interval=0.2)
    epoch.attach(relay)

    async def write(count: int) -> list[str]:
        messages = [envelope() for _ in range(count)]
        async with uow_factory() as uow:
            for message in messages:
                uow.add_outbox(message, topic)
            await uow.commit()
        relay.wake()
        return [m.subject for m in messages]

    before = await write(20)
    try:
        assert await epoch.ensure()  # first contact: the (empty) broker gets the outbox
        assert not await epoch.ensure()  # and now knows this service
        relay.start()
        epoch.start()
        group = unique_name("g")

        async def applied(subjects: list[str]) -> bool:
            return all([await counter(pg_engine, s) == 1 for s in subjects])

        async with consuming(bootstrap, pg_engine, producer, topic, group):
            await eventually(partial(applied, before))
        # The consumers stop with the platform (a consumer left running in a process that allows
        # topic auto-creation would create its topics on the new broker with Tansu's default
        # partition count; services forbid it: see the next test).

        # The broker dies with everything it held; a new, empty one takes its port.
        _sigkill(private_broker)
        during = await write(10)  # written while there is no broker at all
        await _start_empty_on_its_port(private_broker, tmp_path / "tansu-2.log")

        async def republished() -> bool:
            return epoch.republished == 2 and epoch.marker is not None

        await eventually(republished, timeout=60)
        async with consuming(bootstrap, pg_engine, producer, topic, group):
            await eventually(partial(applied, before + during), timeout=60)
            after = await write(5)
            await eventually(partial(applied, after), timeout=30)
        assert epoch.republished == 2
        # Exactly once: one processed mark and one counter step per message.
        assert await scalar(pg_engine, "SELECT count(*) FROM processed_messages") == 35
        assert await scalar(pg_engine, "SELECT sum(value) FROM test_counters") == 35
        # The new broker holds the whole outbox again (not only what was written after).
        on_topic = await read_topic(bootstrap, topic, count=35, timeout=20)
        assert len({r.value for r in on_topic}) == 35
        # Created with its own partition count before anything was published to it again.
        assert {r.partition for r in on_topic} <= {0, 1, 2}
        assert len(await read_topic(bootstrap, MARKER_TOPIC, count=1)) >= 1
    finally:
        await epoch.stop()
        await relay.stop()
        await producer.stop()


@pytest.fixture
def no_topic_auto_creation() -> Iterator[None]:
    """What the service runner does, undone after the test (it is process-wide)."""
    undo = forbid_topic_auto_creation()
    try:
        yield
    finally:
        undo()


async def test_a_consumer_across_a_broker_restart_does_not_create_its_topics_with_4_partitions(
    no_topic_auto_creation: None,
    private_broker: TansuBroker,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    """Before, the consumer named its topic to the new broker and Tansu created it with 4."""
    bootstrap = private_broker.bootstrap
    topic = unique_name("six")
    await ensure_topics(bootstrap, [(topic, 6)])
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=unique_name("g"),
        auto_offset_reset="earliest",
        session_timeout_ms=CONSUMER_SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=CONSUMER_HEARTBEAT_INTERVAL_MS,
        metadata_max_age_ms=METADATA_MAX_AGE_MS,
    )
    await consumer.start()
    seen: set[tuple[int, bytes]] = set()
    polling = True

    async def poll() -> None:
        while polling:
            batches = await consumer.getmany(timeout_ms=200)
            seen.update((r.partition, r.value) for rs in batches.values() for r in rs)

    poller = asyncio.create_task(poll())
    try:

        async def assigned_all() -> bool:
            return len(consumer.assignment()) == 6

        await eventually(assigned_all, timeout=30)
        _sigkill(private_broker)
        await _start_empty_on_its_port(private_broker, tmp_path / "tansu-2.log")

        # The consumer has asked the new broker about its topic: it is gone from its metadata.
        async def lost_the_topic() -> bool:
            return not consumer.partitions_for_topic(topic)

        await eventually(lost_the_topic, timeout=30)
        assert topic not in await topic_names(bootstrap)

        # Created from the registry, as the supervisor and every service's epoch do.
        await ensure_topics(bootstrap, [(topic, 6)])
        producer = create_producer(bootstrap)
        await producer.start()
        try:
            for partition in range(6):
                await producer.send_and_wait(topic, f"p{partition}".encode(), partition=partition)
        finally:
            await producer.stop()

        async def read_every_partition() -> bool:
            return {p for p, _ in seen} == set(range(6))

        await eventually(read_every_partition, timeout=60)
        assert consumer.assignment() == {TopicPartition(topic, p) for p in range(6)}
    finally:
        polling = False
        await poller
        await consumer.stop()


async def test_republish_queues_rows_since_a_time(pg_engine: AsyncEngine) -> None:
    sessions = create_session_factory(pg_engine)
    uow_factory = UnitOfWorkFactory(sessions)
    async with uow_factory() as uow:
        for _ in range(3):
            uow.add_outbox(envelope(), "anywhere")
        await uow.commit()
    async with pg_engine.begin() as conn:
        await conn.execute(sa.text("UPDATE outbox SET published_at = now()"))
    assert await scalar(pg_engine, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
    assert await republish_outbox(sessions) == 3
    assert await scalar(pg_engine, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 3


async def test_the_cli_republishes_one_services_outbox(tmp_path: Path) -> None:
    from services.applications.settings import Settings
    from services.kit.db import create_engine
    from services.kit.migrations import upgrade_to_head

    settings = Settings(var_dir=tmp_path)
    engine = create_engine(settings.database_url)
    try:
        await upgrade_to_head(engine, REPO_ROOT / "services" / "applications" / "migrations")
        uow_factory = UnitOfWorkFactory(create_session_factory(engine))
        async with uow_factory() as uow:
            uow.add_outbox(envelope(), "applications.events")
            uow.add_outbox(envelope(), "applications.events")
            await uow.commit()
        async with engine.begin() as conn:
            await conn.execute(sa.text("UPDATE outbox SET published_at = CURRENT_TIMESTAMP"))

        args = ["outbox", "republish", "--service", "applications", "--var-dir", str(tmp_path)]
        result = await asyncio.to_thread(CliRunner().invoke, app, args)
        assert result.exit_code == 0, result.output
        assert "applications: 2 outbox row(s) queued" in result.output
        async with engine.connect() as conn:
            pending = await conn.scalar(
                sa.text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            )
        assert pending == 2
        result = await asyncio.to_thread(
            CliRunner().invoke, app, ["outbox", "republish", "--service", "nope"]
        )
        assert result.exit_code == 2
    finally:
        await engine.dispose()
