"""Workflow scenarios shared by the time-skipping tests and the history recorder.

Each scenario drives one ``IncentiveApproval`` run through signals, the way the bridge would,
against a worker whose ``publish_message`` activity is a recording fake.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from contracts.catalog import example_payloads
from contracts.v1.common import EligibilityOutcome
from contracts.v1.eligibility import EligibilityAssessed, RuleResult
from workflows.activities import OutgoingMessage
from workflows.approval import (
    ApprovalInput,
    EligibilitySignal,
    IncentiveApproval,
    SubmittedSignal,
    WithdrawalSignal,
)

TASK_QUEUE = "test-incentive-approval"


@dataclass
class RecordingPublisher:
    """Stands in for the Kafka publisher: keeps what the workflow published."""

    messages: list[OutgoingMessage] = field(default_factory=list)

    @activity.defn(name="publish_message")
    async def publish_message(self, message: OutgoingMessage) -> None:
        self.messages.append(message)


def pydantic_client(client: Client) -> Client:
    """The same connection, with the pydantic converter our workflows use."""
    return Client(
        client.service_client, namespace=client.namespace, data_converter=pydantic_data_converter
    )


def assessment(application_id: str, outcome: EligibilityOutcome) -> EligibilityAssessed:
    """An eligibility decision for ``application_id`` built from the contract's example."""
    example = example_payloads("eligibility.assessed")[0]
    assert isinstance(example, EligibilityAssessed)
    results = [
        RuleResult(rule_id="priority_sector", passed=True, explanation="Health is a priority."),
        RuleResult(
            rule_id="minimum_investment",
            passed=outcome is not EligibilityOutcome.INELIGIBLE,
            explanation="The investment commitment must be at least EUR 1,000,000.",
        ),
    ]
    return example.model_copy(
        update={"application_id": application_id, "outcome": outcome, "rule_results": results}
    )


async def start(client: Client, application_id: str) -> WorkflowHandle[IncentiveApproval, object]:
    """Start the workflow as the bridge does, with the submission as the start signal."""
    return await client.start_workflow(
        IncentiveApproval.run,
        ApprovalInput(application_id=application_id, correlation_id=str(uuid.uuid4())),
        id=application_id,
        task_queue=TASK_QUEUE,
        start_signal="submitted",
        start_signal_args=[SubmittedSignal(event_id=str(uuid.uuid4()), firm_id="ACME", revision=1)],
    )


async def ineligible(client: Client, application_id: str) -> None:
    handle = await start(client, application_id)
    signal = EligibilitySignal(
        event_id=str(uuid.uuid4()),
        assessment=assessment(application_id, EligibilityOutcome.INELIGIBLE),
    )
    await handle.signal(IncentiveApproval.eligibility_assessed, signal)
    await handle.signal(IncentiveApproval.eligibility_assessed, signal)  # a redelivery
    await handle.result()


async def eligible_then_withdrawn(client: Client, application_id: str) -> None:
    handle = await start(client, application_id)
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        EligibilitySignal(
            event_id=str(uuid.uuid4()),
            assessment=assessment(application_id, EligibilityOutcome.ELIGIBLE),
        ),
    )
    await handle.signal(
        IncentiveApproval.withdrawn,
        WithdrawalSignal(event_id=str(uuid.uuid4()), reason="Plans changed.", actor_id="ACME"),
    )
    await handle.result()


#: Scenario name -> coroutine; the recorder writes one history per scenario.
SCENARIOS: dict[str, Callable[[Client, str], Awaitable[None]]] = {
    "ineligible": ineligible,
    "eligible_then_withdrawn": eligible_then_withdrawn,
}


def worker(client: Client, publisher: RecordingPublisher) -> Worker:
    """A worker on the test task queue with the recording publisher."""
    return Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[IncentiveApproval],
        activities=[publisher.publish_message],
    )
