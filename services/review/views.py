"""How the desk shows tasks and registry entries, and which tasks a caller may see."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from contracts.v1.common import ReviewStage
from contracts.v1.desk import ReviewerProfile, ReviewerRole
from contracts.v1.review import ApplicationSummary
from services.kit.auth import Principal, Role
from services.review.models import ReviewerRecord, ReviewTask
from services.review.schemas import (
    ApplicationOutcomeInfo,
    CancellationInfo,
    DecisionInfo,
    EscalationInfo,
    InformationRequestInfo,
    ReviewerView,
)

#: Roles that may read tasks at all; firms never see the desk.
STAFF: Final = frozenset({Role.REVIEWER, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN})
#: Roles that decide their own tasks.
DECIDERS: Final = frozenset({Role.REVIEWER, Role.SUPERVISOR})
#: Roles that see every task (read-only oversight).
OVERSEERS: Final = frozenset({Role.AUDITOR, Role.ADMIN})
#: Roles that may read the whole registry.
REGISTRY_READERS: Final = frozenset({Role.ADMIN, Role.AUDITOR, Role.SUPERVISOR})


def can_see(task: ReviewTask, principal: Principal) -> bool:
    """Reviewers see their own tasks, supervisors also escalated ones, overseers all."""
    if principal.role in OVERSEERS or task.reviewer_id == principal.sub:
        return True
    return principal.role is Role.SUPERVISOR and task.facts().escalation_counts


def task_view(task: ReviewTask, now: datetime) -> dict[str, Any]:
    """The fields of :class:`TaskView` for a projected task (which must be assigned)."""
    facts = task.facts()
    assert task.summary is not None
    assert task.assigned_at is not None
    assert task.due_at is not None
    escalation = None
    if facts.escalation_counts and task.escalated_at is not None:
        escalation = EscalationInfo(
            supervisor_id=task.escalated_to,
            reason=task.escalation_reason or "",
            escalated_at=task.escalated_at,
        )
    decision = None
    if facts.decision_counts and task.decided_at is not None and task.decision is not None:
        decision = DecisionInfo(
            decision=task.decision, comment=task.comment or "", decided_at=task.decided_at
        )
    information_request = None
    if facts.information_request_counts and task.information_request is not None:
        info = task.information_request
        information_request = InformationRequestInfo(
            request_id=info["request_id"],
            fields=info.get("fields", []),
            questions=info.get("questions", []),
            requested_at=info["requested_at"],
            respond_by=info["respond_by"],
        )
    cancellation = None
    if facts.cancellation_counts and task.cancelled_at is not None:
        cancellation = CancellationInfo(
            reason=task.cancel_reason or "", cancelled_at=task.cancelled_at
        )
    outcome = None
    if task.closed_at is not None and task.application_outcome is not None:
        outcome = ApplicationOutcomeInfo(
            outcome=task.application_outcome,
            reasons=list(task.outcome_reasons),
            ended_at=task.closed_at,
            ended_by=task.outcome_by,
        )
    return {
        "task_id": task.task_id,
        "application_id": task.application_id,
        "stage": ReviewStage(task.stage),
        "reviewer_id": task.reviewer_id,
        "status": facts.status,
        "sla_state": facts.sla_state(now),
        "summary": ApplicationSummary.model_validate(task.summary),
        "assigned_at": task.assigned_at,
        "due_at": task.due_at,
        "reminded_at": task.reminded_at if facts.reminder_counts else None,
        "quorum": task.quorum,
        "escalation": escalation,
        "decision": decision,
        "information_request": information_request,
        "cancellation": cancellation,
        "application_outcome": outcome,
    }


def reviewer_view(record: ReviewerRecord) -> ReviewerView:
    """The API view of a registry row: its profile, and who last changed it and when."""
    return ReviewerView(
        **reviewer_profile(record).model_dump(),
        created_at=record.created_at,
        updated_at=record.updated_at,
        updated_by=record.updated_by,
    )


def reviewer_profile(record: ReviewerRecord) -> ReviewerProfile:
    """The contract profile of a registry row (what the workflow snapshots)."""
    return ReviewerProfile(
        reviewer_id=record.reviewer_id,
        name=record.name,
        roles=[ReviewerRole(r) for r in record.roles],
        affiliations=list(record.affiliations),
        ownership_interests=list(record.ownership_interests),
        declared_identifiers=record.identifiers(),
        active=record.active,
    )
