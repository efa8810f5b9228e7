"""Request and response bodies of the review desk API.

Every field carries a description and examples, so the OpenAPI document is enough to use the
desk. Registry bodies reuse the contract's :class:`~contracts.v1.desk.ReviewerProfile`: what an
admin declares is exactly what the workflow receives as the candidates' snapshot.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.config import JsonDict

from contracts.v1.common import (
    COMMITTEE_QUORUM_EXAMPLE,
    CommitteeQuorum,
    Decision,
    FastTrackDeclined,
    FieldPath,
    Identifier,
    LongText,
    ReviewStage,
    ShortText,
)
from contracts.v1.desk import (
    DeclaredIdentifiers,
    OrganisationIdentifier,
    ReviewerProfile,
    ReviewerRole,
)
from contracts.v1.review import APPLICATION_SUMMARY_EXAMPLE, ApplicationSummary
from services.review.domain import (
    ApplicationOutcome,
    SlaState,
    TaskStatus,
    decision_body_problem,
)

_CONFIG = ConfigDict(extra="forbid", frozen=True)
_TASK_ID = "task_7c1f0e9a2b"
_APP_ID = "app_3f2a9c0d41e84b6f9d7e5a1b2c3d4e5f"
_REVIEWER = "rev.novak@gaip.example"

# --- registry ------------------------------------------------------------------------------------

#: What a registry id may be: 1 to 100 ASCII letters, digits and ``. _ @ + : -``, starting with
#: a letter or digit. It is a path segment of the registry's URLs, so it can always be read,
#: changed and deleted there, and a ``Location`` header can always carry it.
REVIEWER_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._@+:\-]{0,99}$"
#: A registry id (see :data:`REVIEWER_ID_PATTERN`).
RegistryId = Annotated[str, StringConstraints(pattern=REVIEWER_ID_PATTERN)]

REVIEWER_EXAMPLE: JsonDict = {
    "reviewer_id": "rev.lindqvist@gaip.example",
    "name": "Dr. Erik Lindqvist",
    "roles": ["technical", "committee"],
    "affiliations": ["KTH Royal Institute of Technology"],
    "ownership_interests": ["Nordic Vision Holdings AB"],
    "declared_identifiers": [{"register_country": "SE", "register_number": "556677-8899"}],
    "active": True,
}


class NewReviewer(ReviewerProfile):
    """A reviewer to add to the registry, with a safe registry id."""

    reviewer_id: RegistryId = Field(
        description=(
            "The reviewer's user id (the `sub` of their token): 1 to 100 ASCII letters, digits "
            "and `. _ @ + : -`, starting with a letter or digit."
        ),
        examples=["rev.lindqvist@gaip.example"],
    )


class ReviewerUpdate(BaseModel):
    """A reviewer's registry entry, replaced as a whole (the id is in the path)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [{k: v for k, v in REVIEWER_EXAMPLE.items() if k != "reviewer_id"}]
        },
    )

    name: ShortText = Field(description="Display name.", examples=["Dr. Erik Lindqvist"])
    roles: list[ReviewerRole] = Field(
        min_length=1,
        description="Stages the reviewer may decide; `supervisor` receives escalations.",
        examples=[["technical", "committee"]],
    )
    affiliations: list[ShortText] = Field(
        default_factory=list,
        max_length=100,
        description=(
            "Organisations the reviewer works or worked for, advises or sits on the board of. "
            "Matched against the firm and its parent companies with case, Unicode "
            "compatibility forms, punctuation and spacing folded."
        ),
        examples=[["KTH Royal Institute of Technology"]],
    )
    ownership_interests: list[ShortText] = Field(
        default_factory=list,
        max_length=100,
        description="Organisations the reviewer holds shares or other ownership interests in.",
        examples=[["Nordic Vision Holdings AB"]],
    )
    declared_identifiers: DeclaredIdentifiers = Field(default_factory=list)
    active: bool = Field(
        default=True,
        description="Inactive reviewers get no new tasks (they may still decide open ones).",
        examples=[True],
    )

    def profile(self, reviewer_id: str) -> ReviewerProfile:
        """The contract profile of this entry for ``reviewer_id``."""
        return ReviewerProfile(reviewer_id=reviewer_id, **self.model_dump())


