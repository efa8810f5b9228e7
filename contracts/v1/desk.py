"""The review desk ↔ workflow interface: reviewer decisions as Temporal updates, and reviewer
profiles from the registry.

These are not Kafka messages. The review desk authenticates the reviewer, then sends a
:class:`ReviewDecisionRequest` as the ``decide`` update of the application's
``IncentiveApproval`` workflow. The workflow's validator refuses it by raising a Temporal
``ApplicationError`` whose ``type`` is one of the :class:`DecisionRefusal` codes and whose
message says why in words a reviewer can read; the desk maps the code to an RFC 9457 problem.

Reviewer profiles come from the desk's registry. The workflow fetches them (through an activity)
when it assigns a stage, and keeps the snapshot: conflict-of-interest checks then use what the
registry declared at assignment time.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.iso import CountryCode, Lei
from contracts.v1.common import (
    PAYLOAD_CONFIG,
    Decision,
    FastTrackDeclined,
    FieldPath,
    Identifier,
    LongText,
    ReviewStage,
    ShortText,
)

#: The name of the workflow update that carries a reviewer's decision.
DECIDE_UPDATE = "decide"
#: The workflow update a supervisor reassigns an escalated task with.
REASSIGN_UPDATE = "reassign"

_REVIEWER = "rev.tanaka@gaip.example"


class ReviewerRole(StrEnum):
    """What a reviewer may decide, as declared in the registry."""

    TECHNICAL = "technical"
    SECURITY = "security"
    FINANCE = "finance"
    COMMITTEE = "committee"
    SUPERVISOR = "supervisor"


class OrganisationIdentifier(BaseModel):
    """An organisation named by identifier: its company-register entry, its LEI, or both.

    Compared with the applicant's and its parent companies' identifiers: the register number
    within the same country (case, spacing and punctuation folded), the LEI exactly.
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {"register_country": "DE", "register_number": "HRB 654321"},
                {"lei": "529900ACMEHOLDINGS14"},
            ]
        },
    )

    register_country: CountryCode | None = Field(
        default=None,
        description="ISO 3166-1 alpha-2 country of the company register; with `register_number`.",
        examples=["DE"],
    )
    register_number: ShortText | None = Field(
        default=None,
        description="The organisation's number in that register; with `register_country`.",
        examples=["HRB 654321"],
    )
    lei: Lei | None = Field(
        default=None,
        description="The organisation's ISO 17442 Legal Entity Identifier.",
        examples=["529900ACMEHOLDINGS14"],
    )

    @model_validator(mode="after")
    def _register_or_lei(self) -> Self:
        if (self.register_country is None) != (self.register_number is None):
            raise ValueError("register_country and register_number go together")
        if self.register_number is None and self.lei is None:
            raise ValueError(
                "give a register entry (register_country and register_number) or an lei"
            )
        return self


#: A reviewer's declared interests by identifier (the registry's entry and its API use it too).
DeclaredIdentifiers = Annotated[
    list[OrganisationIdentifier],
    Field(
        max_length=100,
        description=(
            "Company-register entries (`register_country` and `register_number`) or LEIs of "
            "organisations the reviewer is affiliated with or owns part of. A match with the "
            "firm or a parent company is a conflict of interest, whatever the names say."
        ),
        examples=[[{"register_country": "DE", "register_number": "HRB 654321"}]],
    ),
]


class ReviewerProfile(BaseModel):
    """A reviewer as the registry declares them."""

    model_config = ConfigDict(**PAYLOAD_CONFIG)

    reviewer_id: Identifier = Field(
        description="The reviewer's user id (the `sub` of their token).", examples=[_REVIEWER]
    )
    name: ShortText = Field(description="Display name.", examples=["Dr. Aiko Tanaka"])
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
            "Matched against the firm and its parent companies with case, Unicode compatibility "
            "forms, punctuation and spacing folded (see `contracts.conflicts`)."
        ),
        examples=[["Kyoto University", "Acme Vision AI GmbH"]],
    )
    ownership_interests: list[ShortText] = Field(
        default_factory=list,
        max_length=100,
        description="Organisations the reviewer holds shares or other ownership interests in.",
        examples=[["Acme Holdings AG"]],
    )
    declared_identifiers: DeclaredIdentifiers = Field(default_factory=list)
    active: bool = Field(
        default=True, description="Inactive reviewers get no new tasks.", examples=[True]
    )


