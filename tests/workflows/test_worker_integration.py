"""The worker on the real stack: Tansu, the Temporal dev server and PostgreSQL.

Facts published on Kafka start and signal IncentiveApproval through the bridge; the workflow's
events come back on ``review.events`` and ``approvals.events``; a redelivered fact changes
nothing. A dead-lettered command read back from its ``.dlq`` twin makes the workflow compensate.
The review desk is a small stub HTTP server here (the candidates endpoint only, checking
the worker's token); the full run through the real desk belongs to the desk's own tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI, Header, HTTPException
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter

from contracts import catalog
from contracts.envelope import Actor, Envelope
from contracts.topics import TOPICS, topic_for_type
from contracts.v1.common import Decision, EligibilityOutcome, ReviewStage
from contracts.v1.desk import ReviewDecisionRequest, ReviewerRole
from services.cli.embedded import free_port
from services.kit.auth import Role, TokenService
from services.kit.dlq import ConsumedRecord, dead_letter
from services.kit.errors import Reason
from services.kit.messaging import create_producer, ensure_topics
from services.kit.runtime import server_config
from tests.kit.helpers import eventually, fresh_database
from tests.workflows.scenarios import COMMITTEE, HADDAD, ROSTER, SILVA, TANAKA, assessment
from workflows.approval import IncentiveApproval
from workflows.settings import Settings
from workflows.state import ApprovalState, Phase, TaskStatus
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


async def events_about(
    bootstrap: str,
    application_id: str,
    topics: tuple[str, ...],
    *,
    wait: float,
    until: Callable[[list[Envelope[Any]]], bool] | None = None,
) -> list[Envelope[Any]]:
    """The events about ``application_id`` on ``topics``: for ``wait`` seconds, or until met."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    found: list[Envelope[Any]] = []
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
            if until is not None and until(found):
                break
    finally:
        await consumer.stop()
    return found


