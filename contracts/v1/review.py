"""Review events: tasks handed to reviewers, their decisions, information requests and SLAs.

The review desk builds its inbox from these events alone; it never queries Temporal.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from contracts.envelope import UtcDatetime
from contracts.iso import CountryCode
from contracts.money import Money
from contracts.v1.common import (
    COMMITTEE_QUORUM_EXAMPLE,
    PAYLOAD_CONFIG,
    CommitteeQuorum,
    Decision,
    FieldPath,
    Identifier,
    LongText,
    ReviewStage,
    Sector,
    ShortText,
    Stage,
)

APPLICATION_SUMMARY_EXAMPLE: JsonDict = {
    "firm_id": "ACME",
    "firm_legal_name": "Acme Vision AI GmbH",
    "firm_country": "DE",
    "title": "Radiology triage assistant for regional hospitals",
    "sector": "health",
    "grant_requested": {"amount": "250000.00", "currency": "EUR"},
    "investment_commitment": {"amount": "5000000.00", "currency": "EUR"},
}

_TASK_ID = "task_01J9Q4T2ZT"
_APP_ID = "app_01HZX3Q8W6"
_REVIEWER = "rev.tanaka@gaip.example"


class ApplicationSummary(BaseModel):
    """What a reviewer's inbox shows about an application."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG, json_schema_extra={"examples": [APPLICATION_SUMMARY_EXAMPLE]}
    )

    firm_id: Identifier = Field(description="The firm's id in the program.", examples=["ACME"])
    firm_legal_name: ShortText = Field(
        description="The firm's legal name.", examples=["Acme Vision AI GmbH"]
    )
    firm_country: CountryCode = Field(
        description="ISO 3166-1 alpha-2 country of incorporation.",
        examples=["DE"],
    )
    title: ShortText = Field(
        description="The proposal's title.",
        examples=["Radiology triage assistant for regional hospitals"],
    )
    sector: Sector = Field(description="The proposal's sector.", examples=["health"])
    grant_requested: Money | None = Field(
        default=None,
        description="The grant requested, or null when none is.",
        examples=[{"amount": "250000.00", "currency": "EUR"}, None],
    )
    investment_commitment: Money = Field(
        description="The investment the firm commits to.",
        examples=[{"amount": "5000000.00", "currency": "EUR"}],
    )