class ReviewerView(BaseModel):
    """A reviewer in the registry, with who last changed the entry and when."""

    model_config = ConfigDict(
        **_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    **REVIEWER_EXAMPLE,
                    "created_at": "2026-11-20T09:00:00Z",
                    "updated_at": "2026-11-21T14:30:00Z",
                    "updated_by": "admin@gaip.example",
                }
            ]
        },
    )

    reviewer_id: Identifier = Field(
        description="The reviewer's user id (the `sub` of their token).",
        examples=["rev.lindqvist@gaip.example"],
    )
    name: ShortText = Field(description="Display name.", examples=["Dr. Erik Lindqvist"])
    roles: list[ReviewerRole] = Field(
        description="Stages the reviewer may decide; `supervisor` receives escalations.",
        examples=[["technical", "committee"]],
    )
    affiliations: list[ShortText] = Field(
        description="Declared affiliations (employers, advisory roles, boards).",
        examples=[["KTH Royal Institute of Technology"]],
    )
    ownership_interests: list[ShortText] = Field(
        description="Declared ownership interests.", examples=[["Nordic Vision Holdings AB"]]
    )
    declared_identifiers: list[OrganisationIdentifier] = Field(
        default_factory=list,
        description="Declared register entries and LEIs of those organisations.",
        examples=[[{"register_country": "SE", "register_number": "556677-8899"}]],
    )
    active: bool = Field(description="Whether the reviewer gets new tasks.", examples=[True])
    created_at: datetime = Field(
        description="When the entry was created, in UTC.", examples=["2026-11-20T09:00:00Z"]
    )
    updated_at: datetime = Field(
        description="When the entry last changed, in UTC.", examples=["2026-11-21T14:30:00Z"]
    )
    updated_by: str = Field(
        description="Who last changed it: an admin, or `system:review` for the demo seed.",
        examples=["admin@gaip.example", "system:review"],
    )


class ReviewerList(BaseModel):
    """Registry entries, sorted by reviewer id."""

    model_config = _CONFIG

    items: list[ReviewerView] = Field(
        description="The reviewers matching the filters.",
        examples=[
            [
                {
                    **REVIEWER_EXAMPLE,
                    "created_at": "2026-11-20T09:00:00Z",
                    "updated_at": "2026-11-21T14:30:00Z",
                    "updated_by": "admin@gaip.example",
                }
            ]
        ],
    )


class ReviewerChangeView(BaseModel):
    """One version of a registry entry: the entry as it stood from ``changed_at`` on."""

    model_config = _CONFIG

    change: Literal["added", "replaced", "removed", "recorded"] = Field(
        description=(
            "What happened: the entry was `added`, `replaced` or `removed`; `recorded` is the "
            "entry as it stood when the registry's history began (what it was before is not "
            "known)."
        ),
        examples=["replaced"],
    )
    changed_at: datetime = Field(
        description="When the change was made, in UTC.", examples=["2026-11-21T14:30:00Z"]
    )
    changed_by: str = Field(
        description="Who made it: an admin, or `system:review` for the demo seed.",
        examples=["admin@gaip.example"],
    )
    profile: ReviewerProfile | None = Field(
        description="The whole entry after the change; null once removed.",
        examples=[REVIEWER_EXAMPLE],
    )


class ReviewerHistory(BaseModel):
    """Every version of one registry entry, oldest first."""

    model_config = _CONFIG

    reviewer_id: Identifier = Field(
        description="The reviewer's user id.", examples=["rev.lindqvist@gaip.example"]
    )
    items: list[ReviewerChangeView] = Field(
        description="The changes, oldest first.",
        examples=[
            [
                {
                    "change": "added",
                    "changed_at": "2026-11-20T09:00:00Z",
                    "changed_by": "admin@gaip.example",
                    "profile": REVIEWER_EXAMPLE,
                }
            ]
        ],
    )


# --- tasks ---------------------------------------------------------------------------------------

DECISION_INFO_EXAMPLE: JsonDict = {
    "decision": "approve",
    "comment": "Architecture and evaluation plan are sound.",
    "decided_at": "2026-12-02T15:20:00Z",
}
INFORMATION_REQUEST_EXAMPLE: JsonDict = {
    "request_id": "req_5T2W8N",
    "fields": ["commitments.training"],
    "questions": ["How many local engineers will the residency train per year?"],
    "requested_at": "2026-12-02T15:20:00Z",
    "respond_by": "2027-01-01T15:20:00Z",
}
ESCALATION_EXAMPLE: JsonDict = {
    "supervisor_id": "sup.meyer@gaip.example",
    "reason": "No decision 14 days after assignment.",
    "escalated_at": "2026-12-10T10:36:00Z",
}
#: A second summary, so the field's own examples differ from the model's (both are shown).
AGRI_SUMMARY_EXAMPLE: JsonDict = {
    "firm_id": "SAKURA",
    "firm_legal_name": "Sakura Agritech K.K.",
    "firm_country": "JP",
    "title": "Crop disease early warning from drone imagery",
    "sector": "agriculture",
    "grant_requested": None,
    "investment_commitment": {"amount": "2500000.00", "currency": "EUR"},
}
TASK_EXAMPLE: JsonDict = {
    "task_id": _TASK_ID,
    "application_id": _APP_ID,
    "stage": "technical",
    "reviewer_id": _REVIEWER,
    "status": "open",
    "sla_state": "reminder_sent",
    "summary": APPLICATION_SUMMARY_EXAMPLE,
    "assigned_at": "2026-11-26T10:36:00Z",
    "due_at": "2026-12-10T10:36:00Z",
    "reminded_at": "2026-12-03T10:36:00Z",
    "quorum": None,
    "escalation": None,
    "decision": None,
    "information_request": None,
    "cancellation": None,
    "application_outcome": None,
}


