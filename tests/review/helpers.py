"""Helpers for the review desk tests: tokens, review events, running the desk."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from contracts import catalog
from contracts.envelope import Actor, ActorKind, Envelope, utcnow
from contracts.topics import topic_for_type
from contracts.v1.common import CommitteeQuorum, ReviewStage
from contracts.v1.review import APPLICATION_SUMMARY_EXAMPLE, ApplicationSummary
from services.kit.auth import Principal, Role, TokenService
from services.kit.settings import DEV_JWT_SECRET
from tests.inprocess import record_of as record_of  # one home; the desk tests import it here

TOKENS = TokenService(SecretStr(DEV_JWT_SECRET))

NOVAK = "rev.novak@gaip.example"
SILVA = "rev.silva@gaip.example"
HADDAD = "rev.haddad@gaip.example"
TANAKA = "rev.tanaka@gaip.example"
MEYER = "sup.meyer@gaip.example"


def auth(role: str, sub: str | None = None, *, firm: str | None = None) -> dict[str, str]:
    """An ``Authorization`` header for a principal signed with the development key."""
    parsed = Role(role)
    principal = Principal(
        sub=sub or f"{role}@gaip.example",
        role=parsed,
        firm_id=(firm or "ACME") if parsed is Role.FIRM else None,
    )
    return {"Authorization": f"Bearer {TOKENS.issue(principal)}"}


def reviewer(sub: str) -> dict[str, str]:
    """A reviewer's header."""
    return auth("reviewer", sub)


ADMIN = auth("admin", "admin@gaip.example")
AUDITOR = auth("auditor", "auditor@gaip.example")
SUPERVISOR = auth("supervisor", MEYER)
FIRM = auth("firm", "alice@acme.example")


def new_id(prefix: str) -> str:
    """An id no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def at(days: float = 0, *, base: datetime | None = None) -> datetime:
    """``base`` (default: now) shifted by ``days``, to the microsecond."""
    return (base or utcnow()) + timedelta(days=days)


def summary(**changes: Any) -> ApplicationSummary:
    """The contract's example application summary with ``changes``."""
    return ApplicationSummary.model_validate({**APPLICATION_SUMMARY_EXAMPLE, **changes})


def envelope(
    message_type: str,
    application_id: str,
    *,
    actor: Actor | None = None,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
    **payload: Any,
) -> Envelope[Any]:
    """A valid envelope of ``message_type`` about ``application_id`` with ``payload`` fields."""
    model = catalog.payload_model(message_type)
    body = model.model_validate({"application_id": application_id, **payload})
    return catalog.make_envelope(
        message_type,
        body,
        subject=application_id,
        actor=actor or Actor.system("workflows"),
        producer="workflows",
        correlation_id=uuid.uuid5(uuid.NAMESPACE_URL, application_id),
        event_id=event_id,
        occurred_at=occurred_at,
    )


def assigned(
    application_id: str,
    task_id: str,
    reviewer_id: str,
    *,
    stage: ReviewStage = ReviewStage.TECHNICAL,
    assigned_at: datetime | None = None,
    due_in_days: float = 14,
    **summary_changes: Any,
) -> Envelope[Any]:
    """A ``review.task_assigned``."""
    when = assigned_at or utcnow()
    quorum = CommitteeQuorum(required=2, members=3) if stage is ReviewStage.COMMITTEE else None
    return envelope(
        "review.task_assigned",
        application_id,
        occurred_at=when,
        task_id=task_id,
        stage=stage,
        reviewer_id=reviewer_id,
        summary=summary(**summary_changes),
        assigned_at=when,
        due_at=when + timedelta(days=due_in_days),
        quorum=quorum,
    )


