"""After the committee: the offer, the firm's answer, fast-track grants, milestones, compensations.

The firm's answers and milestone reports flow on ``applications.events`` (the applications API
writes them); what the approval workflow decides flows on ``approvals.events``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from contracts.envelope import UtcDatetime
from contracts.money import Money
from contracts.v1.common import (
    PAYLOAD_CONFIG,
    ZONE_SPACE_REQUEST_EXAMPLE,
    ZONE_UNITS_EXAMPLE,
    CompensationReason,
    FastTrackDeclined,
    FastTrackItem,
    Identifier,
    LongText,
    ShortText,
    ZoneSpaceRequest,
    ZoneUnits,
)
from contracts.v1.disbursement import TRANCHES_EXAMPLE, Tranche

_APP_ID = "app_01HZX3Q8W6"
_OFFER_ID = "offer_app_01HZX3Q8W6"
_AWARD_ID = "award_app_01HZX3Q8W6"
_TOTAL: JsonDict = {"amount": "250000.00", "currency": "EUR"}


class OfferMade(BaseModel):
    """Event ``application.offer_made``: the package the firm is offered, until ``expires_at``."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "offer_id": _OFFER_ID,
                    "application_id": _APP_ID,
                    "firm_id": "ACME",
                    "space": [ZONE_UNITS_EXAMPLE],
                    "space_unavailable": [],
                    "grant": _TOTAL,
                    "award_id": _AWARD_ID,
                    "tranches": TRANCHES_EXAMPLE,
                    "fast_track": ["sandbox_access"],
                    "offered_at": "2027-01-02T11:00:06Z",
                    "expires_at": "2027-01-16T11:00:06Z",
                }
            ]
        },
    )

    offer_id: Identifier = Field(
        description="The offer; the firm's answer names it.", examples=[_OFFER_ID]
    )
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    firm_id: Identifier = Field(description="The firm offered the package.", examples=["ACME"])
    space: list[ZoneUnits] = Field(
        default_factory=list,
        max_length=100,
        description="The zone space held for the firm, zone by zone.",
        examples=[[ZONE_UNITS_EXAMPLE]],
    )
    space_unavailable: list[ZoneSpaceRequest] = Field(
        default_factory=list,
        max_length=10,
        description="Requested space the zones could not hold (refused); not part of the offer.",
        examples=[[], [ZONE_SPACE_REQUEST_EXAMPLE]],
    )
    grant: Money | None = Field(
        default=None, description="The grant reserved for the firm; null: none.", examples=[_TOTAL]
    )
    award_id: Identifier | None = Field(
        default=None, description="The award the grant is paid from.", examples=[_AWARD_ID]
    )
    tranches: list[Tranche] = Field(
        default_factory=list,
        max_length=100,
        description="The grant's tranche schedule: the first is paid on signing.",
        examples=[TRANCHES_EXAMPLE],
    )
    fast_track: list[FastTrackItem] = Field(
        default_factory=list,
        max_length=10,
        description="Regulatory fast-track items granted on acceptance.",
        examples=[["sandbox_access"]],
    )
    fast_track_declined: list[FastTrackDeclined] = Field(
        default_factory=list,
        max_length=10,
        description="Requested fast-track items the committee did not approve, with the reason.",
        examples=[[{"item": "expedited_work_visa", "reason": "Staff not named."}]],
    )
    offered_at: UtcDatetime = Field(
        description="When the offer was made, in UTC.", examples=["2027-01-02T11:00:06Z"]
    )
    expires_at: UtcDatetime = Field(
        description="When the offer lapses unless accepted, in UTC.",
        examples=["2027-01-16T11:00:06Z"],
    )


