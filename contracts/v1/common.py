"""Vocabulary shared by the v1 payloads: enums, constrained scalars and small value objects."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.config import JsonDict

from contracts.money import AS_JSON_STRING, CANONICAL_ZERO, REFUSE_FLOAT, decimal_digits

# --- configuration -------------------------------------------------------------------------------

#: Every payload and nested value refuses unknown fields and is immutable once built.
PAYLOAD_CONFIG = ConfigDict(extra="forbid", frozen=True)

# --- constrained scalars -------------------------------------------------------------------------

#: An opaque identifier: no whitespace, at most 100 characters (the envelope subject's limit).
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^\S+$")]

#: A one-line human-readable text.
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]

#: A paragraph of human-readable text.
LongText = Annotated[str, StringConstraints(min_length=1, max_length=4000, strip_whitespace=True)]

#: A dotted path to a field of the application content, e.g. ``proposal.local_jobs``.
FieldPath = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=200,
        pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*|\[[0-9]+\])*$",
    ),
]

#: A lower-case hexadecimal SHA-256 digest.
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

#: A percentage between 0 and 100 with at most two decimals, exact, written as a JSON string.
Percentage = Annotated[
    Decimal,
    REFUSE_FLOAT,
    Field(ge=0, le=100, allow_inf_nan=False),
    decimal_digits(5, 2),
    CANONICAL_ZERO,
    AS_JSON_STRING,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(100(\.0{1,2})?|[1-9]?[0-9](\.[0-9]{1,2})?)$",
            "description": "A percentage from 0 to 100 written as a string, at most 2 decimals.",
        }
    ),
]

# --- enums ---------------------------------------------------------------------------------------


class Sector(StrEnum):
    """The sector a proposal serves. The first four are the program's priority sectors."""

    HEALTH = "health"
    AGRICULTURE = "agriculture"
    PUBLIC_SAFETY = "public_safety"
    SMART_GOVERNANCE = "smart_governance"
    EDUCATION = "education"
    FINTECH = "fintech"
    ROBOTICS = "robotics"
    OTHER = "other"


class UnitType(StrEnum):
    """A kind of technology-zone space, each with its own capacity per zone."""

    OFFICE_SEAT = "office_seat"
    LAB_SPACE = "lab_space"
    GPU_RACK_UNIT = "gpu_rack_unit"


class FastTrackItem(StrEnum):
    """A regulatory fast-track incentive."""

    SANDBOX_ACCESS = "sandbox_access"
    EXPEDITED_PERMIT = "expedited_permit"
    EXPEDITED_WORK_VISA = "expedited_work_visa"
    DATA_ACCESS_AGREEMENT = "data_access_agreement"
    EXPEDITED_CUSTOMS = "expedited_customs"


class GrantPurpose(StrEnum):
    """What a grant pays for."""

    RESEARCH_AND_DEVELOPMENT = "research_and_development"
    TRAINING = "training"
    CAPACITY_BUILDING = "capacity_building"


class DocumentKind(StrEnum):
    """The kind of a supporting document."""

    BUSINESS_REGISTRATION = "business_registration"
    FINANCIAL_STATEMENTS = "financial_statements"
    INVESTMENT_PLAN = "investment_plan"
    DATA_PROTECTION_POLICY = "data_protection_policy"
    RESPONSIBLE_AI_POLICY = "responsible_ai_policy"
    OWNERSHIP_STRUCTURE = "ownership_structure"
    OTHER = "other"


class Stage(StrEnum):
    """A decision point of the approval workflow: eligibility, then the review stages."""

    ELIGIBILITY = "eligibility"
    TECHNICAL = "technical"
    SECURITY = "security"
    FINANCE = "finance"
    COMMITTEE = "committee"


class ReviewStage(StrEnum):
    """A stage decided by human reviewers (``security`` covers data protection)."""

    TECHNICAL = "technical"
    SECURITY = "security"
    FINANCE = "finance"
    COMMITTEE = "committee"
    #: Verifying a milestone the firm reported, after the award opened (one task per report).
    MILESTONE = "milestone"


class Decision(StrEnum):
    """A reviewer's decision on a stage."""

    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_INFORMATION = "request_information"


class EligibilityOutcome(StrEnum):
    """The result of evaluating a rule set against an application."""

    ELIGIBLE = "eligible"
    INELIGIBLE = "ineligible"
    NEEDS_INFORMATION = "needs_information"


