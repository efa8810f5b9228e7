"""The worker on the real stack: Tansu, the Temporal dev server and PostgreSQL.

Facts published on Kafka start and signal IncentiveApproval through the bridge; the workflow's
decision comes back on ``approvals.events``; a redelivered fact changes nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter

from contracts import catalog
from contracts.envelope import Actor, Envelope
from contracts.topics import TOPICS, topic_for_type
from contracts.v1.common import EligibilityOutcome
from services.cli.embedded import free_port
from services.kit.messaging import create_producer, ensure_topics
from tests.kit.helpers import eventually, fresh_database
from tests.workflows.scenarios import assessment
from workflows.approval import IncentiveApproval, Phase
from workflows.settings import Settings
from workflows.worker import create_app

pytestmark = pytest.mark.integration


def envelope_for(message_type: str, payload: Any, correlation_id: uuid.UUID) -> Envelope[Any]:
    return catalog.make_envelope(
        message_type,
        payload,
        subject=payload.application_id,
        actor=Actor.system("tests"),
        producer="tests",
        correlation_id=correlation_id,
    )


async def send(bootstrap: str, *envelopes: Envelope[Any]) -> None:
    producer = create_producer(bootstrap)
    await producer.start()
    try:
        for env in envelopes:
            topic = topic_for_type(env.type).name
            await producer.send_and_wait(
                topic, catalog.encode(env), key=env.subject.encode(), headers=env.headers()
            )
    finally:
        await producer.stop()


async def rejected_events(bootstrap: str, application_id: str, wait: float) -> list[Any]:
    """Every ``application.rejected`` for ``application_id`` seen on approvals.events."""
    consumer = AIOKafkaConsumer(
        "approvals.events",
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    found: list[Any] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    env = catalog.decode(record.value)
                    if env.subject == application_id:
                        found.append(env)
    finally:
        await consumer.stop()
    return found


async def test_bridge_starts_signals_and_the_decision_is_published(
    kafka_bootstrap: str, temporal_dev: str, pg_url: str, tmp_path: Path
) -> None:
    await ensure_topics(
        kafka_bootstrap,
        [(name, t.partitions) for t in TOPICS for name in (t.name, t.dlq)],
    )
    app_id = f"app_{uuid.uuid4().hex[:12]}"
    correlation = uuid.uuid4()
    submitted_payload = catalog.example_payloads("application.submitted")[0].model_copy(
        update={"application_id": app_id, "firm_id": "ACME"}
    )
    submitted = envelope_for("application.submitted", submitted_payload, correlation)
    decision = envelope_for(
        "eligibility.assessed", assessment(app_id, EligibilityOutcome.INELIGIBLE), correlation
    )

    async with fresh_database(pg_url, "worker") as database_url:
        settings = Settings(
            kafka_bootstrap=kafka_bootstrap,
            temporal_address=temporal_dev,
            database_url=database_url,
            port=free_port(),
            var_dir=tmp_path,
            task_queue=f"test-{uuid.uuid4().hex[:8]}",
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            temporal = app.state.temporal
            await eventually(lambda: _ready(temporal), timeout=60)
            # The decision first: the bridge reads two topics, so order is not guaranteed.
            await send(kafka_bootstrap, decision, submitted)

            client = await Client.connect(temporal_dev, data_converter=pydantic_data_converter)
            handle = client.get_workflow_handle_for(IncentiveApproval.run, app_id)

            async def closed() -> bool:
                try:
                    desc = await handle.describe()
                except Exception:
                    return False
                return desc.status is WorkflowExecutionStatus.COMPLETED

            await eventually(closed, timeout=60)
            result = await handle.result()
            first_run = (await handle.describe()).run_id

            # Redeliver both facts: nothing restarts, nothing is published twice.
            await send(kafka_bootstrap, submitted, decision)
            events = await rejected_events(kafka_bootstrap, app_id, wait=8)
            assert (await handle.describe()).run_id == first_run

    assert result.phase is Phase.REJECTED
    assert len(events) == 1
    rejected = events[0]
    assert rejected.payload.stage.value == "eligibility"
    assert rejected.payload.firm_id == "ACME"
    assert rejected.correlation_id == correlation
    assert rejected.causation_id == decision.event_id


async def _ready(temporal: Any) -> bool:
    return temporal.worker is not None