class OfferAccepted(BaseModel):
    """Event ``application.offer_accepted``: the firm accepted the offer."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "offer_id": _OFFER_ID,
                    "application_id": _APP_ID,
                    "firm_id": "ACME",
                    "accepted_at": "2027-01-05T09:30:00Z",
                }
            ]
        },
    )

    offer_id: Identifier = Field(description="The offer accepted.", examples=[_OFFER_ID])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    firm_id: Identifier = Field(description="The firm.", examples=["ACME"])
    accepted_at: UtcDatetime = Field(
        description="When the firm accepted, in UTC.", examples=["2027-01-05T09:30:00Z"]
    )


class OfferDeclined(BaseModel):
    """Event ``application.offer_declined``: the firm declined the offer."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "offer_id": _OFFER_ID,
                    "application_id": _APP_ID,
                    "firm_id": "ACME",
                    "reason": "We settled in another country.",
                    "declined_at": "2027-01-05T09:30:00Z",
                }
            ]
        },
    )

    offer_id: Identifier = Field(description="The offer declined.", examples=[_OFFER_ID])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    firm_id: Identifier = Field(description="The firm.", examples=["ACME"])
    reason: LongText | None = Field(
        default=None, description="Why, if the firm said.", examples=["We settled elsewhere.", None]
    )
    declined_at: UtcDatetime = Field(
        description="When the firm declined, in UTC.", examples=["2027-01-05T09:30:00Z"]
    )


class OfferLapsed(BaseModel):
    """Event ``application.offer_lapsed``: nobody answered the offer before it expired."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "offer_id": _OFFER_ID,
                    "application_id": _APP_ID,
                    "firm_id": "ACME",
                    "lapsed_at": "2027-01-16T11:00:06Z",
                }
            ]
        },
    )

    offer_id: Identifier = Field(description="The offer that lapsed.", examples=[_OFFER_ID])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    firm_id: Identifier = Field(description="The firm.", examples=["ACME"])
    lapsed_at: UtcDatetime = Field(
        description="When it lapsed, in UTC.", examples=["2027-01-16T11:00:06Z"]
    )


class FastTrackGranted(BaseModel):
    """Event ``application.fast_track_granted``: an approved fast-track item is in force."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "application_id": _APP_ID,
                    "firm_id": "ACME",
                    "item": "sandbox_access",
                    "conditions": "Supervised pilot in the approved hospitals only.",
                    "valid_from": "2027-01-05T09:30:01Z",
                    "valid_until": "2028-01-05T09:30:01Z",
                }
            ]
        },
    )

    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    firm_id: Identifier = Field(description="The firm.", examples=["ACME"])
    item: FastTrackItem = Field(description="The item granted.", examples=["sandbox_access"])
    conditions: LongText = Field(
        description="The conditions the grant comes with.",
        examples=["Supervised pilot in the approved hospitals only."],
    )
    valid_from: UtcDatetime = Field(
        description="Start of validity, in UTC.", examples=["2027-01-05T09:30:01Z"]
    )
    valid_until: UtcDatetime = Field(
        description="End of validity, in UTC.", examples=["2028-01-05T09:30:01Z"]
    )


class FastTrackRevoked(BaseModel):
    """Event ``application.fast_track_revoked``: an administrator revoked a granted fast-track
    item before the end of its validity."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "application_id": _APP_ID,
                    "firm_id": "ACME",
                    "item": "sandbox_access",
                    "reason": "The sandbox conditions were breached: live patient data was used.",
                    "revoked_at": "2027-06-01T10:00:00Z",
                }
            ]
        },
    )

    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    firm_id: Identifier = Field(description="The firm.", examples=["ACME"])
    item: FastTrackItem = Field(description="The item revoked.", examples=["sandbox_access"])
    reason: LongText = Field(
        description="Why it was revoked; shown to the firm.",
        examples=["The sandbox conditions were breached: live patient data was used."],
    )
    revoked_at: UtcDatetime = Field(
        description="When it was revoked, in UTC.", examples=["2027-06-01T10:00:00Z"]
    )


class MilestoneReported(BaseModel):
    """Event ``application.milestone_reported``: the firm reports a milestone with evidence."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "report_id": "ms_7Q2K9",
                    "application_id": _APP_ID,
                    "firm_id": "ACME",
                    "sequence": 2,
                    "summary": "The lab opened and ten engineers were hired.",
                    "evidence": ["doc_7K2M9P"],
                    "reported_at": "2027-04-01T08:00:00Z",
                }
            ]
        },
    )

    report_id: Identifier = Field(description="The report.", examples=["ms_7Q2K9"])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    firm_id: Identifier = Field(description="The firm.", examples=["ACME"])
    sequence: int = Field(
        ge=2, le=100, description="The tranche whose milestone is reported.", examples=[2]
    )
    summary: LongText = Field(
        description="What was achieved.", examples=["The lab opened and ten engineers were hired."]
    )
    evidence: list[Identifier] = Field(
        min_length=1,
        max_length=20,
        description="Document references (ids in the document store) showing it.",
        examples=[["doc_7K2M9P"]],
    )
    reported_at: UtcDatetime = Field(
        description="When it was reported, in UTC.", examples=["2027-04-01T08:00:00Z"]
    )