class WithdrawalReason(StrEnum):
    """Why an application was withdrawn."""

    FIRM_REQUEST = "firm_request"
    INFORMATION_TIMEOUT = "information_timeout"


class CompensationReason(StrEnum):
    """Why held zone space is released or an award is cancelled (the saga's compensations)."""

    APPLICATION_WITHDRAWN = "application_withdrawn"
    APPLICATION_REJECTED = "application_rejected"
    BUDGET_EXHAUSTED = "budget_exhausted"
    ADMINISTRATIVE = "administrative"
    OFFER_DECLINED = "offer_declined"
    OFFER_LAPSED = "offer_lapsed"
    #: The zones or disbursement service could not apply one of the workflow's commands.
    COMMAND_REFUSED = "command_refused"


class ZoneRefusalReason(StrEnum):
    """Why the zones service refused an allocation request outright."""

    UNKNOWN_ZONE = "unknown_zone"
    UNIT_TYPE_NOT_OFFERED = "unit_type_not_offered"
    NO_CAPACITY = "no_capacity"
    INVALID_REQUEST = "invalid_request"


class TrancheFailureReason(StrEnum):
    """Why a tranche payment failed."""

    RAIL_REJECTED = "rail_rejected"
    RAIL_UNAVAILABLE = "rail_unavailable"
    BENEFICIARY_INVALID = "beneficiary_invalid"
    COMPLIANCE_HOLD = "compliance_hold"


# --- shared value objects ------------------------------------------------------------------------

ZONE_SPACE_REQUEST_EXAMPLE: JsonDict = {
    "unit_type": "gpu_rack_unit",
    "quantity": 4,
    "preferred_zones": ["zone-north-tech-park", "zone-harbour-ai-hub"],
}
ZONE_UNITS_EXAMPLE: JsonDict = {
    "zone_id": "zone-north-tech-park",
    "unit_type": "gpu_rack_unit",
    "quantity": 4,
}
COMMITTEE_QUORUM_EXAMPLE: JsonDict = {"required": 2, "members": 3}


class ZoneSpaceRequest(BaseModel):
    """A request for a quantity of one unit type, in order of zone preference."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG, json_schema_extra={"examples": [ZONE_SPACE_REQUEST_EXAMPLE]}
    )

    unit_type: UnitType = Field(
        description="The kind of space requested.", examples=["gpu_rack_unit", "office_seat"]
    )
    quantity: int = Field(
        ge=1, le=10_000, description="How many units of that type.", examples=[4, 25]
    )
    preferred_zones: list[Identifier] = Field(
        default_factory=list,
        max_length=10,
        description="Zone ids in order of preference; empty means any zone.",
        examples=[["zone-north-tech-park", "zone-harbour-ai-hub"], []],
    )


class ZoneUnits(BaseModel):
    """A quantity of one unit type in one specific zone (held, allocated or released)."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG, json_schema_extra={"examples": [ZONE_UNITS_EXAMPLE]}
    )

    zone_id: Identifier = Field(
        description="The technology zone.", examples=["zone-north-tech-park"]
    )
    unit_type: UnitType = Field(description="The kind of space.", examples=["gpu_rack_unit"])
    quantity: int = Field(ge=1, le=10_000, description="How many units.", examples=[4])


class FastTrackDeclined(BaseModel):
    """A fast-track item the committee did not approve, and why."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "item": "expedited_work_visa",
                    "reason": "The staff to be hired are not named in the proposal.",
                }
            ]
        },
    )

    item: FastTrackItem = Field(description="The item.", examples=["expedited_work_visa"])
    reason: LongText = Field(
        description="Why it was not approved, in the committee's words.",
        examples=["The staff to be hired are not named in the proposal."],
    )


class CommitteeQuorum(BaseModel):
    """The committee rule: ``required`` approvals out of ``members`` reviewers (N of M)."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG, json_schema_extra={"examples": [COMMITTEE_QUORUM_EXAMPLE]}
    )

    required: int = Field(ge=1, le=50, description="Approvals needed (N).", examples=[2])
    members: int = Field(ge=1, le=50, description="Committee members asked (M).", examples=[3])

    @model_validator(mode="after")
    def _n_of_m(self) -> Self:
        if self.required > self.members:
            raise ValueError("required approvals cannot exceed the number of members")
        return self
