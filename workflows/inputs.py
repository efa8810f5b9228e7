"""What goes into an ``IncentiveApproval`` run: its input and the signals the bridge sends.

These are the workflow's own types, not Kafka contracts: they are recorded in Temporal histories,
so change them additively (new fields with defaults) or re-record the histories.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.schedule import parse_schedule
from contracts.v1.applications import ApplicationContent
from contracts.v1.common import CommitteeQuorum, ReviewStage
from contracts.v1.desk import ReviewerProfile
from contracts.v1.eligibility import EligibilityAssessed
from workflows.state import OfferView, StageState, Task


class ApprovalPolicy(BaseModel):
    """The review rules in force for one run, from the worker settings at start.

    Fixed in the input so a settings change never alters a running application's rules (and
    replays stay deterministic).
    """

    model_config = ConfigDict(frozen=True)

    sla_reminder_days: int = Field(
        default=7, ge=1, le=365, description="Days after assignment when a reminder is emitted."
    )
    sla_escalation_days: int = Field(
        default=14,
        ge=1,
        le=365,
        description="Days after assignment when the task escalates to a supervisor (its due date).",
    )
    sla_day_seconds: int = Field(
        default=86_400,
        ge=1,
        le=86_400,
        description=(
            "Seconds in one day of the SLA timers (reminder and escalation): 86400. Shorter "
            "only to watch reminders and escalations happen in a demo or a test."
        ),
    )
    committee_required: int = Field(default=2, ge=1, le=50, description="Approvals needed (N).")
    committee_members: int = Field(default=3, ge=1, le=50, description="Members asked (M).")
    information_timeout_days: int = Field(
        default=30,
        ge=1,
        le=365,
        description="Days the firm has to amend after an information request before withdrawal.",
    )
    assignment_retry_minutes: int = Field(
        default=60,
        ge=1,
        le=7 * 24 * 60,
        description="How long to wait before asking the desk again when no reviewer can be chosen.",
    )

    offer_days: int = Field(
        default=14,
        ge=1,
        le=365,
        description="Days the firm has to answer an offer before it lapses.",
    )
    fast_track_validity_days: int = Field(
        default=365, ge=1, le=3650, description="How long an approved fast-track item is granted."
    )
    budget_wait_days: int = Field(
        default=365,
        ge=1,
        le=3650,
        description=(
            "Days an approved application waits for budget after a shortfall before it stops"
            " waiting (a top-up within them opens its award and the offer goes on)."
        ),
    )
    tranche_schedule: str = Field(
        default="signing:40,milestone 1:30,milestone 2:30",
        description="Tranche shares of an award, `name:percent` separated by commas; total 100.",
    )
    grant_budget: str = Field(
        default="grant",
        description="The incentive type whose fiscal-year budget a grant is charged to.",
    )
    history_fact_limit: int = Field(
        default=500,
        ge=10,
        le=10_000,
        description=(
            "History length (events) past which a run waiting for milestones continues as new."
        ),
    )

    @field_validator("tranche_schedule")
    @classmethod
    def _whole_schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.sla_escalation_days <= self.sla_reminder_days:
            raise ValueError("the escalation must come after the reminder")
        if self.committee_required > self.committee_members:
            raise ValueError("committee_required cannot exceed committee_members")
        return self

    def sla(self, days: int) -> timedelta:
        """``days`` SLA days after an assignment, as a duration."""
        return timedelta(seconds=days * self.sla_day_seconds)

    @property
    def quorum(self) -> CommitteeQuorum:
        """The committee rule as the contracts state it."""
        return CommitteeQuorum(required=self.committee_required, members=self.committee_members)


class Carried(BaseModel):
    """What a run hands to its continuation while the award waits for milestones.

    The review is over by then; only the offer, the milestone stage and the people who may
    verify are needed (every fact the continuation applies is idempotent by its own ids).
    """

    firm_id: str
    revision: int
    content: ApplicationContent
    offer: OfferView
    milestone_stage: StageState
    tasks: list[Task] = Field(default_factory=list, description="Milestone tasks.")
    profiles: dict[str, ReviewerProfile] = Field(default_factory=dict)
    committed: dict[str, ReviewStage] = Field(
        default_factory=dict, description="Who decided which review stage (separation of duties)."
    )
    cause: str | None = None


class ApprovalInput(BaseModel):
    """What starts the workflow. Everything else arrives as signals, in any order."""

    model_config = ConfigDict(frozen=True)

    application_id: str = Field(description="The application id; also the workflow id.")
    correlation_id: str = Field(description="The application's journey id (a UUID).")
    policy: ApprovalPolicy = Field(
        default_factory=ApprovalPolicy, description="SLA, committee and timeout rules."
    )
    resume: Carried | None = Field(
        default=None, description="Set on a continuation: the award waiting for milestones."
    )


class SubmittedSignal(BaseModel):
    """An ``application.submitted`` event forwarded by the bridge."""

    event_id: str
    firm_id: str
    revision: int
    content: ApplicationContent


class AmendedSignal(BaseModel):
    """An ``application.amended`` event forwarded by the bridge: a new revision of the content."""

    event_id: str
    firm_id: str
    revision: int
    content: ApplicationContent
    in_response_to: str | None = None
    actor_id: str


class EligibilitySignal(BaseModel):
    """An ``eligibility.assessed`` event forwarded by the bridge."""

    event_id: str
    assessment: EligibilityAssessed


class FactSignal(BaseModel):
    """A later fact about the application forwarded by the bridge: an offer answer, a
    milestone report, or what the zones and disbursement services did.

    The payload stays JSON here and is validated against the catalog model of ``type`` by the
    workflow, so new fact types need no new signal.
    """

    event_id: str
    type: str
    actor_id: str
    actor_kind: str = "system"
    payload: dict[str, Any]


class CancellationSignal(BaseModel):
    """An administrator cancelled the application after its approval."""

    event_id: str
    reason: str
    actor_id: str


class RefusalSignal(BaseModel):
    """A command of the workflow that its service dead-lettered, read back by the bridge."""

    #: The bridge's id for the dead letter (derived from the command's event id).
    event_id: str
    #: The refused command's type, e.g. ``zone.hold``.
    command_type: str
    #: The ``dlq.reason`` code and ``dlq.error`` message the service gave.
    reason: str
    error: str = ""
    #: Who gave up on it (``dlq.consumer``).
    consumer: str = ""


class WithdrawalSignal(BaseModel):
    """An ``application.withdrawn`` event forwarded by the bridge."""

    event_id: str
    reason: str
    actor_id: str