@contextlib.asynccontextmanager
async def stub_desk(tokens: TokenService) -> AsyncIterator[tuple[str, list[str]]]:
    """A candidates endpoint answering from the demo roster; yields (base URL, callers seen)."""
    callers: list[str] = []
    app = FastAPI()

    @app.get("/internal/v1/candidates")
    async def candidates(stage: ReviewerRole, authorization: str = Header()) -> list[Any]:
        principal = tokens.verify(authorization.removeprefix("Bearer "))
        if principal.role is not Role.ADMIN:
            raise HTTPException(403)
        callers.append(principal.sub)
        return [p.model_dump(mode="json") for p in ROSTER if stage in p.roles and p.active]

    port = free_port()
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=port, lifespan="off"))
    task = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:

            async def up() -> bool:
                with contextlib.suppress(httpx.TransportError):
                    await http.get("/docs")
                    return True
                return False

            await eventually(up, timeout=15)
        yield base, callers
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@contextlib.asynccontextmanager
async def running_worker(
    kafka_bootstrap: str, temporal_dev: str, pg_url: str, tmp_path: Path, review_url: str
) -> AsyncIterator[Settings]:
    await ensure_topics(
        kafka_bootstrap,
        [(name, t.partitions) for t in TOPICS for name in (t.name, t.dlq)],
    )
    async with fresh_database(pg_url, "worker") as database_url:
        settings = Settings(
            kafka_bootstrap=kafka_bootstrap,
            temporal_address=temporal_dev,
            database_url=database_url,
            port=free_port(),
            var_dir=tmp_path,
            task_queue=f"test-{uuid.uuid4().hex[:8]}",
            review_url=review_url,
            # Groups of its own: a worker another test left on the shared broker must not take
            # this one's partitions.
            consumer_group_prefix=f"test-{uuid.uuid4().hex[:8]}-",
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            await eventually(lambda: _ready(app.state.temporal), timeout=60)
            yield settings


async def _ready(temporal: Any) -> bool:
    return temporal.worker is not None


async def state_of(handle: Any) -> ApprovalState | None:
    with contextlib.suppress(Exception):
        state: ApprovalState = await handle.query(IncentiveApproval.state)
        return state
    return None


async def decide(handle: Any, reviewer: str, stage: ReviewStage) -> None:
    """``reviewer`` approves their open task of ``stage`` (an update, as the desk sends it)."""

    async def opened() -> bool:
        current = await state_of(handle)
        return current is not None and stage in current.open_stages

    await eventually(opened, timeout=60)
    current = await state_of(handle)
    assert current is not None
    task = next(
        t
        for t in current.tasks
        if t.reviewer_id == reviewer and t.stage is stage and t.status is TaskStatus.OPEN
    )
    roles = next(p.roles for p in ROSTER if p.reviewer_id == reviewer)
    await handle.execute_update(
        IncentiveApproval.decide,
        ReviewDecisionRequest(
            request_id=f"dec_{uuid.uuid4().hex[:10]}",
            task_id=task.task_id,
            stage=stage,
            reviewer_id=reviewer,
            token_roles=roles,
            decision=Decision.APPROVE,
            comment="Sound.",
        ),
    )


async def approve_through_every_stage(handle: Any) -> None:
    await decide(handle, TANAKA, ReviewStage.TECHNICAL)
    await decide(handle, SILVA, ReviewStage.SECURITY)
    await decide(handle, HADDAD, ReviewStage.FINANCE)
    await decide(handle, COMMITTEE[0], ReviewStage.COMMITTEE)
    await decide(handle, COMMITTEE[1], ReviewStage.COMMITTEE)


async def test_bridge_starts_signals_and_the_decision_is_published(
    kafka_bootstrap: str, temporal_dev: str, pg_url: str, tmp_path: Path
) -> None:
    app_id = f"app_{uuid.uuid4().hex[:12]}"
    correlation = uuid.uuid4()
    submitted_payload = catalog.example_payloads("application.submitted")[0].model_copy(
        update={"application_id": app_id, "firm_id": "ACME"}
    )
    submitted = envelope_for("application.submitted", submitted_payload, correlation)
    decision = envelope_for(
        "eligibility.assessed", assessment(app_id, EligibilityOutcome.INELIGIBLE), correlation
    )

    async with running_worker(
        kafka_bootstrap, temporal_dev, pg_url, tmp_path, "http://127.0.0.1:9"
    ):
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
        events = await events_about(kafka_bootstrap, app_id, ("approvals.events",), wait=8)
        assert (await handle.describe()).run_id == first_run

    assert result.phase is Phase.REJECTED
    assert len(events) == 1
    rejected = events[0]
    assert rejected.type == "application.rejected"
    assert rejected.payload.stage.value == "eligibility"
    assert rejected.payload.firm_id == "ACME"
    assert rejected.correlation_id == correlation
    assert rejected.causation_id == decision.event_id


async def test_review_stages_on_the_real_stack_end_approved(
    kafka_bootstrap: str, temporal_dev: str, pg_url: str, tmp_path: Path
) -> None:
    """Assignment through the (stub) desk, decisions as updates, events on Kafka."""
    app_id = f"app_{uuid.uuid4().hex[:12]}"
    correlation = uuid.uuid4()
    submitted_payload = catalog.example_payloads("application.submitted")[0].model_copy(
        update={"application_id": app_id, "firm_id": "ACME"}
    )
    submitted = envelope_for("application.submitted", submitted_payload, correlation)
    eligible = envelope_for(
        "eligibility.assessed", assessment(app_id, EligibilityOutcome.ELIGIBLE), correlation
    )
    tokens = TokenService(Settings().jwt_secret)

    async with (
        stub_desk(tokens) as (desk_url, callers),
        running_worker(kafka_bootstrap, temporal_dev, pg_url, tmp_path, desk_url),
    ):
        await send(kafka_bootstrap, submitted, eligible)
        client = await Client.connect(temporal_dev, data_converter=pydantic_data_converter)
        handle = client.get_workflow_handle_for(IncentiveApproval.run, app_id)

        await approve_through_every_stage(handle)

        async def approved() -> bool:
            current = await state_of(handle)
            return current is not None and current.phase is Phase.APPROVED

        # The run goes on to the offer (it waits for the zones and disbursement next).
        await eventually(approved, timeout=60)
        result = await state_of(handle)
        assert result is not None
        events = await events_about(
            kafka_bootstrap,
            app_id,
            ("review.events", "approvals.events"),
            wait=30,
            # 6 assignments, 5 decisions, 1 cancellation and the approval (two topics, so
            # they may arrive in any order).
            until=lambda found: len(found) >= 13,
        )

    assert result.phase is Phase.APPROVED
    assert set(callers) == {"system:workflows"}
    types = [e.type for e in events]
    assert types.count("review.task_assigned") == 6
    assert types.count("review.decision_recorded") == 5
    assert types.count("review.task_cancelled") == 1
    approved = next(e for e in events if e.type == "application.approved")
    assert len(approved.payload.approvals) == 5
    assert all(e.correlation_id == correlation for e in events)


async def test_a_dead_lettered_hold_reaches_the_workflow_which_compensates(
    kafka_bootstrap: str, temporal_dev: str, pg_url: str, tmp_path: Path
) -> None:
    """zones.commands.dlq → bridge → command_refused: space released, award cancelled, told."""
    app_id = f"app_{uuid.uuid4().hex[:12]}"
    correlation = uuid.uuid4()
    submitted_payload = catalog.example_payloads("application.submitted")[0].model_copy(
        update={"application_id": app_id, "firm_id": "ACME"}
    )
    submitted = envelope_for("application.submitted", submitted_payload, correlation)
    eligible = envelope_for(
        "eligibility.assessed", assessment(app_id, EligibilityOutcome.ELIGIBLE), correlation
    )
    tokens = TokenService(Settings().jwt_secret)
    compensated_on = topic_for_type("application.compensated").name

    async with (
        stub_desk(tokens) as (desk_url, _callers),
        running_worker(kafka_bootstrap, temporal_dev, pg_url, tmp_path, desk_url),
    ):
        await send(kafka_bootstrap, submitted, eligible)
        client = await Client.connect(temporal_dev, data_converter=pydantic_data_converter)
        handle = client.get_workflow_handle_for(IncentiveApproval.run, app_id)
        await approve_through_every_stage(handle)
        (hold,) = await events_about(
            kafka_bootstrap,
            app_id,
            ("zones.commands",),
            wait=60,
            until=lambda found: any(e.type == "zone.hold" for e in found),
        )
        # What the zones consumer writes when it refuses the command, in the kit's format.
        refused = dead_letter(
            ConsumedRecord(
                topic="zones.commands",
                partition=0,
                offset=0,
                key=app_id.encode(),
                value=catalog.encode(hold),
                headers=tuple(hold.headers()),
            ),
            reason=Reason.BUSINESS_REFUSAL,
            error=ValueError("zone-north-tech-park offers no gpu_rack_unit"),
            consumer="zones",
            attempts=1,
        )
        producer = create_producer(kafka_bootstrap)
        await producer.start()
        try:
            for _ in range(2):  # redelivered: the workflow compensates once
                await producer.send_and_wait(
                    refused.topic, refused.value, key=refused.key, headers=list(refused.headers)
                )
        finally:
            await producer.stop()

        async def closed() -> bool:
            with contextlib.suppress(Exception):
                desc = await handle.describe()
                return desc.status is WorkflowExecutionStatus.COMPLETED
            return False

        await eventually(closed, timeout=60)
        result = await handle.result()
        found = await events_about(
            kafka_bootstrap,
            app_id,
            (compensated_on, "zones.commands", "disbursement.commands"),
            wait=30,
            until=lambda found: (
                {"application.compensated", "zone.release", "award.cancel"}
                <= {e.type for e in found}
            ),
        )

    assert result.phase is Phase.CANCELLED
    by_type: dict[str, list[Envelope[Any]]] = {}
    for e in found:
        by_type.setdefault(e.type, []).append(e)
    (done,) = by_type["application.compensated"]
    assert done.payload.reason_code.value == "command_refused"
    assert done.payload.reason.startswith(
        "The zones service could not hold the requested space: "
        "zone-north-tech-park offers no gpu_rack_unit."
    )
    assert done.payload.space_released
    assert done.payload.award_cancelled
    assert len(by_type["zone.release"]) == 1
    assert len(by_type["award.cancel"]) == 1
    assert "application.offer_made" not in by_type