class MilestoneVerified(BaseModel):
    """Event ``application.milestone_verified``: a reviewer decided on a reported milestone.

    Verified releases the tranche; not verified sends it back to the firm with the reason.
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "report_id": "ms_7Q2K9",
                    "application_id": _APP_ID,
                    "sequence": 2,
                    "verified": True,
                    "reviewer_id": "rev.weber@gaip.example",
                    "comment": "Site visit confirmed the lab and the hires.",
                    "decided_at": "2027-04-03T10:00:00Z",
                }
            ]
        },
    )

    report_id: Identifier = Field(description="The report decided.", examples=["ms_7Q2K9"])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    sequence: int = Field(ge=2, le=100, description="The tranche concerned.", examples=[2])
    verified: bool = Field(description="True: the tranche is released.", examples=[True, False])
    reviewer_id: Identifier = Field(
        description="The reviewer who decided.", examples=["rev.weber@gaip.example"]
    )
    comment: LongText = Field(
        description="The reviewer's reasons.",
        examples=["Site visit confirmed the lab and the hires."],
    )
    decided_at: UtcDatetime = Field(
        description="When it was decided, in UTC.", examples=["2027-04-03T10:00:00Z"]
    )


class AwardCompleted(BaseModel):
    """Event ``application.award_completed``: the last tranche is paid; the award is closed."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "award_id": _AWARD_ID,
                    "application_id": _APP_ID,
                    "firm_id": "ACME",
                    "paid": _TOTAL,
                    "completed_at": "2028-03-04T10:00:00Z",
                }
            ]
        },
    )

    award_id: Identifier = Field(description="The award closed.", examples=[_AWARD_ID])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    firm_id: Identifier = Field(description="The firm.", examples=["ACME"])
    paid: Money = Field(description="Everything paid under the award.", examples=[_TOTAL])
    completed_at: UtcDatetime = Field(
        description="When the last tranche was paid, in UTC.", examples=["2028-03-04T10:00:00Z"]
    )


class ApplicationCompensated(BaseModel):
    """Event ``application.compensated``: the saga undid what the approval had set aside.

    The envelope's actor is who caused it: the firm (withdrawal, decline), an admin
    (cancellation) or ``system:workflows`` (lapse, budget shortfall).
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "application_id": _APP_ID,
                    "firm_id": "ACME",
                    "reason_code": "budget_exhausted",
                    "reason": "The program budget cannot cover the grant.",
                    "space_released": True,
                    "award_cancelled": False,
                    "outcome": "approved_unfunded",
                    "waitlisted_for_budget": True,
                    "compensated_at": "2027-01-02T11:00:07Z",
                }
            ]
        },
    )

    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    firm_id: Identifier = Field(description="The firm.", examples=["ACME"])
    reason_code: CompensationReason = Field(
        description="Why the saga ran.", examples=["budget_exhausted", "offer_lapsed"]
    )
    reason: LongText = Field(
        description="Why the saga ran, in words.",
        examples=["The program budget cannot cover the grant."],
    )
    space_released: bool = Field(
        description="Held or allocated zone space was released.", examples=[True]
    )
    award_cancelled: bool = Field(
        description="The award was cancelled, returning what was reserved and not paid.",
        examples=[False, True],
    )
    outcome: ShortText = Field(
        description="Where the application ends: `approved_unfunded`, `offer_declined`, "
        "`offer_lapsed`, `withdrawn` or `cancelled`.",
        examples=["approved_unfunded"],
    )
    waitlisted_for_budget: bool = Field(
        default=False,
        description="True when the application waits for budget (a shortfall).",
        examples=[True, False],
    )
    compensated_at: UtcDatetime = Field(
        description="When, in UTC.", examples=["2027-01-02T11:00:07Z"]
    )
