"""The ``IncentiveApproval`` workflow: one long-running instance per application.

The workflow id is the application id. The Kafka→Temporal bridge starts it with
signal-with-start from ``application.submitted`` and forwards later facts as signals. Every
signal carries the ``event_id`` of the Kafka message it came from; the workflow ignores an id it
has seen, so a redelivered message or a replayed stream changes nothing.

Stage 1 (eligibility) lives here: wait for the decision; an ineligible application is closed
with the failed rules as reasons. The review stages build on the state kept below.

Workflow code is deterministic: time comes from ``workflow.now()``, event ids from
:func:`contracts.envelope.deterministic_event_id`, and all I/O happens in activities.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from contracts.catalog import encode, make_envelope
    from contracts.envelope import Actor, deterministic_event_id
    from contracts.v1.approvals import ApplicationRejected
    from contracts.v1.common import EligibilityOutcome, Stage
    from contracts.v1.eligibility import EligibilityAssessed
    from workflows.activities import OutgoingMessage, Publisher

#: The task queue the worker polls and the bridge starts workflows on.
TASK_QUEUE = "incentive-approval"
#: The named system actor for steps the workflow takes by itself.
WORKFLOW_ACTOR = "workflows"
PRODUCER = "workflows"

PUBLISH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)


class ApprovalInput(BaseModel):
    """What starts the workflow. Everything else arrives as signals, in any order."""

    model_config = ConfigDict(frozen=True)

    application_id: str = Field(description="The application id; also the workflow id.")
    correlation_id: str = Field(description="The application's journey id (a UUID).")


class SubmittedSignal(BaseModel):
    """An ``application.submitted`` event forwarded by the bridge."""

    event_id: str
    firm_id: str
    revision: int


class EligibilitySignal(BaseModel):
    """An ``eligibility.assessed`` event forwarded by the bridge."""

    event_id: str
    assessment: EligibilityAssessed


class WithdrawalSignal(BaseModel):
    """An ``application.withdrawn`` event forwarded by the bridge."""

    event_id: str
    reason: str
    actor_id: str


class Phase(StrEnum):
    """Where the workflow is."""

    AWAITING_ELIGIBILITY = "awaiting_eligibility"
    UNDER_REVIEW = "under_review"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class ApprovalState(BaseModel):
    """What the ``state`` query answers."""

    application_id: str
    phase: Phase
    eligibility_outcome: EligibilityOutcome | None = None
    rule_set_version: str | None = None
    reasons: list[str] = Field(default_factory=list)


@workflow.defn(name="IncentiveApproval")
class IncentiveApproval:
    """Drives one application from submission to a decision."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._submitted: SubmittedSignal | None = None
        self._eligibility: EligibilityAssessed | None = None
        self._eligibility_event_id: str | None = None
        self._withdrawal: WithdrawalSignal | None = None
        self._state: ApprovalState | None = None

    # --- signals and queries -------------------------------------------------------------------

    def _first_time(self, event_id: str) -> bool:
        if event_id in self._seen:
            return False
        self._seen.add(event_id)
        return True

    @workflow.signal(name="submitted")
    def submitted(self, signal: SubmittedSignal) -> None:
        """The application was submitted (duplicates ignored)."""
        if self._first_time(signal.event_id) and self._submitted is None:
            self._submitted = signal

    @workflow.signal(name="eligibility_assessed")
    def eligibility_assessed(self, signal: EligibilitySignal) -> None:
        """Record an eligibility decision (duplicates ignored)."""
        if self._first_time(signal.event_id):
            self._eligibility = signal.assessment
            self._eligibility_event_id = signal.event_id

    @workflow.signal(name="withdrawn")
    def withdrawn(self, signal: WithdrawalSignal) -> None:
        """The firm withdrew the application (duplicates ignored)."""
        if self._first_time(signal.event_id) and self._withdrawal is None:
            self._withdrawal = signal

    @workflow.query(name="state")
    def state(self) -> ApprovalState | None:
        """Where the application stands in the workflow."""
        return self._state

    # --- the run -------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: ApprovalInput) -> ApprovalState:
        """Stage 1: eligibility. Closes on ineligibility or withdrawal."""
        self._state = ApprovalState(
            application_id=inp.application_id, phase=Phase.AWAITING_ELIGIBILITY
        )
        # The bridge reads applications.events and eligibility.events separately, so the
        # decision may arrive before the submission; wait for both.
        await workflow.wait_condition(
            lambda: (
                (self._submitted is not None and self._eligibility is not None)
                or self._withdrawal is not None
            )
        )
        if self._withdrawal is not None:
            return self._close_withdrawn(self._withdrawal)

        assessment = self._eligibility
        assert assessment is not None
        self._state = self._state.model_copy(
            update={
                "eligibility_outcome": assessment.outcome,
                "rule_set_version": assessment.rule_set_version,
            }
        )
        if assessment.outcome is EligibilityOutcome.INELIGIBLE:
            reasons = [r.explanation for r in assessment.rule_results if not r.passed] or [
                "The application does not meet the program's eligibility rules."
            ]
            await self._reject(inp, Stage.ELIGIBILITY, reasons, "system:eligibility")
            return self._state

        self._state = self._state.model_copy(update={"phase": Phase.UNDER_REVIEW})
        # The review stages follow; until then the application waits here, and a withdrawal
        # still closes it cleanly.
        await workflow.wait_condition(lambda: self._withdrawal is not None)
        return self._close_withdrawn(self._withdrawal)

    @property
    def _firm_id(self) -> str:
        assert self._submitted is not None
        return self._submitted.firm_id

    def _close_withdrawn(self, signal: WithdrawalSignal | None) -> ApprovalState:
        assert self._state is not None
        assert signal is not None
        self._state = self._state.model_copy(
            update={"phase": Phase.WITHDRAWN, "reasons": [signal.reason]}
        )
        return self._state

    async def _reject(
        self, inp: ApprovalInput, stage: Stage, reasons: list[str], decided_by: str
    ) -> None:
        assert self._state is not None
        payload = ApplicationRejected(
            application_id=inp.application_id,
            firm_id=self._firm_id,
            stage=stage,
            reasons=reasons,
            decided_by=decided_by,
            rejected_at=workflow.now(),
        )
        await self._emit(
            inp,
            "application.rejected",
            payload,
            step=f"rejected:{stage.value}",
            causation_id=self._eligibility_event_id,
        )
        self._state = self._state.model_copy(update={"phase": Phase.REJECTED, "reasons": reasons})

    async def _emit(
        self,
        inp: ApprovalInput,
        message_type: str,
        payload: BaseModel,
        *,
        step: str,
        causation_id: str | None,
        topic: str = "approvals.events",
    ) -> None:
        """Publish through an activity with an id derived from the workflow and the step.

        A retried activity, or a replayed workflow, republishes the same id.
        """
        envelope = make_envelope(
            message_type,
            payload,
            subject=inp.application_id,
            actor=Actor.system(WORKFLOW_ACTOR),
            producer=PRODUCER,
            correlation_id=uuid.UUID(inp.correlation_id),
            causation_id=uuid.UUID(causation_id) if causation_id else None,
            event_id=deterministic_event_id(workflow.info().workflow_id, step),
            occurred_at=workflow.now(),
        )
        await workflow.execute_activity_method(
            Publisher.publish_message,
            OutgoingMessage(
                topic=topic,
                key=inp.application_id,
                value=encode(envelope).decode(),
                headers=[(k, v.decode()) for k, v in envelope.headers()],
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=PUBLISH_RETRY,
        )
