"""IncentiveApproval on the time-skipping server, with a recording publisher."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from contracts.catalog import decode
from contracts.envelope import deterministic_event_id
from contracts.v1.common import EligibilityOutcome
from tests.workflows.scenarios import (
    RecordingPublisher,
    assessment,
    pydantic_client,
    start,
    worker,
)
from workflows.approval import (
    ApprovalInput,
    EligibilitySignal,
    IncentiveApproval,
    Phase,
    SubmittedSignal,
    WithdrawalSignal,
)


@pytest.fixture
async def client(temporal_time_skipping: WorkflowEnvironment) -> Any:
    return pydantic_client(temporal_time_skipping.client)


async def test_ineligible_application_is_rejected_with_failed_rules(client: Any) -> None:
    publisher = RecordingPublisher()
    app_id = f"app-{uuid.uuid4().hex[:10]}"
    async with worker(client, publisher):
        handle = await start(client, app_id)
        signal = EligibilitySignal(
            event_id=str(uuid.uuid4()),
            assessment=assessment(app_id, EligibilityOutcome.INELIGIBLE),
        )
        await handle.signal(IncentiveApproval.eligibility_assessed, signal)
        await handle.signal(IncentiveApproval.eligibility_assessed, signal)  # redelivered
        state = await handle.result()

    assert state.phase is Phase.REJECTED
    assert state.reasons == ["The investment commitment must be at least EUR 1,000,000."]
    assert len(publisher.messages) == 1, "one rejection, whatever the redeliveries"
    message = publisher.messages[0]
    assert message.topic == "approvals.events"
    assert message.key == app_id
    envelope = decode(message.value.encode())
    assert envelope.type == "application.rejected"
    assert envelope.actor.id == "system:workflows"
    assert envelope.payload.decided_by == "system:eligibility"
    assert envelope.payload.firm_id == "ACME"
    assert envelope.causation_id == uuid.UUID(signal.event_id)
    # A retried activity or a replay republishes the very same id.
    assert envelope.event_id == deterministic_event_id(app_id, "rejected:eligibility")


async def test_eligible_application_waits_for_review_and_withdrawal_closes_it(
    client: Any,
) -> None:
    publisher = RecordingPublisher()
    app_id = f"app-{uuid.uuid4().hex[:10]}"
    async with worker(client, publisher):
        handle = await start(client, app_id)
        await handle.signal(
            IncentiveApproval.eligibility_assessed,
            EligibilitySignal(
                event_id=str(uuid.uuid4()),
                assessment=assessment(app_id, EligibilityOutcome.ELIGIBLE),
            ),
        )
        state = None
        for _ in range(50):
            state = await handle.query(IncentiveApproval.state)
            if state is not None and state.phase is Phase.UNDER_REVIEW:
                break
        assert state is not None
        assert state.phase is Phase.UNDER_REVIEW
        assert state.rule_set_version == "2026.1"

        await handle.signal(
            IncentiveApproval.withdrawn,
            WithdrawalSignal(event_id=str(uuid.uuid4()), reason="Plans changed.", actor_id="ACME"),
        )
        final = await handle.result()
    assert final.phase is Phase.WITHDRAWN
    assert final.reasons == ["Plans changed."]
    assert publisher.messages == []


async def test_decision_arriving_before_submission_waits_for_it(client: Any) -> None:
    """The bridge reads two topics, so eligibility may start the workflow first."""
    publisher = RecordingPublisher()
    app_id = f"app-{uuid.uuid4().hex[:10]}"
    async with worker(client, publisher):
        handle = await client.start_workflow(
            IncentiveApproval.run,
            ApprovalInput(application_id=app_id, correlation_id=str(uuid.uuid4())),
            id=app_id,
            task_queue="test-incentive-approval",
            start_signal="eligibility_assessed",
            start_signal_args=[
                EligibilitySignal(
                    event_id=str(uuid.uuid4()),
                    assessment=assessment(app_id, EligibilityOutcome.INELIGIBLE),
                )
            ],
        )
        state = await handle.query(IncentiveApproval.state)
        assert state is not None
        assert state.phase is Phase.AWAITING_ELIGIBILITY
        assert publisher.messages == [], "no firm id yet, so nothing can be published"
        await handle.signal(
            IncentiveApproval.submitted,
            SubmittedSignal(event_id=str(uuid.uuid4()), firm_id="ACME", revision=1),
        )
        final = await handle.result()
    assert final.phase is Phase.REJECTED
    assert json.loads(publisher.messages[0].value)["payload"]["firm_id"] == "ACME"
