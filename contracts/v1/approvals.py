"""Approval events: the workflow's final decision on an application."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from contracts.envelope import UtcDatetime
from contracts.money import Money
from contracts.v1.common import (
    COMMITTEE_QUORUM_EXAMPLE,
    PAYLOAD_CONFIG,
    ZONE_SPACE_REQUEST_EXAMPLE,
    CommitteeQuorum,
    FastTrackItem,
    Identifier,
    LongText,
    ReviewStage,
    Stage,
    ZoneSpaceRequest,
)

_APP_ID = "app_01HZX3Q8W6"

STAGE_APPROVAL_EXAMPLE: JsonDict = {
    "stage": "technical",
    "reviewer_id": "rev.tanaka@gaip.example",
    "decided_at": "2026-12-02T15:20:00Z",
}


class StageApproval(BaseModel):
    """One reviewer's approval that counted towards the final decision."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG, json_schema_extra={"examples": [STAGE_APPROVAL_EXAMPLE]}
    )

    stage: ReviewStage = Field(description="The stage approved.", examples=["technical"])
    reviewer_id: Identifier = Field(
        description="The approving reviewer.", examples=["rev.tanaka@gaip.example"]
    )
    decided_at: UtcDatetime = Field(
        description="When the approval was given, in UTC.", examples=["2026-12-02T15:20:00Z"]
    )


class ApplicationApproved(BaseModel):
    """Event ``application.approved``: every stage approved and the committee reached quorum.

    It states what was granted; zone allocation and award opening follow as commands.
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "application_id": _APP_ID,
                    "firm_id": "ACME",
                    "approvals": [
                        STAGE_APPROVAL_EXAMPLE,
                        {
                            "stage": "security",
                            "reviewer_id": "rev.silva@gaip.example",
                            "decided_at": "2026-12-03T09:10:00Z",
                        },
                        {
                            "stage": "finance",
                            "reviewer_id": "rev.nguyen@gaip.example",
                            "decided_at": "2026-12-12T16:45:00Z",
                        },
                        {
                            "stage": "committee",
                            "reviewer_id": "rev.haddad@gaip.example",
                            "decided_at": "2027-01-02T10:00:00Z",
                        },
                        {
                            "stage": "committee",
                            "reviewer_id": "rev.kim@gaip.example",
                            "decided_at": "2027-01-02T11:00:00Z",
                        },
                    ],
                    "quorum": COMMITTEE_QUORUM_EXAMPLE,
                    "grant": {"amount": "250000.00", "currency": "EUR"},
                    "zone_space": [ZONE_SPACE_REQUEST_EXAMPLE],
                    "fast_track": ["sandbox_access"],
                    "approved_at": "2027-01-02T11:00:00Z",
                }
            ]
        },
    )

    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    firm_id: Identifier = Field(description="The firm's id in the program.", examples=["ACME"])
    approvals: list[StageApproval] = Field(
        min_length=1,
        max_length=100,
        description="The approvals that carried the decision, stage by stage.",
        examples=[[STAGE_APPROVAL_EXAMPLE]],
    )
    quorum: CommitteeQuorum = Field(
        description="The committee rule that was applied.", examples=[COMMITTEE_QUORUM_EXAMPLE]
    )
    grant: Money | None = Field(
        default=None,
        description="The grant awarded, or null when none.",
        examples=[{"amount": "250000.00", "currency": "EUR"}, None],
    )
    zone_space: list[ZoneSpaceRequest] = Field(
        default_factory=list,
        max_length=10,
        description="The zone space to allocate.",
        examples=[[ZONE_SPACE_REQUEST_EXAMPLE], []],
    )
    fast_track: list[FastTrackItem] = Field(
        default_factory=list,
        max_length=10,
        description="The regulatory fast-track items granted.",
        examples=[["sandbox_access"], []],
    )
    approved_at: UtcDatetime = Field(
        description="When the application was approved, in UTC.",
        examples=["2027-01-02T11:00:00Z"],
    )


class ApplicationRejected(BaseModel):
    """Event ``application.rejected``: a stage rejected the application; its journey ends.

    Eligibility rejects through its rules (``decided_by`` names a system actor); review stages
    reject through a reviewer's decision.
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "application_id": _APP_ID,
                    "firm_id": "ACME",
                    "stage": "eligibility",
                    "reasons": ["The investment commitment is below the EUR 1,000,000 minimum."],
                    "decided_by": "system:eligibility",
                    "rejected_at": "2026-11-26T10:35:05Z",
                },
                {
                    "application_id": _APP_ID,
                    "firm_id": "ACME",
                    "stage": "security",
                    "reasons": ["Patient data would be processed outside the country."],
                    "decided_by": "rev.silva@gaip.example",
                    "rejected_at": "2026-12-03T09:10:00Z",
                },
            ]
        },
    )

    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    firm_id: Identifier = Field(description="The firm's id in the program.", examples=["ACME"])
    stage: Stage = Field(
        description="The stage that rejected.", examples=["eligibility", "security"]
    )
    reasons: list[LongText] = Field(
        min_length=1,
        max_length=100,
        description="Why, in words the firm can read (failed rules or the reviewer's comment).",
        examples=[["The investment commitment is below the EUR 1,000,000 minimum."]],
    )
    decided_by: Identifier = Field(
        description="The reviewer who rejected, or the system actor for eligibility.",
        examples=["rev.silva@gaip.example", "system:eligibility"],
    )
    rejected_at: UtcDatetime = Field(
        description="When the application was rejected, in UTC.",
        examples=["2026-11-26T10:35:05Z"],
    )
