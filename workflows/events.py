"""The events ``IncentiveApproval`` emits, built as plain data: no Temporal, no I/O.

Each builder returns an :class:`Event`: the message type, the payload, the *step* that makes
its id deterministic (:func:`contracts.envelope.deterministic_event_id` of the workflow id and
the step), the actor it names and the event that caused it. The workflow wraps it in an
envelope and publishes it through an activity. Step names are part of the recorded histories
and of every event id ever published: never change one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel

from contracts.envelope import Actor, ActorKind
from contracts.v1.applications import ApplicationContent, ApplicationWithdrawn
from contracts.v1.approvals import ApplicationApproved, ApplicationRejected, StageApproval
from contracts.v1.common import CommitteeQuorum, Decision, ReviewStage, Stage, WithdrawalReason
from contracts.v1.review import (
    ApplicationSummary,
    ReviewDecisionRecorded,
    ReviewEscalated,
    ReviewInformationRequested,
    ReviewReminderDue,
    ReviewTaskAssigned,
    ReviewTaskCancelled,
)
from workflows.state import DecisionView, InformationRequest, Task

#: The named system actor for steps the workflow takes by itself.
WORKFLOW_ACTOR = "workflows"
#: The named system actor of eligibility decisions the workflow enacts.
ELIGIBILITY_ACTOR = "eligibility"

#: LongText fields hold at most this many characters.
_LONG_TEXT = 4000


@dataclass(frozen=True)
class Event:
    """One event to publish, before it gets its envelope."""

    type: str
    payload: BaseModel
    step: str
    actor: Actor
    causation: uuid.UUID | None
    #: When it happened, if not now (an information request dated by the decision).
    occurred_at: datetime | None = None


def clip(text: str) -> str:
    """``text`` cut to fit a LongText field."""
    return text if len(text) <= _LONG_TEXT else text[: _LONG_TEXT - 1] + "…"


def _system() -> Actor:
    return Actor.system(WORKFLOW_ACTOR)


def _reviewer(reviewer_id: str) -> Actor:
    return Actor(kind=ActorKind.REVIEWER, id=reviewer_id)


def summary_of(firm_id: str, content: ApplicationContent) -> ApplicationSummary:
    """What a reviewer's inbox shows about the application."""
    grant = content.incentives.grant
    return ApplicationSummary(
        firm_id=firm_id,
        firm_legal_name=content.firm.legal_name,
        firm_country=content.firm.country_of_incorporation,
        title=content.proposal.title,
        sector=content.proposal.sector,
        grant_requested=grant.amount if grant is not None else None,
        investment_commitment=content.proposal.investment_commitment,
    )


# --- review tasks --------------------------------------------------------------------------------


def assignment_step(stage: ReviewStage, reviewer_id: str, round_: int) -> str:
    """The step of a task's assignment (its event id is the task's ``assigned_event_id``)."""
    return f"task_assigned:{stage.value}:{reviewer_id}:{round_}"


def task_assigned(
    application_id: str,
    task: Task,
    summary: ApplicationSummary,
    quorum: CommitteeQuorum | None,
    cause: uuid.UUID | None,
) -> Event:
    """A reviewer got a task."""
    return Event(
        "review.task_assigned",
        ReviewTaskAssigned(
            task_id=task.task_id,
            application_id=application_id,
            stage=task.stage,
            reviewer_id=task.reviewer_id,
            summary=summary,
            assigned_at=task.assigned_at,
            due_at=task.due_at,
            quorum=quorum if task.stage is ReviewStage.COMMITTEE else None,
        ),
        step=assignment_step(task.stage, task.reviewer_id, task.round),
        actor=_system(),
        causation=cause,
    )


def decision_recorded(application_id: str, task: Task, now: datetime) -> Event:
    """A reviewer decided ``task`` (its decision fields are set)."""
    assert task.decision is not None
    assert task.comment is not None
    return Event(
        "review.decision_recorded",
        ReviewDecisionRecorded(
            task_id=task.task_id,
            application_id=application_id,
            stage=task.stage,
            reviewer_id=task.reviewer_id,
            decision=task.decision,
            comment=task.comment,
            decided_at=now,
        ),
        step=f"decision:{task.stage.value}:{task.reviewer_id}:{task.round}",
        actor=_reviewer(task.reviewer_id),
        causation=uuid.UUID(task.assigned_event_id),
    )


def task_cancelled(
    application_id: str, task: Task, reason: str, now: datetime, cause: uuid.UUID | None
) -> Event:
    """An open task was withdrawn from its reviewer."""
    return Event(
        "review.task_cancelled",
        ReviewTaskCancelled(
            task_id=task.task_id,
            application_id=application_id,
            stage=task.stage,
            reviewer_id=task.reviewer_id,
            reason=clip(reason),
            cancelled_at=now,
        ),
        step=f"task_cancelled:{task.stage.value}:{task.reviewer_id}:{task.round}",
        actor=_system(),
        causation=cause,
    )


