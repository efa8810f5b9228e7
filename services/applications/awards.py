"""What the firm was given, as it sees it: the offer, the space, the award, its tranches, the
milestones and every compensation. Pure: fed contract models, answers plain values.

:func:`project` folds one event into the :class:`AwardView` kept on the application record.
Every event is applied idempotently (by sequence, report id or reason), so a redelivery or an
event arriving out of order across topics leaves the same view.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from contracts.envelope import Envelope, UtcDatetime
from contracts.money import Money
from contracts.v1.common import FastTrackDeclined, FastTrackItem, ZoneSpaceRequest, ZoneUnits
from contracts.v1.disbursement import (
    AwardCancelled,
    AwardOpened,
    TrancheFailed,
    TranchePaid,
    TrancheReleased,
)
from contracts.v1.offers import (
    ApplicationCompensated,
    AwardCompleted,
    FastTrackGranted,
    FastTrackRevoked,
    MilestoneReported,
    MilestoneVerified,
    OfferAccepted,
    OfferDeclined,
    OfferLapsed,
    OfferMade,
)
from contracts.v1.zones import ZoneAllocated, ZoneReleased

_VIEW = ConfigDict(extra="forbid")
#: Award view fields worked out when the view is shown, never stored.
_SHOWN_ONLY = {"milestone_due"}
_MONEY = {"amount": "250000.00", "currency": "EUR"}
_UNITS = {"zone_id": "zone-north-tech-park", "unit_type": "gpu_rack_unit", "quantity": 4}
_TRANCHE = {
    "sequence": 1,
    "milestone": "signing",
    "amount": {"amount": "100000.00", "currency": "EUR"},
    "state": "paid",
}


class OfferState(StrEnum):
    """Where the offer stands."""

    OPEN = "open"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    LAPSED = "lapsed"


class TrancheState(StrEnum):
    """Where a tranche stands: scheduled, released (being paid), paid, failed or cancelled."""

    SCHEDULED = "scheduled"
    RELEASED = "released"
    PAID = "paid"
    FAILED = "failed"
    CANCELLED = "cancelled"


class MilestoneState(StrEnum):
    """Where a reported milestone stands."""

    REPORTED = "reported"
    VERIFIED = "verified"
    REJECTED = "rejected"


class TrancheLine(BaseModel):
    """One tranche of the award."""

    model_config = _VIEW

    sequence: int = Field(description="Position in the schedule, from 1.", examples=[1])
    milestone: str = Field(description="What releases it.", examples=["signing"])
    amount: Money = Field(
        description="The tranche amount.", examples=[{"amount": "100000.00", "currency": "EUR"}]
    )
    state: TrancheState = Field(
        default=TrancheState.SCHEDULED, description="Where it stands.", examples=["paid"]
    )
    paid_at: UtcDatetime | None = Field(
        default=None, description="When it was paid.", examples=["2027-01-16T11:00:06Z", None]
    )
    reason: str | None = Field(
        default=None,
        description="Why it failed, if it did.",
        examples=[None, "The beneficiary account was closed."],
    )


class FastTrackState(StrEnum):
    """Where a granted fast-track item stands."""

    GRANTED = "granted"
    REVOKED = "revoked"


class FastTrackLine(BaseModel):
    """A fast-track item granted on acceptance (and revoked, if an administrator did)."""

    model_config = _VIEW

    item: FastTrackItem = Field(description="The item.", examples=["sandbox_access"])
    conditions: str = Field(
        description="What it is granted under.",
        examples=["Supervised operation within the approved proposal only."],
    )
    valid_until: UtcDatetime = Field(
        description="End of validity.", examples=["2027-01-16T11:00:06Z"]
    )
    state: FastTrackState = Field(
        default=FastTrackState.GRANTED,
        description="`granted`, or `revoked` by an administrator.",
        examples=["granted"],
    )
    revoked_reason: str | None = Field(
        default=None,
        description="Why it was revoked, if it was.",
        examples=[None, "The sandbox conditions were breached."],
    )
    revoked_at: UtcDatetime | None = Field(
        default=None, description="When it was revoked.", examples=[None]
    )


class MilestoneLine(BaseModel):
    """A milestone the firm reported and what the program decided."""

    model_config = _VIEW

    report_id: str = Field(description="The report.", examples=["ms_7Q2K9"])
    sequence: int = Field(description="The tranche it releases.", examples=[2])
    summary: str = Field(
        description="What the firm reported.",
        examples=["The lab opened and ten engineers were hired."],
    )
    evidence: list[str] = Field(
        default_factory=list, description="Document references.", examples=[["doc_7K2M9P"]]
    )
    state: MilestoneState = Field(
        default=MilestoneState.REPORTED, description="Where it stands.", examples=["verified"]
    )
    reason: str | None = Field(
        default=None,
        description="The reviewer's reasons (why it went back, if it did).",
        examples=["Site visit confirmed the lab and the hires.", None],
    )
    reported_at: UtcDatetime = Field(
        description="When it was reported.", examples=["2027-01-16T11:00:06Z"]
    )
    decided_at: UtcDatetime | None = Field(
        default=None, description="When it was decided.", examples=["2027-01-16T11:00:06Z", None]
    )


class CompensationLine(BaseModel):
    """Something the program undid, and why."""

    model_config = _VIEW

    reason_code: str = Field(description="Why, as a code.", examples=["offer_lapsed"])
    summary: str = Field(
        description="What was undone, in words.",
        examples=["The zone space was released."],
    )
    reason: str = Field(
        description="Why, in words.",
        examples=["The offer was not answered before it expired."],
    )
    by: str = Field(description="Who caused it.", examples=["system:workflows"])
    at: UtcDatetime = Field(description="When it happened.", examples=["2027-01-16T11:00:06Z"])


class AwardView(BaseModel):
    """The offer and what followed from it."""

    model_config = _VIEW

    offer_id: str = Field(
        description="The offer; the firm's answer names it.", examples=["offer_app_01HZX3Q8W6"]
    )
    offer_state: OfferState = Field(
        default=OfferState.OPEN, description="Where the offer stands.", examples=["open"]
    )
    offered_at: UtcDatetime = Field(
        description="When the offer was made.", examples=["2027-01-02T11:00:06Z"]
    )
    expires_at: UtcDatetime = Field(
        description="When an unanswered offer lapses.", examples=["2027-01-16T11:00:06Z"]
    )
    space_offered: list[ZoneUnits] = Field(
        default_factory=list, description="Space held for the firm.", examples=[[_UNITS]]
    )
    space_unavailable: list[ZoneSpaceRequest] = Field(
        default_factory=list, description="Requested space no zone could hold.", examples=[[]]
    )
    allocated: list[ZoneUnits] = Field(
        default_factory=list, description="Space allocated.", examples=[[_UNITS]]
    )
    released: list[ZoneUnits] = Field(
        default_factory=list, description="Space given back.", examples=[[]]
    )
    grant: Money | None = Field(default=None, description="The grant.", examples=[_MONEY, None])
    award_id: str | None = Field(
        default=None, description="The award paying the grant.", examples=["award_app_01"]
    )
    award_state: str | None = Field(
        default=None,
        description="`reserved`, `open`, `completed` or `cancelled`.",
        examples=["open"],
    )
    tranches: list[TrancheLine] = Field(
        default_factory=list, description="The tranches.", examples=[[_TRANCHE]]
    )
    fast_track: list[FastTrackLine] = Field(
        default_factory=list, description="Granted items.", examples=[[]]
    )
    fast_track_offered: list[FastTrackItem] = Field(
        default_factory=list,
        description="Fast-track items the approval covers.",
        examples=[["sandbox_access"]],
    )
    fast_track_declined: list[FastTrackDeclined] = Field(
        default_factory=list,
        description="Requested fast-track items the committee did not approve, with the reason.",
        examples=[[{"item": "expedited_work_visa", "reason": "Staff not named."}]],
    )
    milestones: list[MilestoneLine] = Field(
        default_factory=list, description="Milestones reported.", examples=[[]]
    )
    milestone_due: int | None = Field(
        default=None,
        description=(
            "The tranche whose milestone the firm may report now; null while a report waits "
            "for its verification, and once every tranche has been released."
        ),
        examples=[2, None],
    )
    compensations: list[CompensationLine] = Field(
        default_factory=list, description="What the program undid.", examples=[[]]
    )

    def lapsed_by(self, now: datetime) -> bool:
        """Whether the offer can no longer be accepted at ``now``."""
        return self.offer_state is not OfferState.OPEN or now >= self.expires_at

    def pending_milestone(self) -> MilestoneLine | None:
        """The reported milestone that waits for its verification, or None.

        A tranche that was released (or paid, or failed at the rail) had its milestone
        verified, even while the verification's own event has not reached this view: the two
        come on different topics, and a broker's restart can deliver the payment first.
        """
        waiting = {t.sequence for t in self.tranches if t.state is TrancheState.SCHEDULED}
        return next(
            (
                m
                for m in self.milestones
                if m.state is MilestoneState.REPORTED and m.sequence in waiting
            ),
            None,
        )

    def next_milestone(self) -> int | None:
        """The tranche whose milestone the firm may report now, or None."""
        if self.pending_milestone() is not None:
            return None
        return next(
            (
                t.sequence
                for t in self.tranches
                if t.sequence > 1 and t.state is TrancheState.SCHEDULED
            ),
            None,
        )


def _tranche(view: AwardView, sequence: int) -> TrancheLine | None:
    return next((t for t in view.tranches if t.sequence == sequence), None)


def project(stored: dict[str, Any] | None, envelope: Envelope[Any]) -> dict[str, Any] | None:
    """The award view after ``envelope`` (JSON as stored), or ``stored`` unchanged."""
    return apply(stored, envelope.payload, envelope.occurred_at, envelope.actor.id)


def apply(
    stored: dict[str, Any] | None, payload: BaseModel, at: datetime, actor_id: str
) -> dict[str, Any] | None:
    """The award view after the event ``payload`` (by ``actor_id`` at ``at``)."""
    if isinstance(payload, OfferMade):
        view = AwardView(
            offer_id=payload.offer_id,
            offered_at=payload.offered_at,
            expires_at=payload.expires_at,
            space_offered=list(payload.space),
            space_unavailable=list(payload.space_unavailable),
            grant=payload.grant,
            award_id=payload.award_id,
            award_state="reserved" if payload.grant else None,
            tranches=[
                TrancheLine(sequence=t.sequence, milestone=t.milestone, amount=t.amount)
                for t in payload.tranches
            ],
            fast_track_offered=list(payload.fast_track),
            fast_track_declined=list(payload.fast_track_declined),
        )
        if stored is not None:  # a redelivery: keep what happened since
            return stored
        return view.model_dump(mode="json", exclude=_SHOWN_ONLY)
    if stored is None:
        return None
    view = AwardView.model_validate(stored)
    match payload:
        case OfferAccepted():
            view.offer_state = OfferState.ACCEPTED
            view.award_state = "open" if view.grant else None
        case OfferDeclined():
            view.offer_state = OfferState.DECLINED
        case OfferLapsed():
            view.offer_state = OfferState.LAPSED
        case ZoneAllocated():
            for units in payload.units:
                if units not in view.allocated:
                    view.allocated.append(units)
        case ZoneReleased():
            view.released = list(payload.units)
        case AwardOpened():
            pass  # reserved before the offer; the view starts with the offer
        case TrancheReleased():
            line = _tranche(view, payload.sequence)
            if line is not None and line.state is TrancheState.SCHEDULED:
                line.state = TrancheState.RELEASED
        case TranchePaid():
            line = _tranche(view, payload.sequence)
            if line is not None:
                line.state = TrancheState.PAID
                line.paid_at = payload.paid_at
        case TrancheFailed():
            line = _tranche(view, payload.sequence)
            if line is not None and line.state is not TrancheState.PAID:
                line.state = TrancheState.FAILED
                line.reason = payload.reason
        case AwardCancelled():
            view.award_state = "cancelled"
            for line in view.tranches:
                if line.state is TrancheState.SCHEDULED:
                    line.state = TrancheState.CANCELLED
        case AwardCompleted():
            view.award_state = "completed"
        case FastTrackGranted():
            if all(f.item is not payload.item for f in view.fast_track):
                view.fast_track.append(
                    FastTrackLine(
                        item=payload.item,
                        conditions=payload.conditions,
                        valid_until=payload.valid_until,
                    )
                )
        case FastTrackRevoked():
            for granted in view.fast_track:
                if granted.item is payload.item and granted.state is FastTrackState.GRANTED:
                    granted.state = FastTrackState.REVOKED
                    granted.revoked_reason = payload.reason
                    granted.revoked_at = payload.revoked_at
        case MilestoneReported():
            if all(m.report_id != payload.report_id for m in view.milestones):
                view.milestones.append(
                    MilestoneLine(
                        report_id=payload.report_id,
                        sequence=payload.sequence,
                        summary=payload.summary,
                        evidence=list(payload.evidence),
                        reported_at=payload.reported_at,
                    )
                )
        case MilestoneVerified():
            for m in view.milestones:
                if m.report_id == payload.report_id:
                    m.state = (
                        MilestoneState.VERIFIED if payload.verified else MilestoneState.REJECTED
                    )
                    m.reason = payload.comment
                    m.decided_at = payload.decided_at
        case ApplicationCompensated():
            if all(c.reason_code != payload.reason_code for c in view.compensations):
                view.compensations.append(
                    CompensationLine(
                        reason_code=payload.reason_code.value,
                        summary=compensation_summary(payload),
                        reason=payload.reason,
                        by=actor_id,
                        at=at,
                    )
                )
        case _:
            return stored
    return view.model_dump(mode="json", exclude=_SHOWN_ONLY)


def compensation_summary(payload: ApplicationCompensated) -> str:
    """What a compensation undid, in plain words."""
    undone = []
    if payload.space_released:
        undone.append("the zone space was released")
    if payload.award_cancelled:
        undone.append("the award was cancelled and its unpaid amount returned to the budget")
    if payload.waitlisted_for_budget:
        undone.append("the application waits for budget")
    return ("; ".join(undone) or "nothing was held").capitalize() + "."
