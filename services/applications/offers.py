"""The firm's use cases after the committee: answer the offer, report a milestone.

Each checks the application's status and its offer view and returns the event to record;
the routes (:mod:`services.applications.offer_routes`) stage it with its timeline entry and
idempotency key in one unit of work. The workflow hears of it through ``applications.events``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from contracts.status import Status
from contracts.v1.common import FastTrackItem, Identifier, LongText
from contracts.v1.offers import FastTrackRevoked, MilestoneReported, OfferAccepted, OfferDeclined
from services.applications.awards import AwardView, FastTrackState
from services.applications.domain import Action, ActionNotAllowed, allowed_actions, ensure_allowed
from services.applications.models import ApplicationRecord
from services.kit.errors import Conflict

DECLINE_EXAMPLE: JsonDict = {"reason": "We settled in another country."}
MILESTONE_EXAMPLE: JsonDict = {
    "sequence": 2,
    "summary": "The lab opened and ten engineers were hired.",
    "evidence": ["doc_7K2M9P"],
}


class DeclineRequest(BaseModel):
    """Why the firm declines its offer (optional)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [DECLINE_EXAMPLE]}
    )

    reason: LongText | None = Field(
        default=None,
        description="The firm's reason, shown on the timeline.",
        examples=["We settled in another country."],
    )


REVOKE_EXAMPLE: JsonDict = {
    "reason": "The sandbox conditions were breached: live patient data was used."
}


class RevokeRequest(BaseModel):
    """Why an administrator revokes a granted fast-track item."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [REVOKE_EXAMPLE]}
    )

    reason: LongText = Field(
        description="The reason; the firm reads it on its application.",
        examples=["The sandbox conditions were breached: live patient data was used."],
    )


class MilestoneRequest(BaseModel):
    """A milestone the firm reports, with the documents that show it."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [MILESTONE_EXAMPLE]}
    )

    sequence: int = Field(
        ge=2,
        le=100,
        description="The tranche whose milestone is met (the first tranche is paid on signing).",
        examples=[2],
    )
    summary: LongText = Field(
        description="What was achieved.", examples=["The lab opened and ten engineers were hired."]
    )
    evidence: list[Identifier] = Field(
        min_length=1,
        max_length=20,
        description="Ids of the supporting documents in the document store.",
        examples=[["doc_7K2M9P"]],
    )


def _conflict(record: ApplicationRecord, action: Action, message: str, reason: str) -> Conflict:
    status = Status(record.status)
    return Conflict(
        message,
        extensions={
            "reason": reason,
            "current_status": status.value,
            "allowed_actions": [a.value for a in ActionNotAllowed(status, action).allowed],
        },
    )


def _refused(record: ApplicationRecord, action: Action) -> Conflict:
    """The status does not allow ``action``: 409 naming why in the words of the status."""
    status = Status(record.status)
    try:
        ensure_allowed(status, action)
    except ActionNotAllowed as exc:
        reason = {
            Status.OFFER_LAPSED: "offer_lapsed",
            Status.OFFER_DECLINED: "offer_declined",
            Status.CANCELLED: "award_cancelled",
            Status.COMPLETED: "award_closed",
        }.get(status, "not_allowed")
        return _conflict(record, action, str(exc), reason)
    raise AssertionError("allowed")  # pragma: no cover


def _view(record: ApplicationRecord, action: Action) -> AwardView:
    if action not in allowed_actions(Status(record.status)):
        raise _refused(record, action)
    if record.award is None:  # the status moved on before the offer's event was projected
        raise _conflict(record, action, "no offer has been made yet", "no_offer")
    return AwardView.model_validate(record.award)


def accept(record: ApplicationRecord, now: datetime) -> OfferAccepted:
    """The firm accepts its open offer; 409 once it lapsed or was declined."""
    view = _view(record, Action.ACCEPT_OFFER)
    if view.lapsed_by(now):
        raise _conflict(
            record,
            Action.ACCEPT_OFFER,
            f"the offer expired at {view.expires_at:%Y-%m-%d %H:%M} UTC and can no longer be "
            "accepted",
            "offer_lapsed",
        )
    return OfferAccepted(
        offer_id=view.offer_id, application_id=record.id, firm_id=record.firm_id, accepted_at=now
    )


def decline(record: ApplicationRecord, body: DeclineRequest, now: datetime) -> OfferDeclined:
    """The firm declines its open offer; the workflow releases what was held."""
    view = _view(record, Action.DECLINE_OFFER)
    if view.lapsed_by(now):
        raise _conflict(
            record,
            Action.DECLINE_OFFER,
            f"the offer expired at {view.expires_at:%Y-%m-%d %H:%M} UTC",
            "offer_lapsed",
        )
    return OfferDeclined(
        offer_id=view.offer_id,
        application_id=record.id,
        firm_id=record.firm_id,
        reason=body.reason,
        declined_at=now,
    )


def report(record: ApplicationRecord, body: MilestoneRequest, now: datetime) -> MilestoneReported:
    """The firm reports the milestone of the next unpaid tranche; 409 when none is due."""
    view = _view(record, Action.REPORT_MILESTONE)
    due = view.next_milestone()
    if due != body.sequence:
        pending = view.pending_milestone()
        if pending is not None:
            message = f"the milestone of tranche {pending.sequence} is being verified"
        elif due is None:
            message = "no milestone is due: every tranche has been released"
        else:
            message = f"the milestone due now is that of tranche {due}"
        raise _conflict(record, Action.REPORT_MILESTONE, message, "milestone_not_due")
    return MilestoneReported(
        report_id=f"ms_{uuid.uuid4().hex[:16]}",
        application_id=record.id,
        firm_id=record.firm_id,
        sequence=body.sequence,
        summary=body.summary,
        evidence=list(body.evidence),
        reported_at=now,
    )


def revoke(
    record: ApplicationRecord, item: FastTrackItem, body: RevokeRequest, now: datetime
) -> FastTrackRevoked:
    """An administrator revokes a granted fast-track item; 409 unless it is granted and in force."""
    view = AwardView.model_validate(record.award) if record.award is not None else None
    line = next((f for f in view.fast_track if f.item is item), None) if view else None
    if line is None:
        raise Conflict(
            f"{item} was not granted on this application",
            extensions={"reason": "not_granted", "current_status": record.status},
        )
    if line.state is FastTrackState.REVOKED:
        raise Conflict(
            f"{item} was revoked already",
            extensions={"reason": "already_revoked", "current_status": record.status},
        )
    return FastTrackRevoked(
        application_id=record.id,
        firm_id=record.firm_id,
        item=item,
        reason=body.reason,
        revoked_at=now,
    )