class DecisionInfo(BaseModel):
    """The decision recorded on a task."""

    model_config = ConfigDict(**_CONFIG, json_schema_extra={"examples": [DECISION_INFO_EXAMPLE]})

    decision: Decision = Field(
        description="Approve, reject, or request more information.", examples=["approve"]
    )
    comment: str = Field(
        description="The reviewer's reasoning.",
        examples=["Architecture and evaluation plan are sound."],
    )
    decided_at: datetime = Field(
        description="When the decision was made, in UTC.", examples=["2026-12-02T15:20:00Z"]
    )


class InformationRequestInfo(BaseModel):
    """What the reviewer asked the firm for; the stage waits for the amendment."""

    model_config = ConfigDict(
        **_CONFIG, json_schema_extra={"examples": [INFORMATION_REQUEST_EXAMPLE]}
    )

    request_id: str = Field(description="Id of the information request.", examples=["req_5T2W8N"])
    fields: list[str] = Field(
        description="Application fields the firm must amend.",
        examples=[["commitments.training"]],
    )
    questions: list[str] = Field(
        description="Questions for the firm.",
        examples=[["How many local engineers will the residency train per year?"]],
    )
    requested_at: datetime = Field(
        description="When it was asked, in UTC.", examples=["2026-12-02T15:20:00Z"]
    )
    respond_by: datetime = Field(
        description="Deadline of the firm's amendment, in UTC; the application is withdrawn "
        "without one.",
        examples=["2027-01-01T15:20:00Z"],
    )


class EscalationInfo(BaseModel):
    """The task's escalation to a supervisor."""

    model_config = ConfigDict(**_CONFIG, json_schema_extra={"examples": [ESCALATION_EXAMPLE]})

    supervisor_id: str | None = Field(
        description="The supervisor it went to; null means the supervisors' shared queue.",
        examples=["sup.meyer@gaip.example", None],
    )
    reason: str = Field(
        description="Why it was escalated.", examples=["No decision 14 days after assignment."]
    )
    escalated_at: datetime = Field(
        description="When it was escalated, in UTC.", examples=["2026-12-10T10:36:00Z"]
    )


class CancellationInfo(BaseModel):
    """Why an open task no longer needs a decision."""

    model_config = ConfigDict(
        **_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "reason": "The committee reached 2 of 3 approvals.",
                    "cancelled_at": "2027-01-02T11:00:00Z",
                }
            ]
        },
    )

    reason: str = Field(
        description="Why no decision is needed any more.",
        examples=["The committee reached 2 of 3 approvals."],
    )
    cancelled_at: datetime = Field(
        description="When the task was cancelled, in UTC.", examples=["2027-01-02T11:00:00Z"]
    )


class ApplicationOutcomeInfo(BaseModel):
    """How the task's application ended."""

    model_config = ConfigDict(
        **_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "outcome": "withdrawn",
                    "reasons": ["The project was moved to another country."],
                    "ended_at": "2026-12-10T08:15:00Z",
                    "ended_by": "alice@acme.example",
                }
            ]
        },
    )

    outcome: ApplicationOutcome = Field(
        description="Approved, rejected or withdrawn.", examples=["approved", "withdrawn"]
    )
    reasons: list[str] = Field(
        description="Why (rejection reasons, withdrawal reason); empty for an approval.",
        examples=[["The project was moved to another country."], []],
    )
    ended_at: datetime = Field(
        description="When the application ended, in UTC.", examples=["2026-12-10T08:15:00Z"]
    )
    ended_by: str | None = Field(
        description="Who ended it: a reviewer, the firm user or a system actor.",
        examples=["alice@acme.example", "system:workflows"],
    )