class ReviewDecisionRequest(BaseModel):
    """The ``decide`` update: one reviewer's decision on one stage of one application."""

    model_config = ConfigDict(**PAYLOAD_CONFIG)

    request_id: Identifier = Field(
        description=(
            "Idempotency key of the decision (the desk derives it from the task and the "
            "request). A repeated request id returns the first outcome."
        ),
        examples=["dec_01J9Q5A7NB"],
    )
    task_id: Identifier = Field(description="The task being decided.", examples=["task_01J9Q4T2ZT"])
    stage: ReviewStage = Field(description="The stage being decided.", examples=["technical"])
    reviewer_id: Identifier = Field(
        description="The authenticated reviewer (from their token).", examples=[_REVIEWER]
    )
    token_roles: list[ReviewerRole] = Field(
        default_factory=list,
        description="The reviewer's roles according to the registry at the time of the request.",
        examples=[["technical"]],
    )
    decision: Decision = Field(
        description="Approve, reject, or request more information.", examples=["approve"]
    )
    comment: LongText = Field(
        description="The reviewer's reasoning; shown to the firm on rejection.",
        examples=["Architecture and evaluation plan are sound."],
    )
    requested_fields: list[FieldPath] = Field(
        default_factory=list,
        max_length=50,
        description="With `request_information`: the application fields the firm must amend.",
        examples=[["commitments.training"]],
    )
    fast_track_declined: list[FastTrackDeclined] = Field(
        default_factory=list,
        max_length=10,
        description=(
            "With a committee member's `approve`: the requested fast-track items this member "
            "does not approve, each with the reason. An item is granted only if the quorum of "
            "approving members approves it too."
        ),
        examples=[[{"item": "expedited_work_visa", "reason": "Staff not named."}]],
    )
    supervisor: ReviewerProfile | None = Field(
        default=None,
        description=(
            "Set when a supervisor decides an escalated task of another reviewer in their "
            "place: the supervisor's registry profile at the time of the request, which the "
            "conflict-of-interest check uses. The supervisor stands in for the stage's role; "
            "every other rule of a decision applies to them. The escalated task is cancelled "
            "and the decision recorded on a task of the supervisor's."
        ),
    )


class DecisionRefusal(StrEnum):
    """Why the workflow refused a decision. Each maps to an HTTP status at the desk."""

    WRONG_ROLE = "wrong_role"
    NOT_ASSIGNED = "not_assigned"
    CONFLICT_OF_INTEREST = "conflict_of_interest"
    SEPARATION_OF_DUTIES = "separation_of_duties"
    STAGE_NOT_OPEN = "stage_not_open"
    DUPLICATE_DECISION = "duplicate_decision"
    INVALID_REQUEST = "invalid_request"
    APPLICATION_CLOSED = "application_closed"
    """The application ended (approved, rejected or withdrawn): nothing of it is open any more.

    The same answer whether the workflow is still publishing its last events or has completed
    (the desk then learns it from Temporal), so a late committee vote always reads the same.
    """


class ReviewDecisionOutcome(BaseModel):
    """What the ``decide`` update returns once the decision is accepted."""

    model_config = ConfigDict(**PAYLOAD_CONFIG)

    request_id: Identifier = Field(description="The request decided.", examples=["dec_01J9Q5A7NB"])
    stage: ReviewStage = Field(description="The stage decided.", examples=["technical"])
    decision: Decision = Field(description="The decision recorded.", examples=["approve"])
    stage_closed: bool = Field(
        description="Whether this decision closed the stage (a committee needs N of M).",
        examples=[True],
    )
    application_phase: ShortText = Field(
        description="Where the application stands after the decision.",
        examples=["finance_review"],
    )


class TaskReassignment(BaseModel):
    """The ``reassign`` update: a supervisor gives an escalated, undecided task to another
    reviewer, who must be free to decide it (role, no conflict, separation of duties)."""

    model_config = ConfigDict(**PAYLOAD_CONFIG)

    request_id: Identifier = Field(
        description="Idempotency key of the reassignment; a repeated one returns the first "
        "outcome.",
        examples=["rea_01J9Q5A7NB"],
    )
    task_id: Identifier = Field(description="The escalated task.", examples=["task_01J9Q4T2ZT"])
    supervisor_id: Identifier = Field(
        description="The authenticated supervisor (from their token).",
        examples=["sup.meyer@gaip.example"],
    )
    supervisor_roles: list[ReviewerRole] = Field(
        default_factory=list,
        description="The supervisor's roles according to the registry at the time of the request.",
        examples=[["supervisor"]],
    )
    reviewer: ReviewerProfile = Field(
        description="The reviewer who gets the task, as the registry holds them now; this is "
        "the assignment snapshot the conflict and role checks use from then on."
    )
    reason: LongText = Field(
        description="Why the task is reassigned; recorded on the cancelled task.",
        examples=["Rev. Novak is on leave until March."],
    )


class TaskReassigned(BaseModel):
    """What the ``reassign`` update returns: the new task."""

    model_config = ConfigDict(**PAYLOAD_CONFIG)

    request_id: Identifier = Field(description="The request.", examples=["rea_01J9Q5A7NB"])
    cancelled_task_id: Identifier = Field(
        description="The escalated task, now cancelled.", examples=["task_01J9Q4T2ZT"]
    )
    task_id: Identifier = Field(description="The new task.", examples=["task_01J9Q4T2ZU"])
    reviewer_id: Identifier = Field(
        description="Who holds the new task.", examples=["rev.weber@gaip.example"]
    )
