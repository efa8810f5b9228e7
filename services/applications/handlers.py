"""The status projection: downstream events update each application's status and timeline.

It consumes every ``*.events`` topic through the kit's idempotent consumer, so a redelivered
event is dropped before it gets here; the timeline's unique event id is a second guard. All
the judgement (what an event means, whether it moves the status) is in
:mod:`services.applications.domain`; this handler loads, asks and stores.
"""

from __future__ import annotations

from contracts.envelope import utcnow
from contracts.status import Status, StatusState, transition
from contracts.v1.eligibility import EligibilityAssessed
from services.applications import awards, store
from services.applications.domain import interpret, is_newer_assessment
from services.applications.models import TimelineEntry
from services.kit.consumer import Incoming
from services.kit.logging import get_logger
from services.kit.uow import UnitOfWork

log = get_logger(__name__)

#: Events that change the offer and award view.
AWARD_TYPES = frozenset(
    {
        "application.offer_made",
        "application.offer_accepted",
        "application.offer_declined",
        "application.offer_lapsed",
        "application.fast_track_granted",
        "application.fast_track_revoked",
        "application.milestone_reported",
        "application.milestone_verified",
        "application.award_completed",
        "application.compensated",
        "zone.allocated",
        "zone.released",
        "award.opened",
        "tranche.released",
        "tranche.paid",
        "tranche.failed",
        "award.cancelled",
    }
)


async def project_status(incoming: Incoming, uow: UnitOfWork) -> None:
    """Apply one event to its application's status view (the consumer commits)."""
    envelope = incoming.envelope
    fact = interpret(envelope)
    award = envelope.type in AWARD_TYPES
    if fact is None and not award:
        return
    session = uow.session
    record = await store.lock_for_projection(session, envelope.subject)
    if record is None:
        # Topics are shared: another deployment's or a test's application. Not an error.
        log.debug("event for an application not held here", application_id=envelope.subject)
        return
    if envelope.type == "application.withdrawn" and await store.timeline_has(
        session, envelope.event_id
    ):
        return  # this service's own withdrawal, recorded when it was made
    if award:
        record.award = awards.project(record.award, envelope)
    if fact is None:  # this service's own offer answers and reports: on the timeline already
        record.updated_at = utcnow()
        session.add(record)
        return

    status: Status | None = None
    change = fact.change
    current = StatusState(Status(record.status), record.status_changed_at, record.revision)
    if change is not None and transition(current, change):
        status = change.status
        record.status = status.value
        record.status_changed_at = change.at
        record.status_reasons = list(change.reasons)
        if status is Status.INFORMATION_REQUESTED:
            info = fact.information_request
            record.information_request = info.model_dump(mode="json") if info else None
    if fact.eligibility is not None:
        stored = (
            EligibilityAssessed.model_validate(record.eligibility) if record.eligibility else None
        )
        if fact.eligibility.application_revision <= record.revision and is_newer_assessment(
            stored, fact.eligibility
        ):
            record.eligibility = fact.eligibility.model_dump(mode="json")
    record.updated_at = utcnow()
    session.add(record)
    session.add(
        TimelineEntry(
            application_id=record.id,
            event_id=envelope.event_id,
            event_type=envelope.type,
            occurred_at=envelope.occurred_at,
            status=status.value if status is not None else None,
            actor_kind=envelope.actor.kind.value,
            actor_id=envelope.actor.id,
            actor_firm_id=envelope.actor.firm_id,
            summary=fact.summary,
            reasons=list(fact.reasons),
            staff_only=fact.staff_only,
        )
    )
    log.info(
        "status projected",
        application_id=record.id,
        status=record.status,
        changed=status is not None,
    )