class TaskView(BaseModel):
    """A review task as the inbox shows it."""

    model_config = ConfigDict(**_CONFIG, json_schema_extra={"examples": [TASK_EXAMPLE]})

    task_id: str = Field(description="Id of the task.", examples=[_TASK_ID])
    application_id: str = Field(
        description="The application (also the workflow id).", examples=[_APP_ID]
    )
    stage: ReviewStage = Field(description="The stage to decide.", examples=["technical"])
    reviewer_id: str = Field(description="The reviewer assigned.", examples=[_REVIEWER])
    status: TaskStatus = Field(
        description=(
            "`open` (waiting for the decision), `decided`, `cancelled` (no longer needed) or "
            "`closed` (the application ended while it was open)."
        ),
        examples=["open", "decided"],
    )
    sla_state: SlaState = Field(
        description=(
            "Against the due date, now (for finished tasks: when they finished): `on_time`, "
            "`reminder_sent`, `overdue` (past due, not escalated yet) or `escalated`."
        ),
        examples=["on_time", "reminder_sent", "escalated", "overdue"],
    )
    summary: ApplicationSummary = Field(
        description="The application as the reviewer needs to see it.",
        examples=[AGRI_SUMMARY_EXAMPLE],
    )
    assigned_at: datetime = Field(
        description="When the task was assigned (for a re-assignment: the latest), in UTC.",
        examples=["2026-11-26T10:36:00Z"],
    )
    due_at: datetime = Field(
        description="The SLA deadline of the decision, in UTC.", examples=["2026-12-10T10:36:00Z"]
    )
    reminded_at: datetime | None = Field(
        description="When the SLA reminder went out, in UTC; null if none yet.",
        examples=["2026-12-03T10:36:00Z", None],
    )
    quorum: CommitteeQuorum | None = Field(
        description="For committee tasks, the N-of-M rule; null for other stages.",
        examples=[COMMITTEE_QUORUM_EXAMPLE, None],
    )
    escalation: EscalationInfo | None = Field(
        description="The escalation to a supervisor, if the task was escalated.",
        examples=[ESCALATION_EXAMPLE, None],
    )
    decision: DecisionInfo | None = Field(
        description="The decision, once made.", examples=[DECISION_INFO_EXAMPLE, None]
    )
    information_request: InformationRequestInfo | None = Field(
        description="With a `request_information` decision: what the firm was asked.",
        examples=[INFORMATION_REQUEST_EXAMPLE, None],
    )
    cancellation: CancellationInfo | None = Field(
        description="Why the task was cancelled, if it was.",
        examples=[
            {
                "reason": "The committee reached 2 of 3 approvals.",
                "cancelled_at": "2027-01-02T11:00:00Z",
            },
            None,
        ],
    )
    application_outcome: ApplicationOutcomeInfo | None = Field(
        description="How the application ended, once it has.",
        examples=[
            {
                "outcome": "approved",
                "reasons": [],
                "ended_at": "2027-01-02T11:00:00Z",
                "ended_by": "system:workflows",
            },
            None,
        ],
    )


HISTORY_EXAMPLE: JsonDict = {
    "event_id": "0b6f3c3e-6d0e-4a5c-9a55-3c1d7c3f9b21",
    "type": "review.task_assigned",
    "occurred_at": "2026-11-26T10:36:00Z",
    "actor_id": "system:workflows",
    "note": "Assigned to rev.novak@gaip.example (technical), due 2026-12-10T10:36:00Z.",
}


class HistoryEntry(BaseModel):
    """One event applied to a task."""

    model_config = ConfigDict(**_CONFIG, json_schema_extra={"examples": [HISTORY_EXAMPLE]})

    event_id: str = Field(
        description="The event's id (as in the audit ledger).",
        examples=["0b6f3c3e-6d0e-4a5c-9a55-3c1d7c3f9b21"],
    )
    type: str = Field(description="The event type.", examples=["review.task_assigned"])
    occurred_at: datetime = Field(
        description="When the fact happened, in UTC.", examples=["2026-11-26T10:36:00Z"]
    )
    actor_id: str = Field(
        description="Who caused it (reviewer, firm user or system actor).",
        examples=["system:workflows", _REVIEWER],
    )
    note: str = Field(
        description="What happened, in words.",
        examples=["Assigned to rev.novak@gaip.example (technical), due 2026-12-10T10:36:00Z."],
    )


