"""The inbox projection: review, approval and withdrawal events become review tasks.

Built from events only (``review.events``, ``approvals.events``, and ``application.withdrawn``
from ``applications.events``); the desk never asks Temporal what is open. The kit's idempotent
consumer drops a redelivered event before it gets here, and the domain's
:class:`~services.review.domain.TaskFacts` make the result independent of arrival order:

- every fact is stored as "the latest of its kind, by when it happened"; an older copy of a
  fact changes nothing;
- the status is derived from the facts each time (decided > cancelled > closed > open);
- an application's end is kept per application, so a task whose assignment arrives after the
  end (the two travel on different topics) is closed on arrival.

Each event first takes the application's row lock (``review_applications``): with several desk
replicas, two events of one application arriving through different topics are applied one after
the other, never interleaved.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from contracts.envelope import Envelope, utcnow
from contracts.v1.applications import ApplicationWithdrawn
from contracts.v1.approvals import ApplicationApproved, ApplicationRejected
from contracts.v1.common import ReviewStage, Stage
from contracts.v1.review import (
    ReviewDecisionRecorded,
    ReviewEscalated,
    ReviewInformationRequested,
    ReviewReminderDue,
    ReviewTaskAssigned,
    ReviewTaskCancelled,
)
from services.kit.consumer import Incoming
from services.kit.db import insert_ignore
from services.kit.logging import get_logger
from services.kit.uow import UnitOfWork
from services.review.domain import OUTCOME_OF_EVENT, ApplicationOutcome, TaskFacts
from services.review.models import ReviewApplication, ReviewTask

log = get_logger(__name__)

#: Review events, one per task.
TASK_TYPES: Final = frozenset(
    {
        "review.task_assigned",
        "review.decision_recorded",
        "review.information_requested",
        "review.reminder_due",
        "review.escalated",
        "review.task_cancelled",
    }
)
#: Events that end an application (and close its open tasks).
END_TYPES: Final = frozenset(OUTCOME_OF_EVENT)
#: Everything the projection handles; other types on the same topics are skipped.
HANDLED_TYPES: Final = TASK_TYPES | END_TYPES

#: History entries kept per task; far above any real task's event count.
MAX_HISTORY: Final = 200


async def project_inbox(incoming: Incoming, uow: UnitOfWork) -> None:
    """Apply one event to the inbox (the consumer commits, with the processed mark)."""
    envelope = incoming.envelope
    session = uow.session
    application = await _lock_application(session, envelope.subject)
    if envelope.type in TASK_TYPES:
        await _apply_task_event(session, application, envelope)
    elif envelope.type in END_TYPES:
        await _apply_end(session, application, envelope)


# --- applications: the lock, and how they end ----------------------------------------------------


async def _lock_application(session: AsyncSession, application_id: str) -> ReviewApplication:
    """The application's row, created if new, locked until the transaction ends."""
    dialect = session.get_bind().dialect.name
    table = ReviewApplication.__table__  # type: ignore[attr-defined]
    values = {"application_id": application_id, "reasons": []}
    # Insert-or-ignore, then lock: two replicas seeing the application's first events at once
    # both end up waiting on the same row instead of one failing on the primary key.
    await session.exec(insert_ignore(dialect, table, values))
    found = await session.exec(
        select(ReviewApplication)
        .where(ReviewApplication.application_id == application_id)
        .with_for_update()
    )
    return found.one()


async def _apply_end(
    session: AsyncSession, application: ReviewApplication, envelope: Envelope[Any]
) -> None:
    payload = envelope.payload
    outcome = OUTCOME_OF_EVENT[envelope.type]
    ended_at, reasons = _end_details(payload)
    if application.ended_at is not None and application.ended_at <= ended_at:
        # It had already ended (a firm may withdraw an approved application): the review
        # ended with the earlier fact, whichever of them arrived first.
        log.info(
            "application ended earlier; later end not shown in the inbox",
            application_id=application.application_id,
            outcome=application.outcome,
            later=outcome.value,
        )
        return
    application.outcome = outcome.value
    application.ended_at = ended_at
    application.reasons = reasons
    application.ended_by = _end_actor(envelope)
    application.end_event_id = envelope.event_id
    session.add(application)
    tasks = await session.exec(
        select(ReviewTask).where(ReviewTask.application_id == application.application_id)
    )
    for task in tasks.all():
        _close(task, application)
        session.add(task)


def _end_details(payload: Any) -> tuple[datetime, list[str]]:
    if isinstance(payload, ApplicationApproved):
        return payload.approved_at, []
    if isinstance(payload, ApplicationRejected):
        return payload.rejected_at, list(payload.reasons)
    if isinstance(payload, ApplicationWithdrawn):
        return payload.withdrawn_at, [payload.reason]
    raise TypeError(f"not an end event: {type(payload).__name__}")  # pragma: no cover


def _end_actor(envelope: Envelope[Any]) -> str:
    payload = envelope.payload
    if isinstance(payload, ApplicationRejected):
        return payload.decided_by
    return envelope.actor.id


