"""The eligibility service on the real broker and PostgreSQL, end to end through its topics.

One service instance (under uvicorn, as in production) serves the whole module. The topics
are the registry's fixed names, shared with the rest of the session, so every test uses its
own application ids and reads only its own keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import catalog
from contracts.envelope import Envelope
from contracts.topics import TOPICS
from services.eligibility.handlers import decision_event_id
from services.eligibility.main import create_app
from services.eligibility.rulefiles import load_catalog
from services.eligibility.settings import Settings
from services.kit.db import create_engine
from services.kit.dlq import parse_dead_letter
from services.kit.messaging import create_producer, ensure_topics
from services.kit.runtime import server_config
from tests.eligibility.builders import amended, money, new_application_id, submitted
from tests.kit.helpers import eventually, fresh_database, scalar
from tests.support import free_port

pytestmark = pytest.mark.integration

SUBMITTED_AT = datetime(2026, 11, 26, 10, 35, 2, tzinfo=UTC)
APPLICATIONS = "applications.events"
ELIGIBILITY = "eligibility.events"


@dataclass
class Running:
    """The service under test and what the tests talk to."""

    bootstrap: str
    engine: AsyncEngine
    producer: AIOKafkaProducer

    async def publish(self, value: bytes | Envelope[Any], key: str) -> None:
        if isinstance(value, Envelope):
            await self.producer.send_and_wait(
                APPLICATIONS, catalog.encode(value), key=key.encode(), headers=value.headers()
            )
        else:
            await self.producer.send_and_wait(APPLICATIONS, value, key=key.encode())

    async def processed(self, *event_ids: uuid.UUID) -> bool:
        for event_id in event_ids:
            count = await scalar(
                self.engine,
                "SELECT count(*) FROM processed_messages WHERE event_id = :id",
                id=event_id,
            )
            if not count:
                return False
        return True

    async def relayed(self) -> bool:
        pending = await scalar(
            self.engine, "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        )
        return pending == 0

    async def decisions(self, application_id: str) -> int:
        count = await scalar(
            self.engine,
            "SELECT count(*) FROM eligibility_decisions WHERE application_id = :id",
            id=application_id,
        )
        return int(count)


@pytest.fixture(scope="module")
async def service(
    kafka_bootstrap: str, pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    await ensure_topics(
        kafka_bootstrap,
        [(name, topic.partitions) for topic in TOPICS for name in (topic.name, topic.dlq)],
    )
    async with fresh_database(pg_url, "eligibility") as database_url:
        port = free_port()
        settings = Settings(
            kafka_bootstrap=kafka_bootstrap,
            database_url=database_url,
            port=port,
            var_dir=tmp_path_factory.mktemp("eligibility"),
        )
        server = uvicorn.Server(server_config(create_app(settings), host="127.0.0.1", port=port))
        task = asyncio.create_task(server.serve())
        engine = create_engine(database_url)
        producer = create_producer(kafka_bootstrap)
        await producer.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

                async def healthy() -> bool:
                    with contextlib.suppress(httpx.TransportError):
                        return (await client.get("/health")).status_code == 200
                    return False

                await eventually(healthy, timeout=30)
            yield Running(kafka_bootstrap, engine, producer)
        finally:
            await producer.stop()
            await engine.dispose()
            server.should_exit = True
            await asyncio.wait_for(task, 30)


async def read_keyed(
    bootstrap: str,
    topic: str,
    key: str,
    *,
    until: Callable[[list[Any]], bool] = bool,
    timeout: float = 20.0,
) -> list[Any]:
    """Every record of ``topic`` with ``key``, read from the start until ``until`` holds and
    the end offsets seen at the last attempt are reached (so nothing published is missed)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        while not partitions:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(topic)
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        deadline = time.monotonic() + timeout
        while True:
            await consumer.seek_to_beginning(*assigned)
            ends = await consumer.end_offsets(assigned)
            matching: list[Any] = []
            while await _behind(consumer, ends):
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    matching.extend(r for r in records if r.key == key.encode())
            if until(matching) or time.monotonic() > deadline:
                return matching
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