def decided(
    application_id: str,
    task_id: str,
    reviewer_id: str,
    *,
    decision: str = "approve",
    comment: str = "Sound architecture.",
    stage: ReviewStage = ReviewStage.TECHNICAL,
    decided_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> Envelope[Any]:
    """A ``review.decision_recorded``."""
    when = decided_at or utcnow()
    return envelope(
        "review.decision_recorded",
        application_id,
        actor=Actor(kind=ActorKind.REVIEWER, id=reviewer_id),
        occurred_at=when,
        event_id=event_id,
        task_id=task_id,
        stage=stage,
        reviewer_id=reviewer_id,
        decision=decision,
        comment=comment,
        decided_at=when,
    )


def reminded(
    application_id: str,
    task_id: str,
    reviewer_id: str,
    *,
    assigned_at: datetime,
    reminded_at: datetime,
    stage: ReviewStage = ReviewStage.TECHNICAL,
) -> Envelope[Any]:
    """A ``review.reminder_due``."""
    return envelope(
        "review.reminder_due",
        application_id,
        occurred_at=reminded_at,
        task_id=task_id,
        stage=stage,
        reviewer_id=reviewer_id,
        assigned_at=assigned_at,
        due_at=assigned_at + timedelta(days=14),
        days_open=max(0, (reminded_at - assigned_at).days),
        reminded_at=reminded_at,
    )


def escalated(
    application_id: str,
    task_id: str,
    reviewer_id: str,
    *,
    escalated_at: datetime,
    supervisor_id: str | None = MEYER,
    stage: ReviewStage = ReviewStage.TECHNICAL,
) -> Envelope[Any]:
    """A ``review.escalated``."""
    return envelope(
        "review.escalated",
        application_id,
        occurred_at=escalated_at,
        task_id=task_id,
        stage=stage,
        reviewer_id=reviewer_id,
        supervisor_id=supervisor_id,
        reason="No decision 14 days after assignment.",
        days_open=14,
        escalated_at=escalated_at,
    )


def cancelled(
    application_id: str,
    task_id: str,
    reviewer_id: str,
    *,
    cancelled_at: datetime,
    stage: ReviewStage = ReviewStage.TECHNICAL,
    reason: str = "The committee reached 2 of 3 approvals.",
) -> Envelope[Any]:
    """A ``review.task_cancelled``."""
    return envelope(
        "review.task_cancelled",
        application_id,
        occurred_at=cancelled_at,
        task_id=task_id,
        stage=stage,
        reviewer_id=reviewer_id,
        reason=reason,
        cancelled_at=cancelled_at,
    )


def information_requested(
    application_id: str,
    task_id: str,
    reviewer_id: str,
    *,
    requested_at: datetime,
    stage: ReviewStage = ReviewStage.TECHNICAL,
) -> Envelope[Any]:
    """A ``review.information_requested``."""
    return envelope(
        "review.information_requested",
        application_id,
        occurred_at=requested_at,
        request_id=new_id("req"),
        task_id=task_id,
        stage=stage,
        reviewer_id=reviewer_id,
        fields=["commitments.training"],
        questions=["How many local engineers will be trained per year?"],
        requested_at=requested_at,
        respond_by=requested_at + timedelta(days=30),
    )


def withdrawn(application_id: str, *, withdrawn_at: datetime) -> Envelope[Any]:
    """An ``application.withdrawn`` by the firm."""
    return envelope(
        "application.withdrawn",
        application_id,
        actor=Actor(kind=ActorKind.FIRM, id="alice@acme.example", firm_id="ACME"),
        occurred_at=withdrawn_at,
        firm_id="ACME",
        reason_code="firm_request",
        reason="The project moved to another country.",
        withdrawn_at=withdrawn_at,
    )


def rejected(application_id: str, *, rejected_at: datetime, by: str = SILVA) -> Envelope[Any]:
    """An ``application.rejected`` by a reviewer."""
    return envelope(
        "application.rejected",
        application_id,
        occurred_at=rejected_at,
        firm_id="ACME",
        stage="security",
        reasons=["Patient data would be processed outside the country."],
        decided_by=by,
        rejected_at=rejected_at,
    )


def approved(application_id: str, *, approved_at: datetime) -> Envelope[Any]:
    """An ``application.approved``."""
    return envelope(
        "application.approved",
        application_id,
        occurred_at=approved_at,
        firm_id="ACME",
        approvals=[{"stage": "technical", "reviewer_id": NOVAK, "decided_at": approved_at}],
        quorum={"required": 2, "members": 3},
        approved_at=approved_at,
    )


async def publish(producer: AIOKafkaProducer, *envelopes: Envelope[Any]) -> None:
    """Send envelopes to their topics, keyed by subject, in order."""
    for env in envelopes:
        await producer.send_and_wait(
            topic_for_type(env.type).name,
            catalog.encode(env),
            key=env.subject.encode(),
            headers=env.headers(),
        )