class ReviewTaskAssigned(BaseModel):
    """Event ``review.task_assigned``: a reviewer must decide one stage of an application.

    A committee stage assigns one task per member; ``quorum`` says how many approvals carry it.
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "task_id": _TASK_ID,
                    "application_id": _APP_ID,
                    "stage": "technical",
                    "reviewer_id": _REVIEWER,
                    "summary": APPLICATION_SUMMARY_EXAMPLE,
                    "assigned_at": "2026-11-26T10:36:00Z",
                    "due_at": "2026-12-10T10:36:00Z",
                    "quorum": None,
                },
                {
                    "task_id": "task_01J9Q4T2ZU",
                    "application_id": _APP_ID,
                    "stage": "committee",
                    "reviewer_id": "rev.haddad@gaip.example",
                    "summary": APPLICATION_SUMMARY_EXAMPLE,
                    "assigned_at": "2026-12-20T09:00:00Z",
                    "due_at": "2027-01-03T09:00:00Z",
                    "quorum": COMMITTEE_QUORUM_EXAMPLE,
                },
            ]
        },
    )

    task_id: Identifier = Field(
        description="Id of the review task; unique per reviewer and stage.",
        examples=[_TASK_ID],
    )
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    stage: ReviewStage = Field(
        description="The stage to decide.", examples=["technical", "security", "committee"]
    )
    reviewer_id: Identifier = Field(
        description="The reviewer the task is assigned to.", examples=[_REVIEWER]
    )
    summary: ApplicationSummary = Field(
        description="The application as the inbox shows it.",
        examples=[APPLICATION_SUMMARY_EXAMPLE],
    )
    assigned_at: UtcDatetime = Field(
        description="When the task was assigned, in UTC.", examples=["2026-11-26T10:36:00Z"]
    )
    due_at: UtcDatetime = Field(
        description="The SLA deadline for the decision, in UTC.",
        examples=["2026-12-10T10:36:00Z"],
    )
    quorum: CommitteeQuorum | None = Field(
        default=None,
        description="For committee tasks, the N-of-M rule; null for other stages.",
        examples=[COMMITTEE_QUORUM_EXAMPLE, None],
    )

    @model_validator(mode="after")
    def _quorum_only_for_committee(self) -> Self:
        if (self.stage is ReviewStage.COMMITTEE) != (self.quorum is not None):
            raise ValueError("quorum is required for committee tasks and only for them")
        if self.due_at < self.assigned_at:
            raise ValueError("due_at cannot be earlier than assigned_at")
        return self


class ReviewDecisionRecorded(BaseModel):
    """Event ``review.decision_recorded``: a reviewer decided their task."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "task_id": _TASK_ID,
                    "application_id": _APP_ID,
                    "stage": "technical",
                    "reviewer_id": _REVIEWER,
                    "decision": "approve",
                    "comment": "Sound architecture; model validation plan is adequate.",
                    "decided_at": "2026-12-02T15:20:00Z",
                }
            ]
        },
    )

    task_id: Identifier = Field(description="The task decided.", examples=[_TASK_ID])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    stage: ReviewStage = Field(description="The stage decided.", examples=["technical"])
    reviewer_id: Identifier = Field(description="The deciding reviewer.", examples=[_REVIEWER])
    decision: Decision = Field(
        description="Approve, reject, or request more information from the firm.",
        examples=["approve", "reject", "request_information"],
    )
    comment: LongText = Field(
        description="The reviewer's reasoning; shown to the firm on rejection.",
        examples=["Sound architecture; model validation plan is adequate."],
    )
    decided_at: UtcDatetime = Field(
        description="When the decision was made, in UTC.", examples=["2026-12-02T15:20:00Z"]
    )


class ReviewInformationRequested(BaseModel):
    """Event ``review.information_requested``: a stage is paused until the firm amends.

    Without an amendment by ``respond_by`` the application is withdrawn.
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "request_id": "req_5T2W8N",
                    "task_id": _TASK_ID,
                    "application_id": _APP_ID,
                    "stage": "technical",
                    "reviewer_id": _REVIEWER,
                    "fields": ["commitments.training"],
                    "questions": ["How many local engineers will the residency train per year?"],
                    "requested_at": "2026-12-02T15:20:00Z",
                    "respond_by": "2027-01-01T15:20:00Z",
                }
            ]
        },
    )

    request_id: Identifier = Field(
        description="Id of the request; an amendment answering it names it in `in_response_to`.",
        examples=["req_5T2W8N"],
    )
    task_id: Identifier = Field(description="The task that asked.", examples=[_TASK_ID])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    stage: ReviewStage = Field(description="The stage that is paused.", examples=["technical"])
    reviewer_id: Identifier = Field(description="The reviewer asking.", examples=[_REVIEWER])
    fields: list[FieldPath] = Field(
        default_factory=list,
        max_length=100,
        description="Content fields the firm should complete or correct.",
        examples=[["commitments.training"], []],
    )
    questions: list[LongText] = Field(
        default_factory=list,
        max_length=50,
        description="Questions for the firm, in words.",
        examples=[["How many local engineers will the residency train per year?"]],
    )
    requested_at: UtcDatetime = Field(
        description="When the request was made, in UTC.", examples=["2026-12-02T15:20:00Z"]
    )
    respond_by: UtcDatetime = Field(
        description="Deadline for the firm's amendment, in UTC (30 days by default).",
        examples=["2027-01-01T15:20:00Z"],
    )
    source: Stage | None = Field(
        default=None,
        description=(
            "Who asked, when it is not the reviewer of `stage`: `eligibility` when the "
            "eligibility rules found missing fields (`reviewer_id` is then `system:eligibility` "
            "and `stage` the review stage waiting for the amendment); null when the reviewer "
            "of `stage` asked."
        ),
        examples=[None, "eligibility"],
    )

    @model_validator(mode="after")
    def _asks_something(self) -> Self:
        if not self.fields and not self.questions:
            raise ValueError("an information request must name fields or ask questions")
        if self.respond_by <= self.requested_at:
            raise ValueError("respond_by must be later than requested_at")
        return self


class ReviewReminderDue(BaseModel):
    """Event ``review.reminder_due``: a task has been open for the reminder period of its SLA."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "task_id": _TASK_ID,
                    "application_id": _APP_ID,
                    "stage": "technical",
                    "reviewer_id": _REVIEWER,
                    "assigned_at": "2026-11-26T10:36:00Z",
                    "due_at": "2026-12-10T10:36:00Z",
                    "days_open": 7,
                    "reminded_at": "2026-12-03T10:36:00Z",
                }
            ]
        },
    )

    task_id: Identifier = Field(description="The open task.", examples=[_TASK_ID])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    stage: ReviewStage = Field(description="The task's stage.", examples=["technical"])
    reviewer_id: Identifier = Field(description="The reviewer to remind.", examples=[_REVIEWER])
    assigned_at: UtcDatetime = Field(
        description="When the task was assigned, in UTC.", examples=["2026-11-26T10:36:00Z"]
    )
    due_at: UtcDatetime = Field(
        description="The SLA deadline, in UTC.", examples=["2026-12-10T10:36:00Z"]
    )
    days_open: int = Field(
        ge=0, le=3650, description="Whole days the task has been open.", examples=[7]
    )
    reminded_at: UtcDatetime = Field(
        description="When the reminder fell due, in UTC.", examples=["2026-12-03T10:36:00Z"]
    )


