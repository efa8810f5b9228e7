"""Temporal unreachable for a minute under load: the worker's bridge waits, then catches up.

The worker reaches the session's Temporal dev server through a TCP proxy the test cuts (the
shared server keeps running). Facts keep arriving throughout: for each application its
submission and an ineligible decision, which the bridge forwards (signal-with-start) and the
workflow answers with ``application.rejected``. While the line is cut, ``/health`` says the
worker waits for ``temporal``; once it is back, every journey ends with exactly one rejection,
no fact is dead-lettered, and the time from the end of the outage to the last rejection is
printed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts import catalog
from contracts.envelope import Actor, Envelope
from contracts.topics import TOPICS, get_topic, topic_for_type
from contracts.v1.common import EligibilityOutcome
from services.kit.db import create_engine
from services.kit.messaging import Record, create_producer, ensure_topics
from tests.kit.helpers import fresh_database, scalar
from tests.outages.helpers import (
    OUTAGE_SECONDS,
    RECOVERY_TIMEOUT,
    TEST_TIMEOUT,
    Load,
    at_least,
    event_ids_by_subject,
    is_ok,
    records_with_keys,
    report,
    wait_for,
    waits_for,
)
from tests.support import free_port, running_broker, serving
from tests.tcp_proxy import TcpProxy, tcp_proxy
from tests.workflows.scenarios import assessment
from workflows.settings import Settings
from workflows.worker import create_app

pytestmark = [pytest.mark.integration, pytest.mark.resilience, pytest.mark.timeout(TEST_TIMEOUT)]

#: Applications per second (two facts each), before, during and after the outage.
RATE = 2.0
BEFORE_SECONDS = 5.0
AFTER_SECONDS = 5.0


def _facts(count: int) -> tuple[list[Record], list[str]]:
    """For ``count`` applications: the submission, then the ineligible decision."""
    run = uuid.uuid4().hex[:6]
    example = catalog.example_payloads("application.submitted")[0]
    records: list[Record] = []
    subjects: list[str] = []
    for i in range(count):
        app_id = f"app_out{run}{i:05d}"
        correlation = uuid.uuid4()
        submitted = example.model_copy(update={"application_id": app_id, "firm_id": "ACME"})
        decision = assessment(app_id, EligibilityOutcome.INELIGIBLE)
        for message_type, payload in (
            ("application.submitted", submitted),
            ("eligibility.assessed", decision),
        ):
            env: Envelope[Any] = catalog.make_envelope(
                message_type,
                payload,
                subject=app_id,
                actor=Actor.system("tests"),
                producer="tests",
                correlation_id=correlation,
            )
            records.append(
                Record(
                    topic=topic_for_type(message_type).name,
                    value=catalog.encode(env),
                    key=app_id.encode(),
                    headers=tuple(env.headers()),
                )
            )
        subjects.append(app_id)
    return records, subjects


@pytest.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[str]:
    """A broker of the test's own. The session's holds the records of earlier tests (another
    outage test's 1,750 submissions, eligible ones among them), and the worker's new consumer
    groups read every topic from its start: they would be busy with those long before this
    test's own facts."""
    async with running_broker(tmp_path / "tansu.log") as broker:
        yield broker.bootstrap


@pytest.fixture
async def proxy(temporal_dev: str) -> AsyncIterator[TcpProxy]:
    host, port = temporal_dev.rsplit(":", 1)
    async with tcp_proxy(host, int(port)) as line:
        yield line


async def free_activity_slots(client: Any) -> float:
    """The worker's free activity slots, from the Temporal SDK's gauge on ``/metrics``."""
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith("temporal_worker_task_slots_available{") and (
            'worker_type="ActivityWorker"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("the worker's /metrics has no activity slots gauge")


async def unpublished(database_url: str) -> int:
    """Rows of the worker's outbox not yet on the broker."""
    engine = create_engine(database_url)
    try:
        return int(await scalar(engine, "SELECT count(*) FROM outbox WHERE published_at IS NULL"))
    finally:
        await engine.dispose()


class Rejections:
    """Counts ``application.rejected`` per application on ``approvals.events``, live.

    It reads the partitions directly, with no consumer group: a starved host that misses a
    heartbeat must not stall the count behind a rebalance.
    """

    def __init__(self, bootstrap: str, subjects: list[str]) -> None:
        self.wanted = set(subjects)
        self.event_ids: dict[str, set[uuid.UUID]] = {}
        self._topic = get_topic("approvals.events")
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        partitions = [TopicPartition(self._topic.name, p) for p in range(self._topic.partitions)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if record.key is None or record.key.decode() not in self.wanted:
                        continue
                    env = catalog.decode(record.value)
                    if env.type == "application.rejected":
                        self.event_ids.setdefault(env.subject, set()).add(env.event_id)

    def count(self) -> int:
        return len(self.event_ids)

    async def caught_up(self) -> bool:
        """Whether every record on the topic so far has been read and counted (the counting
        runs right after each fetch, with no await in between)."""
        partitions = [TopicPartition(self._topic.name, p) for p in range(self._topic.partitions)]
        ends = await self._consumer.end_offsets(partitions)
        for partition in partitions:
            if await self._consumer.position(partition) < ends[partition]:
                return False
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


async def test_temporal_unreachable_for_a_minute_under_load(
    own_broker: str,
    temporal_dev: str,
    proxy: TcpProxy,
    pg_url: str,
    tmp_path: Path,
    unique_name: Callable[[str], str],
) -> None:
    await ensure_topics(
        own_broker,
        [(name, t.partitions) for t in TOPICS for name in (t.name, t.dlq)],
    )
    total = int(RATE * (BEFORE_SECONDS + OUTAGE_SECONDS + AFTER_SECONDS))
    records, subjects = _facts(total)
    rejections = Rejections(own_broker, subjects)
    producer = create_producer(own_broker)
    await producer.start()
    await rejections.start()
    load = Load(producer, records, RATE * 2)
    try:
        async with fresh_database(pg_url, "worker") as database_url:
            settings = Settings(
                kafka_bootstrap=own_broker,
                temporal_address=proxy.address,
                database_url=database_url,
                port=free_port(),
                var_dir=tmp_path,
                task_queue=unique_name("outage-temporal"),
                review_url="http://127.0.0.1:9",  # ineligible journeys never ask the desk
                consumer_group_prefix=f"{unique_name('outage-temporal')}-",
            )
            app = create_app(settings)
            async with serving(app, settings.port) as client:
                await wait_for(lambda: is_ok(client), timeout=90)
                idle_slots = await free_activity_slots(client)
                load.start()
                await wait_for(lambda: at_least(rejections.count, 1), timeout=60)
                await wait_for(
                    lambda: at_least(lambda: load.sent, int(RATE * 2 * BEFORE_SECONDS)),
                    timeout=30,
                )

                await proxy.cut()
                cut_at = time.monotonic()
                await wait_for(lambda: waits_for(client, "temporal"), timeout=OUTAGE_SECONDS / 2)
                waiting = (await client.get("/health")).json()

                # An activity the worker was running at the cut still finishes, and its
                # rejection is published without Temporal: what counts is what happens after
                # it. So the count starts once no activity runs, the worker's outbox is empty
                # and every rejection on the topic has been read.
                async def settled() -> bool:
                    return (
                        await free_activity_slots(client) == idle_slots
                        and await unpublished(database_url) == 0
                        and await rejections.caught_up()
                    )

                await wait_for(settled, timeout=OUTAGE_SECONDS / 2)
                rejected_soon_after_cut = rejections.count()
                await wait_for(
                    lambda: at_least(lambda: time.monotonic() - cut_at, OUTAGE_SECONDS),
                    timeout=OUTAGE_SECONDS + 5,
                    interval=1,
                )
                rejected_during = rejections.count() - rejected_soon_after_cut
                await proxy.restore()
                restored_at = time.monotonic()
                at_restore = rejections.count()
                backlog = total - at_restore
                await wait_for(
                    lambda: at_least(rejections.count, at_restore + 1), timeout=RECOVERY_TIMEOUT
                )
                first_s = time.monotonic() - restored_at

                await load.finished()
                await wait_for(lambda: at_least(rejections.count, total), timeout=RECOVERY_TIMEOUT)
                recovered_s = time.monotonic() - restored_at
                await wait_for(lambda: is_ok(client), timeout=60)
    finally:
        await load.stop()
        await rejections.stop()
        await producer.stop()

    assert "temporal" in waiting["waiting_for"]
    assert waiting["status"] == "degraded"
    assert rejected_during == 0, "no journey advances without Temporal"
    # Every journey ended once, with one rejection event; no fact dead-lettered.
    assert set(rejections.event_ids) == set(subjects)
    assert all(len(ids) == 1 for ids in rejections.event_ids.values())
    keys = {subject.encode() for subject in subjects}
    for topic in ("applications.events", "eligibility.events"):
        assert await records_with_keys(own_broker, get_topic(topic).dlq, keys) == []
    published = await records_with_keys(own_broker, get_topic("approvals.events").name, keys)
    by_subject = event_ids_by_subject([v for _k, v in published], "application.rejected")
    assert all(len(ids) == 1 for ids in by_subject.values())

    report(
        "temporal",
        outage_s=OUTAGE_SECONDS,
        applications=total,
        facts=len(records),
        backlog_at_restore=backlog,
        first_journey_s=round(first_s, 2),
        recovery_s=round(recovered_s, 2),
    )
