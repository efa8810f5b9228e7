"""The state an ``IncentiveApproval`` run keeps and answers to the ``state`` query.

Tasks, stages and the open information request are mutable records the workflow updates in its
signal/update handlers; :class:`ApprovalState` is the snapshot the query and the run's result
return. They are recorded in Temporal histories (the result), so change them additively.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from contracts.money import Money
from contracts.v1.common import (
    CommitteeQuorum,
    Decision,
    EligibilityOutcome,
    FastTrackDeclined,
    FastTrackItem,
    ReviewStage,
    Stage,
    ZoneSpaceRequest,
    ZoneUnits,
)


class Phase(StrEnum):
    """Where the application stands in the workflow."""

    AWAITING_ELIGIBILITY = "awaiting_eligibility"
    TECHNICAL_SECURITY_REVIEW = "technical_security_review"
    FINANCE_REVIEW = "finance_review"
    COMMITTEE_REVIEW = "committee_review"
    INFORMATION_REQUESTED = "information_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    # After the committee (the offer and the award).
    OFFERED = "offered"
    AWARDED = "awarded"
    COMPLETED = "completed"
    DECLINED = "declined"
    LAPSED = "lapsed"
    UNFUNDED = "approved_unfunded"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """The review is over: no review stage takes decisions any more.

        An approved application goes on to its offer and award; only milestone verifications
        are decided after that, until the application has :attr:`ended`.
        """
        return self not in _REVIEWING

    @property
    def ended(self) -> bool:
        """Nothing further happens to the application."""
        return self in _ENDED


_REVIEWING = frozenset(
    {
        Phase.AWAITING_ELIGIBILITY,
        Phase.TECHNICAL_SECURITY_REVIEW,
        Phase.FINANCE_REVIEW,
        Phase.COMMITTEE_REVIEW,
        Phase.INFORMATION_REQUESTED,
    }
)
_ENDED = frozenset(
    {
        Phase.REJECTED,
        Phase.WITHDRAWN,
        Phase.COMPLETED,
        Phase.DECLINED,
        Phase.LAPSED,
        Phase.UNFUNDED,
        Phase.CANCELLED,
    }
)


class StageStatus(StrEnum):
    """Where one review stage stands."""

    PENDING = "pending"  # not reached yet
    STAFFING = "staffing"  # choosing reviewers (waits while nobody eligible is available)
    OPEN = "open"  # tasks assigned, decisions accepted
    PAUSED = "paused"  # information requested; resumes after the amendment
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"  # the application ended elsewhere (withdrawn, rejected)


class TaskStatus(StrEnum):
    """Where one reviewer's task stands."""

    OPEN = "open"
    DECIDED = "decided"
    CANCELLED = "cancelled"


class Task(BaseModel):
    """One reviewer's task on one stage in one round (a new round follows each amendment)."""

    task_id: str
    stage: ReviewStage
    reviewer_id: str
    round: int = Field(description="The information-loop count when the task was assigned.")
    assigned_at: datetime
    due_at: datetime = Field(description="The escalation deadline.")
    assigned_event_id: str = Field(description="The review.task_assigned event of the task.")
    status: TaskStatus = TaskStatus.OPEN
    request_id: str | None = None
    decision: Decision | None = None
    comment: str | None = None
    requested_fields: list[str] = Field(default_factory=list)
    fast_track_declined: list[FastTrackDeclined] = Field(
        default_factory=list, description="A committee member's approve without these items."
    )
    decided_on_revision: int | None = Field(
        default=None, description="The content revision the reviewer decided on."
    )
    decided_at: datetime | None = None
    decision_event_id: str | None = None
    reminded_at: datetime | None = None
    escalated_at: datetime | None = None
    escalated_to: str | None = None
    cancelled_reason: str | None = None


class StageState(BaseModel):
    """One review stage: its status, who reviews it, and the quorum it needs."""

    stage: ReviewStage
    status: StageStatus = StageStatus.PENDING
    required: int = Field(default=1, description="Approvals that carry the stage.")
    members: int = Field(default=1, description="Reviewers asked.")
    reviewers: list[str] = Field(
        default_factory=list, description="Everyone assigned to the stage, in assignment order."
    )


