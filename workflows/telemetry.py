"""The worker's metrics: workflow runs from inside Temporal, review steps from what is published.

- **Workflows started, completed and failed** are counted by a workflow interceptor through
  ``workflow.metric_meter()``: the Temporal SDK's meter, which records nothing while a history
  replays, so a worker restart counts no run twice. They reach ``/metrics`` with the SDK's own
  runtime metrics (``temporal_*``: workflow tasks, activities, pollers, schedule-to-start latency),
  which the worker appends to its exposition. A run continued as new is not a new start; a run ends
  once, completed or failed, but its end is counted at least once: when the workflow task that ended
  it is retried (its completion never committed, e.g. timed out on a loaded worker), the end runs,
  and is counted, again. Completed is every run that returned, whatever the application's outcome
  (approved, rejected, withdrawn, cancelled by an administrator: the platform cancels an application
  by signal, and the run ends normally); failed is a run that raised a failure, or that Temporal was
  asked to cancel. A run terminated or timed out by the server runs no more code, so it is counted
  by neither (the server's and the SDK's ``temporal_*`` figures show it).
- **Decisions per stage, SLA reminders and escalations, and workflow events by type** are
  counted by the publish activity when the broker acknowledged the event (at least once: a
  retried activity after a lost acknowledgement counts again).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from temporalio import workflow
from temporalio.exceptions import FailureError
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

#: The SDK meter's counters (the exposition adds no prefix to them).
STARTED = "incentives_workflows_started"
COMPLETED = "incentives_workflows_completed"
FAILED = "incentives_workflows_failed"


class WorkflowRunMetrics(Interceptor):
    """Counts workflow runs started, completed and failed, per workflow type."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _CountingInbound


class _CountingInbound(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        meter = workflow.metric_meter()
        info = workflow.info()
        attributes = {"workflow_type": info.workflow_type}
        if info.continued_run_id is None:
            meter.create_counter(STARTED, "Workflow runs started.").add(1, attributes)
        try:
            result = await super().execute_workflow(input)
        except workflow.ContinueAsNewError:
            raise  # the same workflow, carried on in a new run: neither completed nor failed
        except (FailureError, asyncio.CancelledError):
            # A failure, or a cancellation requested through Temporal: the run did not complete.
            meter.create_counter(FAILED, "Workflow runs failed.").add(1, attributes)
            raise
        meter.create_counter(COMPLETED, "Workflow runs completed.").add(1, attributes)
        return result


class PublishedEventMetrics:
    """Counters of what the workflows published, kept in the worker's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "incentives_workflow_events",
            "Events and commands the workflows published, by type.",
            ["type"],
            registry=registry,
        )
        self.decisions = Counter(
            "incentives_review_decisions",
            "Reviewer decisions recorded, by stage and decision.",
            ["stage", "decision"],
            registry=registry,
        )
        self.reminders = Counter(
            "incentives_sla_reminders",
            "SLA reminders sent for open review tasks, by stage.",
            ["stage"],
            registry=registry,
        )
        self.escalations = Counter(
            "incentives_sla_escalations",
            "Open review tasks escalated to a supervisor, by stage.",
            ["stage"],
            registry=registry,
        )

    def published(self, values: Sequence[bytes]) -> None:
        """Count encoded envelopes the broker acknowledged."""
        for value in values:
            envelope = json.loads(value)
            kind = str(envelope.get("type", ""))
            payload = envelope.get("payload") or {}
            self.events.labels(kind).inc()
            stage = str(payload.get("stage", ""))
            if kind == "review.decision_recorded":
                self.decisions.labels(stage, str(payload.get("decision", ""))).inc()
            elif kind == "review.reminder_due":
                self.reminders.labels(stage).inc()
            elif kind == "review.escalated":
                self.escalations.labels(stage).inc()
