"""The session fixtures really start working infrastructure."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.integration


async def test_kafka_bootstrap_produces_and_consumes(
    kafka_bootstrap: str, unique_name: object
) -> None:
    """A record produced to a freshly created topic comes back to a consumer group."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = unique_name("fixture-topic")  # type: ignore[operator]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"app-1")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=unique_name("fixture-group"),  # type: ignore[operator]
        auto_offset_reset="earliest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=15)
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"app-1", b"hello")


async def test_pg_url_is_a_fresh_database(pg_url: str) -> None:
    """The database exists, is reachable with the URL's driver and has no tables yet."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    assert pg_url.startswith("postgresql+asyncpg://postgres@127.0.0.1:5432/")
    engine = create_async_engine(pg_url)
    try:
        async with engine.connect() as conn:
            name = (await conn.execute(text("SELECT current_database()"))).scalar_one()
            tables = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM information_schema.tables WHERE table_schema='public'"
                    )
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    assert pg_url.endswith(f"/{name}")
    assert tables == 0


async def test_temporal_dev_accepts_clients(temporal_dev: str) -> None:
    """A client connects; the server reports healthy and knows the default namespace."""
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.client import Client

    client = await Client.connect(temporal_dev)
    assert await client.service_client.check_health()
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace="default")
    )
    assert described.namespace_info.name == "default"


async def test_temporal_time_skipping_skips_time(temporal_time_skipping: object) -> None:
    """The time-skipping environment jumps a day forward without waiting for it."""
    from datetime import timedelta

    from temporalio.testing import WorkflowEnvironment

    assert isinstance(temporal_time_skipping, WorkflowEnvironment)
    before = await temporal_time_skipping.get_current_time()
    await temporal_time_skipping.sleep(timedelta(days=1))
    after = await temporal_time_skipping.get_current_time()
    assert after - before >= timedelta(days=1)


def test_unique_name_never_repeats(unique_name: object) -> None:
    """Names differ between calls and keep the prefix."""
    names = {unique_name("t") for _ in range(100)}  # type: ignore[operator]
    assert len(names) == 100
    assert all(name.startswith("t-") for name in names)