async def test_a_submission_is_assessed_and_published(service: Running) -> None:
    app_id = new_application_id()
    incoming = submitted(app_id, submitted_at=SUBMITTED_AT)
    await service.publish(incoming, app_id)

    [record] = await read_keyed(service.bootstrap, ELIGIBILITY, app_id)
    envelope = catalog.decode(record.value)
    rule_set = load_catalog().in_force(SUBMITTED_AT)
    assert envelope.type == "eligibility.assessed"
    assert envelope.event_id == decision_event_id(app_id, 1)
    assert envelope.causation_id == incoming.event_id
    assert envelope.correlation_id == incoming.correlation_id
    assert envelope.actor.id == "system:eligibility"
    assert dict(record.headers)["type"] == b"eligibility.assessed"
    payload = envelope.payload
    assert payload.outcome == "eligible"
    assert (payload.rule_set_id, payload.rule_set_version) == ("gaip-eligibility", "2026.1")
    assert payload.rule_set_sha256 == rule_set.sha256
    assert [r.rule_id for r in payload.rule_results] == [r.id for r in rule_set.rules]
    assert await service.decisions(app_id) == 1


async def test_an_ineligible_submission_names_its_reasons(service: Running) -> None:
    app_id = new_application_id()
    changes = {"proposal.sector": "other", "proposal.investment_commitment": money("200000")}
    await service.publish(submitted(app_id, submitted_at=SUBMITTED_AT, changes=changes), app_id)
    [record] = await read_keyed(service.bootstrap, ELIGIBILITY, app_id)
    payload = catalog.decode(record.value).payload
    assert payload.outcome == "ineligible"
    failed = [r for r in payload.rule_results if not r.passed]
    assert [r.rule_id for r in failed] == ["priority_sector", "minimum_investment"]
    assert all(r.explanation for r in failed)


async def test_duplicates_record_one_decision_and_emit_one_event(service: Running) -> None:
    app_id = new_application_id()
    original = submitted(app_id, submitted_at=SUBMITTED_AT)
    # The same fact re-sent under a new event id (the same revision) is a duplicate too.
    resent = submitted(app_id, submitted_at=SUBMITTED_AT, correlation_id=original.correlation_id)
    for envelope in (original, original, resent, original):
        await service.publish(envelope, app_id)

    await eventually(lambda: service.processed(original.event_id, resent.event_id), timeout=30)
    await eventually(service.relayed, timeout=30)
    records = await read_keyed(service.bootstrap, ELIGIBILITY, app_id)
    assert len(records) == 1
    assert catalog.decode(records[0].value).causation_id == original.event_id
    assert await service.decisions(app_id) == 1


async def test_malformed_events_are_dead_lettered_and_the_next_is_processed(
    service: Running,
) -> None:
    app_id = new_application_id()
    unknown = json.loads(catalog.encode(submitted(app_id, submitted_at=SUBMITTED_AT)))
    unknown["type"] = "application.teleported"
    await service.publish(b"\x00\x01 definitely not an envelope", app_id)
    await service.publish(json.dumps(unknown).encode(), app_id)
    good = submitted(app_id, submitted_at=SUBMITTED_AT)
    await service.publish(good, app_id)

    dead = await read_keyed(
        service.bootstrap, f"{APPLICATIONS}.dlq", app_id, until=lambda rs: len(rs) >= 2
    )
    infos = [parse_dead_letter(list(r.headers)) for r in dead]
    assert [i.reason for i in infos] == ["undecodable", "unknown_message_type"]
    assert {i.consumer for i in infos} == {"eligibility"}
    assert {i.source_topic for i in infos} == {APPLICATIONS}
    assert dead[0].value == b"\x00\x01 definitely not an envelope"

    [record] = await read_keyed(service.bootstrap, ELIGIBILITY, app_id)
    assert catalog.decode(record.value).causation_id == good.event_id


async def test_an_amendment_keeps_the_rules_of_its_first_submission(service: Running) -> None:
    app_id = new_application_id()
    first_submitted = datetime(2026, 12, 31, 22, 0, tzinfo=UTC)
    await service.publish(
        submitted(app_id, submitted_at=first_submitted, changes={"documents": []}), app_id
    )
    amendment = amended(
        app_id,
        revision=2,
        submitted_at=first_submitted,
        amended_at=datetime(2027, 1, 20, tzinfo=UTC),
        changes={"proposal.investment_commitment": money("1200000")},
    )
    await service.publish(amendment, app_id)

    records = await read_keyed(
        service.bootstrap, ELIGIBILITY, app_id, until=lambda rs: len(rs) >= 2
    )
    first, second = (catalog.decode(r.value).payload for r in records)
    assert (first.application_revision, first.outcome) == (1, "needs_information")
    assert first.missing_fields == ["documents"]
    # Under the 2027.1 rules in force when it was amended, 1.2M would be too little.
    assert (second.application_revision, second.outcome) == (2, "eligible")
    assert second.rule_set_version == first.rule_set_version == "2026.2"
    assert await service.decisions(app_id) == 2