def reminder_due(application_id: str, task: Task, reminded_at: datetime) -> Event:
    """A task reached its reminder mark without a decision."""
    return Event(
        "review.reminder_due",
        ReviewReminderDue(
            task_id=task.task_id,
            application_id=application_id,
            stage=task.stage,
            reviewer_id=task.reviewer_id,
            assigned_at=task.assigned_at,
            due_at=task.due_at,
            days_open=(reminded_at - task.assigned_at).days,
            reminded_at=reminded_at,
        ),
        step=f"reminder:{task.stage.value}:{task.reviewer_id}:{task.round}",
        actor=_system(),
        causation=uuid.UUID(task.assigned_event_id),
    )


def escalated(
    application_id: str,
    task: Task,
    supervisor_id: str | None,
    escalation_days: int,
    now: datetime,
) -> Event:
    """A task reached its due date without a decision: a supervisor (or their queue) takes it."""
    return Event(
        "review.escalated",
        ReviewEscalated(
            task_id=task.task_id,
            application_id=application_id,
            stage=task.stage,
            reviewer_id=task.reviewer_id,
            supervisor_id=supervisor_id,
            reason=f"No decision {escalation_days} days after assignment.",
            days_open=(now - task.assigned_at).days,
            escalated_at=now,
        ),
        step=f"escalated:{task.stage.value}:{task.reviewer_id}:{task.round}",
        actor=_system(),
        causation=uuid.UUID(task.assigned_event_id),
    )


def information_requested(
    application_id: str, request: InformationRequest, cause: uuid.UUID | None
) -> Event:
    """The firm is asked to amend (by a reviewer, or by the eligibility rules)."""
    from_eligibility = request.source is Stage.ELIGIBILITY
    return Event(
        "review.information_requested",
        ReviewInformationRequested(
            request_id=request.request_id,
            task_id=request.task_id,
            application_id=application_id,
            stage=request.stage,
            reviewer_id=request.requested_by,
            fields=request.fields,
            questions=[clip(q) for q in request.questions],
            requested_at=request.requested_at,
            respond_by=request.respond_by,
            source=Stage.ELIGIBILITY if from_eligibility else None,
        ),
        step=information_step(request.loop),
        actor=(
            Actor.system(ELIGIBILITY_ACTOR) if from_eligibility else _reviewer(request.requested_by)
        ),
        causation=cause,
        occurred_at=request.requested_at,
    )


def information_step(loop: int) -> str:
    """The step of the ``loop``-th information request (its event id is the request's)."""
    return f"information_requested:{loop}"


# --- endings -------------------------------------------------------------------------------------


def rejected(
    application_id: str,
    firm_id: str,
    stage: Stage,
    reasons: Iterable[str],
    *,
    decided_by: str,
    actor: Actor,
    now: datetime,
    cause: uuid.UUID | None,
) -> Event:
    """The application was rejected at ``stage`` (reasons already clipped)."""
    return Event(
        "application.rejected",
        ApplicationRejected(
            application_id=application_id,
            firm_id=firm_id,
            stage=stage,
            reasons=list(reasons),
            decided_by=decided_by,
            rejected_at=now,
        ),
        step=f"rejected:{stage.value}",
        actor=actor,
        causation=cause,
    )


def approved(
    application_id: str,
    firm_id: str,
    content: ApplicationContent,
    decisions: Iterable[DecisionView],
    quorum: CommitteeQuorum,
    now: datetime,
    cause: uuid.UUID | None,
) -> Event:
    """Every stage approved: the approval names each stage's approving reviewers."""
    order = list(ReviewStage)
    approvals = [
        StageApproval(stage=d.stage, reviewer_id=d.reviewer_id, decided_at=d.decided_at)
        for d in sorted(decisions, key=lambda d: order.index(d.stage))
        if d.decision is Decision.APPROVE
    ]
    incentives = content.incentives
    return Event(
        "application.approved",
        ApplicationApproved(
            application_id=application_id,
            firm_id=firm_id,
            approvals=approvals,
            quorum=quorum,
            grant=incentives.grant.amount if incentives.grant else None,
            zone_space=list(incentives.zone_space),
            fast_track=[f.item for f in incentives.fast_track],
            approved_at=now,
        ),
        step="approved",
        actor=_system(),
        causation=cause,
    )


def withdrawn_for_timeout(
    application_id: str, firm_id: str, request: InformationRequest, reason: str, now: datetime
) -> Event:
    """No amendment answered ``request`` in time: the workflow withdraws the application."""
    return Event(
        "application.withdrawn",
        ApplicationWithdrawn(
            application_id=application_id,
            firm_id=firm_id,
            reason_code=WithdrawalReason.INFORMATION_TIMEOUT,
            reason=reason,
            withdrawn_at=now,
        ),
        step=f"withdrawn:information_timeout:{request.loop}",
        actor=_system(),
        causation=uuid.UUID(request.event_id),
    )