class ReviewEscalated(BaseModel):
    """Event ``review.escalated``: a task passed its escalation period and goes to a supervisor."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "task_id": _TASK_ID,
                    "application_id": _APP_ID,
                    "stage": "technical",
                    "reviewer_id": _REVIEWER,
                    "supervisor_id": "sup.okafor@gaip.example",
                    "reason": "No decision 14 days after assignment.",
                    "days_open": 14,
                    "escalated_at": "2026-12-10T10:36:00Z",
                }
            ]
        },
    )

    task_id: Identifier = Field(description="The overdue task.", examples=[_TASK_ID])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    stage: ReviewStage = Field(description="The task's stage.", examples=["technical"])
    reviewer_id: Identifier = Field(
        description="The reviewer who has not decided.", examples=[_REVIEWER]
    )
    supervisor_id: Identifier | None = Field(
        default=None,
        description="The supervisor it is escalated to; null means the supervisors' shared queue.",
        examples=["sup.okafor@gaip.example", None],
    )
    reason: LongText = Field(
        description="Why it was escalated.", examples=["No decision 14 days after assignment."]
    )
    days_open: int = Field(
        ge=0, le=3650, description="Whole days the task has been open.", examples=[14]
    )
    escalated_at: UtcDatetime = Field(
        description="When it was escalated, in UTC.", examples=["2026-12-10T10:36:00Z"]
    )


class ReviewTaskCancelled(BaseModel):
    """Event ``review.task_cancelled``: an open task no longer needs a decision.

    For example the application was withdrawn or rejected at another stage, or the committee
    reached its quorum without this member.
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "task_id": "task_01J9Q4T2ZV",
                    "application_id": _APP_ID,
                    "stage": "committee",
                    "reviewer_id": "rev.lindqvist@gaip.example",
                    "reason": "The committee reached 2 of 3 approvals.",
                    "cancelled_at": "2027-01-02T11:00:00Z",
                }
            ]
        },
    )

    task_id: Identifier = Field(description="The cancelled task.", examples=["task_01J9Q4T2ZV"])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    stage: ReviewStage = Field(description="The task's stage.", examples=["committee"])
    reviewer_id: Identifier = Field(
        description="The reviewer the task was assigned to.",
        examples=["rev.lindqvist@gaip.example"],
    )
    reason: LongText = Field(
        description="Why no decision is needed any more.",
        examples=["The committee reached 2 of 3 approvals.", "The firm withdrew the application."],
    )
    cancelled_at: UtcDatetime = Field(
        description="When the task was cancelled, in UTC.", examples=["2027-01-02T11:00:00Z"]
    )