class TaskDetail(TaskView):
    """A task with its history."""

    model_config = ConfigDict(
        **_CONFIG,
        json_schema_extra={"examples": [{**TASK_EXAMPLE, "history": [HISTORY_EXAMPLE]}]},
    )

    history: list[HistoryEntry] = Field(
        description="Every event applied to the task, oldest first.", examples=[[HISTORY_EXAMPLE]]
    )


class TaskPage(BaseModel):
    """A page of tasks, soonest due first."""

    model_config = ConfigDict(
        **_CONFIG,
        json_schema_extra={"examples": [{"items": [TASK_EXAMPLE], "total": 1, "offset": 0}]},
    )

    items: list[TaskView] = Field(
        description="The tasks on this page, by due date then task id.", examples=[[TASK_EXAMPLE]]
    )
    total: int = Field(description="How many tasks match the filters in all.", examples=[1])
    offset: int = Field(description="How many matching tasks precede this page.", examples=[0])


# --- decisions -----------------------------------------------------------------------------------

DECISION_EXAMPLES: dict[str, JsonDict] = {
    "approve": {
        "summary": "Approve the stage",
        "value": {"decision": "approve", "comment": "Architecture and evaluation plan are sound."},
    },
    "reject": {
        "summary": "Reject the application",
        "value": {
            "decision": "reject",
            "comment": "Patient data would be processed outside the country.",
        },
    },
    "request_information": {
        "summary": "Ask the firm for more information",
        "value": {
            "decision": "request_information",
            "comment": "How many local engineers will the residency train per year?",
            "requested_fields": ["commitments.training"],
        },
    },
}


class DecisionBody(BaseModel):
    """A reviewer's decision on their task."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"examples": [e["value"] for e in DECISION_EXAMPLES.values()]},
    )

    decision: Decision = Field(
        description="Approve, reject, or request more information from the firm.",
        examples=["approve", "reject", "request_information"],
    )
    comment: LongText = Field(
        description=(
            "Your reasoning. The firm reads it on a rejection; with `request_information` it is "
            "the question the firm answers."
        ),
        examples=["Architecture and evaluation plan are sound."],
    )
    requested_fields: list[FieldPath] = Field(
        default_factory=list,
        max_length=50,
        description="With `request_information` only: the application fields the firm must amend.",
        examples=[["commitments.training"], []],
    )
    fast_track_declined: list[FastTrackDeclined] = Field(
        default_factory=list,
        max_length=10,
        description=(
            "A committee member's `approve` only: the requested fast-track items you do not "
            "approve, each with the reason the firm reads. An item is granted only if the "
            "quorum of approving members approves it."
        ),
        examples=[[{"item": "expedited_work_visa", "reason": "Staff not named."}], []],
    )

    @model_validator(mode="after")
    def _fields_only_with_information_request(self) -> Self:
        problem = decision_body_problem(self.decision, self.requested_fields)
        if problem is not None:
            raise ValueError(problem)
        return self


class DecisionResult(BaseModel):
    """The workflow accepted the decision."""

    model_config = ConfigDict(
        **_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "task_id": _TASK_ID,
                    "application_id": _APP_ID,
                    "request_id": "dec_4be1c3d2a0f94e8b7c6d5e4f3a2b1c0d9e8f7a6b",
                    "stage": "technical",
                    "decision": "approve",
                    "stage_closed": False,
                    "application_phase": "technical_security_review",
                }
            ]
        },
    )

    task_id: str = Field(description="The task decided.", examples=[_TASK_ID])
    application_id: str = Field(description="The application.", examples=[_APP_ID])
    request_id: str = Field(
        description="The decision's id, derived from the task, you and the Idempotency-Key.",
        examples=["dec_4be1c3d2a0f94e8b7c6d5e4f3a2b1c0d9e8f7a6b"],
    )
    stage: ReviewStage = Field(description="The stage decided.", examples=["technical"])
    decision: Decision = Field(description="The decision recorded.", examples=["approve"])
    stage_closed: bool = Field(
        description="Whether this decision closed the stage (a committee needs N of M).",
        examples=[False, True],
    )
    application_phase: str = Field(
        description="Where the application stands after the decision.",
        examples=["technical_security_review", "finance_review", "approved"],
    )


class ReassignBody(BaseModel):
    """A supervisor's reassignment of an escalated task."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {"reviewer_id": "rev.weber@gaip.example", "reason": "Rev. Novak is on leave."}
            ]
        },
    )

    reviewer_id: RegistryId = Field(
        description="The registry id of the reviewer who gets the task.",
        examples=["rev.weber@gaip.example"],
    )
    reason: LongText = Field(
        description="Why the task moves; recorded on the cancelled task.",
        examples=["Rev. Novak is on leave until March."],
    )