class InformationRequest(BaseModel):
    """An information request the firm must answer by amending the application."""

    request_id: str
    loop: int = Field(description="1 for the first request of the application, then 2, ...")
    stage: ReviewStage = Field(description="The review stage waiting for the amendment.")
    source: Stage = Field(description="Who asked: the stage's reviewer, or eligibility.")
    requested_by: str = Field(description="The reviewer id, or `system:eligibility`.")
    task_id: str
    fields: list[str] = Field(default_factory=list)
    questions: list[str] = Field(default_factory=list)
    requested_at: datetime
    respond_by: datetime
    base_revision: int = Field(description="The revision the request was made on.")
    event_id: str = Field(description="The review.information_requested event.")


class DecisionView(BaseModel):
    """A recorded reviewer decision."""

    request_id: str
    task_id: str
    stage: ReviewStage
    reviewer_id: str
    decision: Decision
    comment: str
    decided_at: datetime


class TrancheStatus(StrEnum):
    """Where one tranche of the award stands, as the firm sees it."""

    SCHEDULED = "scheduled"
    RELEASED = "released"
    PAID = "paid"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TrancheView(BaseModel):
    """One tranche of the award and its state."""

    sequence: int
    name: str
    amount: Money
    status: TrancheStatus = TrancheStatus.SCHEDULED
    paid_at: datetime | None = None


class MilestoneStatus(StrEnum):
    """Where one milestone report stands."""

    REPORTED = "reported"  # waiting for a reviewer
    VERIFIED = "verified"
    REJECTED = "rejected"  # back to the firm with the reason


class Milestone(BaseModel):
    """A milestone report of the firm and its verification."""

    report_id: str
    sequence: int
    summary: str
    evidence: list[str] = Field(default_factory=list)
    reported_by: str
    reported_at: datetime
    event_id: str = Field(description="The application.milestone_reported event.")
    status: MilestoneStatus = MilestoneStatus.REPORTED
    task_id: str | None = None
    reviewer_id: str | None = None
    comment: str | None = None
    decided_at: datetime | None = None


class OfferView(BaseModel):
    """The offer after the committee, the award it opens and what became of both."""

    offer_id: str
    allocation_id: str | None = None
    award_id: str | None = None
    held: list[ZoneUnits] = Field(default_factory=list)
    unavailable: list[ZoneSpaceRequest] = Field(default_factory=list)
    waitlisted: bool = False
    allocated: list[ZoneUnits] = Field(default_factory=list)
    grant: Money | None = None
    award_opened: bool = False
    budget_id: str | None = Field(default=None, description="The budget the award is charged to.")
    tranches: list[TrancheView] = Field(default_factory=list)
    fast_track: list[FastTrackItem] = Field(default_factory=list)
    fast_track_declined: list[FastTrackDeclined] = Field(default_factory=list)
    offered_at: datetime | None = None
    expires_at: datetime | None = None
    answered_by: str | None = None
    accepted_at: datetime | None = None
    milestones: list[Milestone] = Field(default_factory=list)
    compensation: str | None = Field(default=None, description="Why the saga ran, if it did.")
    space_released: bool = Field(
        default=False, description="The held space was given back (a compensation ran)."
    )
    funding_round: int = Field(
        default=0,
        description=(
            "Times the award waited for budget and was then opened by a top-up; the space is"
            " held again under a fresh allocation each time."
        ),
    )


class ApprovalState(BaseModel):
    """What the ``state`` query answers and the run returns."""

    application_id: str
    phase: Phase
    firm_id: str | None = None
    revision: int | None = Field(default=None, description="The latest content revision seen.")
    eligibility_outcome: EligibilityOutcome | None = None
    rule_set_version: str | None = None
    reasons: list[str] = Field(default_factory=list, description="Why it ended, when it did.")
    quorum: CommitteeQuorum | None = None
    open_stages: list[ReviewStage] = Field(
        default_factory=list, description="Stages accepting decisions now."
    )
    assignments: dict[ReviewStage, list[str]] = Field(
        default_factory=dict, description="Open tasks: stage -> reviewer ids."
    )
    stages: list[StageState] = Field(default_factory=list)
    tasks: list[Task] = Field(default_factory=list)
    decisions: list[DecisionView] = Field(default_factory=list)
    information_request: InformationRequest | None = Field(
        default=None, description="The request waiting for an amendment, if any."
    )
    information_requests: int = Field(default=0, description="Requests made so far.")
    offer: OfferView | None = Field(
        default=None, description="The offer and award after the committee, once approved."
    )