def _close(task: ReviewTask, application: ReviewApplication) -> None:
    """Copy the application's end onto one of its tasks (and into its history).

    Milestone verifications come after the approval that ended the review: the workflow
    cancels them itself if the award ends.
    """
    if application.ended_at is None or application.outcome is None:
        return
    if task.stage == ReviewStage.MILESTONE.value:
        return
    facts, changed = task.facts().closed(application.ended_at)
    if not changed:
        return
    task.closed_at = application.ended_at
    task.application_outcome = application.outcome
    task.outcome_reasons = list(application.reasons)
    task.outcome_by = application.ended_by
    _settle(task, facts)
    outcome = ApplicationOutcome(application.outcome)
    # A later end that was shown until this earlier one arrived leaves the history too, so the
    # history does not depend on arrival order either.
    task.history = [e for e in task.history if e["type"] not in END_TYPES]
    _add_history(
        task,
        {
            "event_id": str(application.end_event_id),
            "type": f"application.{outcome.value}",
            "occurred_at": application.ended_at.isoformat(),
            "actor_id": application.ended_by or "unknown",
            "note": f"The application was {outcome.value}.",
        },
    )


# --- tasks ---------------------------------------------------------------------------------------


async def _apply_task_event(
    session: AsyncSession, application: ReviewApplication, envelope: Envelope[Any]
) -> None:
    payload = envelope.payload
    if isinstance(payload, ReviewInformationRequested) and payload.source is Stage.ELIGIBILITY:
        # The eligibility rules asked, not a reviewer: no reviewer's task is behind it.
        return
    task = await session.get(ReviewTask, payload.task_id)
    if task is None:
        task = ReviewTask(
            task_id=payload.task_id,
            application_id=payload.application_id,
            stage=payload.stage.value,
            reviewer_id=payload.reviewer_id,
            status="open",
            updated_at=utcnow(),
        )
    facts = task.facts()
    if isinstance(payload, ReviewTaskAssigned):
        facts, changed = facts.assigned(payload.assigned_at, payload.due_at)
        if changed:
            task.assigned_at, task.due_at = payload.assigned_at, payload.due_at
            task.summary = payload.summary.model_dump(mode="json")
            task.quorum = payload.quorum.model_dump(mode="json") if payload.quorum else None
            # The assignment names the reviewer and stage with authority (a decision arriving
            # first created the row from its own copy of them).
            task.stage, task.reviewer_id = payload.stage.value, payload.reviewer_id
        note = (
            f"Assigned to {payload.reviewer_id} ({payload.stage.value}), "
            f"due {payload.due_at.isoformat()}."
        )
    elif isinstance(payload, ReviewDecisionRecorded):
        facts, changed = facts.decided(payload.decided_at)
        if changed:
            task.decided_at = payload.decided_at
            task.decision, task.comment = payload.decision.value, payload.comment
        note = f"{payload.reviewer_id} decided: {payload.decision.value}."
    elif isinstance(payload, ReviewInformationRequested):
        facts, changed = facts.information_requested(payload.requested_at)
        if changed:
            task.information_requested_at = payload.requested_at
            task.information_request = payload.model_dump(mode="json")
        note = f"{payload.reviewer_id} requested information from the firm."
    elif isinstance(payload, ReviewReminderDue):
        facts, changed = facts.reminded(payload.reminded_at)
        if changed:
            task.reminded_at = payload.reminded_at
        note = f"SLA reminder: open for {payload.days_open} days."
    elif isinstance(payload, ReviewEscalated):
        facts, changed = facts.escalated(payload.escalated_at)
        if changed:
            task.escalated_at = payload.escalated_at
            task.escalated_to = payload.supervisor_id
            task.escalation_reason = payload.reason
        target = payload.supervisor_id or "the supervisors' queue"
        note = f"Escalated to {target}: {payload.reason}"
    elif isinstance(payload, ReviewTaskCancelled):
        facts, changed = facts.cancelled(payload.cancelled_at)
        if changed:
            task.cancelled_at, task.cancel_reason = payload.cancelled_at, payload.reason
        note = f"Cancelled: {payload.reason}"
    else:  # pragma: no cover - TASK_TYPES and the branches above list the same types
        raise TypeError(f"unexpected payload {type(payload).__name__}")

    _settle(task, facts)
    _record(task, envelope, note)
    # The application may have ended before this task's event arrived (another topic was
    # faster): the task is closed on arrival.
    _close(task, application)
    session.add(task)


def _settle(task: ReviewTask, facts: TaskFacts) -> None:
    """Store the status derived from the facts."""
    task.status = facts.status.value
    task.updated_at = utcnow()


def _record(task: ReviewTask, envelope: Envelope[Any], note: str) -> None:
    """Add the event to the task's history."""
    _add_history(
        task,
        {
            "event_id": str(envelope.event_id),
            "type": envelope.type,
            "occurred_at": envelope.occurred_at.isoformat(),
            "actor_id": envelope.actor.id,
            "note": note,
        },
    )


def _add_history(task: ReviewTask, entry: dict[str, str]) -> None:
    """Add one entry (once per event), keeping the history oldest first."""
    if any(existing.get("event_id") == entry["event_id"] for existing in task.history):
        return
    # A new list, so SQLAlchemy sees the JSON column change.
    history = sorted([*task.history, entry], key=lambda e: (e["occurred_at"], e["event_id"]))
    task.history = history[-MAX_HISTORY:]
