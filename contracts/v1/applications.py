"""Application events: a firm submits, amends and withdraws an application.

Each submitted or amended event carries the *whole* application content, so a consumer (the
eligibility service, the audit ledger) never has to call back to the applications service to
know what was decided on.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Final, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from contracts.envelope import UtcDatetime, utcnow
from contracts.iso import CountryCode, Lei
from contracts.money import Money
from contracts.v1.common import (
    PAYLOAD_CONFIG,
    ZONE_SPACE_REQUEST_EXAMPLE,
    DocumentKind,
    FastTrackItem,
    FieldPath,
    GrantPurpose,
    Identifier,
    LongText,
    Percentage,
    Sector,
    Sha256Hex,
    ShortText,
    WithdrawalReason,
    ZoneSpaceRequest,
)

#: How far ahead of this machine's clock a signature time may be and still count as "now": the
#: firm's clock and ours disagree a little. Anything later is a date in the future, refused.
ATTESTATION_CLOCK_SKEW: Final = timedelta(minutes=5)


def _not_in_the_future(value: datetime) -> datetime:
    # Checked against the clock at validation time. The check is monotone: a signature time
    # that passed once passes on every later read, so stored events and replays stay valid.
    if value > utcnow() + ATTESTATION_CLOCK_SKEW:
        raise PydanticCustomError(
            "date_in_future",
            "the attestation cannot be signed in the future (it is dated {attested_at})",
            {"attested_at": value.isoformat().replace("+00:00", "Z")},
        )
    return value


#: When a statement was signed: a :data:`~contracts.envelope.UtcDatetime` not in the future.
SignedAt = Annotated[UtcDatetime, AfterValidator(_not_in_the_future)]

# --- examples (reused by field examples, model examples and the tests) ---------------------------

PARENT_COMPANY_EXAMPLE: JsonDict = {
    "legal_name": "Acme Holdings SE",
    "country": "DE",
    "ownership_pct": "60.00",
}
FIRM_EXAMPLE: JsonDict = {
    "legal_name": "Acme Vision AI GmbH",
    "country_of_incorporation": "DE",
    "registration_number": "HRB 123456",
    "foreign_ownership_pct": "100",
    "parent_companies": [PARENT_COMPANY_EXAMPLE],
}
GRANT_REQUEST_EXAMPLE: JsonDict = {
    "amount": {"amount": "250000.00", "currency": "EUR"},
    "purpose": "research_and_development",
    "description": "Adapting diagnostic imaging models to local clinical data.",
}
FAST_TRACK_REQUEST_EXAMPLE: JsonDict = {
    "item": "sandbox_access",
    "justification": "Pilot the triage assistant in two public hospitals under supervision.",
}
INCENTIVES_EXAMPLE: JsonDict = {
    "grant": GRANT_REQUEST_EXAMPLE,
    "zone_space": [ZONE_SPACE_REQUEST_EXAMPLE, {"unit_type": "office_seat", "quantity": 25}],
    "fast_track": [FAST_TRACK_REQUEST_EXAMPLE],
}
PROPOSAL_EXAMPLE: JsonDict = {
    "title": "Radiology triage assistant for regional hospitals",
    "sector": "health",
    "ai_use_case": "Computer-vision triage of chest X-rays to shorten time to diagnosis.",
    "investment_commitment": {"amount": "5000000.00", "currency": "EUR"},
    "local_jobs": 40,
}
ATTESTATION_EXAMPLE: JsonDict = {
    "accepted": True,
    "signatory": "Dr. Jana Weber, Chief Technology Officer",
    "attested_at": "2026-11-20T09:00:00Z",
}
TRAINING_EXAMPLE: JsonDict = {
    "engineers_per_year": 30,
    "description": "Twelve-week applied machine-learning residency for local engineers.",
}
UNIVERSITY_PARTNERSHIP_EXAMPLE: JsonDict = {
    "university": "National University of Technology",
    "scope": "Joint research chair on medical imaging, two funded PhD positions.",
}
EXCHANGE_PROGRAM_EXAMPLE: JsonDict = {
    "partner": "Acme Research Lab Munich",
    "participants_per_year": 6,
}
COMMITMENTS_EXAMPLE: JsonDict = {
    "training": TRAINING_EXAMPLE,
    "university_partnerships": [UNIVERSITY_PARTNERSHIP_EXAMPLE],
    "exchange_programs": [EXCHANGE_PROGRAM_EXAMPLE],
    "data_protection_attestation": ATTESTATION_EXAMPLE,
    "responsible_ai_attestation": ATTESTATION_EXAMPLE,
}
DOCUMENT_EXAMPLE: JsonDict = {
    "document_id": "doc_7K2M9P",
    "kind": "business_registration",
    "title": "Commercial register extract",
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
}
CONTENT_EXAMPLE: JsonDict = {
    "firm": FIRM_EXAMPLE,
    "incentives": INCENTIVES_EXAMPLE,
    "proposal": PROPOSAL_EXAMPLE,
    "commitments": COMMITMENTS_EXAMPLE,
    "documents": [DOCUMENT_EXAMPLE],
}

# --- application content -------------------------------------------------------------------------


class ParentCompany(BaseModel):
    """A company that owns part of the applicant; used for conflict-of-interest checks."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG, json_schema_extra={"examples": [PARENT_COMPANY_EXAMPLE]}
    )

    legal_name: ShortText = Field(
        description="Registered legal name of the parent company.", examples=["Acme Holdings SE"]
    )
    country: CountryCode = Field(
        description="ISO 3166-1 alpha-2 country of incorporation of the parent.",
        examples=["DE", "AE", "JP"],
    )
    ownership_pct: Percentage = Field(
        description="Share of the applicant the parent owns, in percent.",
        examples=["60.00", "100"],
    )
    registration_number: ShortText | None = Field(
        default=None,
        description=(
            "The parent's number in the company register of its `country`. Optional; when given, "
            "a reviewer who declared this register entry has a conflict of interest."
        ),
        examples=["HRB 654321"],
    )
    lei: Lei | None = Field(
        default=None,
        description=(
            "The parent's ISO 17442 Legal Entity Identifier (20 characters, check digits "
            "verified), if it has one. Used for conflict-of-interest checks."
        ),
        examples=["529900ACMEHOLDINGS14"],
    )


class Firm(BaseModel):
    """The applicant firm."""

    model_config = ConfigDict(**PAYLOAD_CONFIG, json_schema_extra={"examples": [FIRM_EXAMPLE]})

    legal_name: ShortText = Field(
        description="Registered legal name of the firm.", examples=["Acme Vision AI GmbH"]
    )
    country_of_incorporation: CountryCode = Field(
        description="ISO 3166-1 alpha-2 country where the firm is incorporated.",
        examples=["DE", "AE", "KR", "JP"],
    )
    registration_number: ShortText = Field(
        description=(
            "The firm's number in the company register of its country of incorporation. A "
            "reviewer who declared this register entry has a conflict of interest."
        ),
        examples=["HRB 123456", "CN-1234567"],
    )
    foreign_ownership_pct: Percentage = Field(
        description="Share of the firm held by owners outside the program's country, in percent.",
        examples=["100", "49.50"],
    )
    parent_companies: list[ParentCompany] = Field(
        default_factory=list,
        max_length=20,
        description="Companies owning part of the firm, directly. Empty for an independent firm.",
        examples=[[PARENT_COMPANY_EXAMPLE], []],
    )
    lei: Lei | None = Field(
        default=None,
        description=(
            "The firm's ISO 17442 Legal Entity Identifier (20 characters, check digits "
            "verified), if it has one. Used for conflict-of-interest checks."
        ),
        examples=["391200ACMEVISIONAI97"],
    )


class GrantRequest(BaseModel):
    """A requested grant."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG, json_schema_extra={"examples": [GRANT_REQUEST_EXAMPLE]}
    )

    amount: Money = Field(
        description="The grant amount requested.",
        examples=[{"amount": "250000.00", "currency": "EUR"}],
    )
    purpose: GrantPurpose = Field(
        description="What the grant would pay for.",
        examples=["research_and_development", "training"],
    )
    description: LongText = Field(
        description="How the grant would be spent.",
        examples=["Adapting diagnostic imaging models to local clinical data."],
    )


class FastTrackRequest(BaseModel):
    """A requested regulatory fast-track item and why it is needed."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG, json_schema_extra={"examples": [FAST_TRACK_REQUEST_EXAMPLE]}
    )

    item: FastTrackItem = Field(
        description="The fast-track item.", examples=["sandbox_access", "expedited_permit"]
    )
    justification: LongText = Field(
        description="Why the proposal needs it.",
        examples=["Pilot the triage assistant in two public hospitals under supervision."],
    )


class IncentivesRequested(BaseModel):
    """The incentives the firm asks for: any combination of grant, zone space and fast-track."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG, json_schema_extra={"examples": [INCENTIVES_EXAMPLE]}
    )

    grant: GrantRequest | None = Field(
        default=None,
        description="The grant requested, or null when no grant is requested.",
        examples=[GRANT_REQUEST_EXAMPLE, None],
    )
    zone_space: list[ZoneSpaceRequest] = Field(
        default_factory=list,
        max_length=10,
        description="Technology-zone space requested, one entry per unit type.",
        examples=[[ZONE_SPACE_REQUEST_EXAMPLE], []],
    )
    fast_track: list[FastTrackRequest] = Field(
        default_factory=list,
        max_length=10,
        description="Regulatory fast-track items requested.",
        examples=[[FAST_TRACK_REQUEST_EXAMPLE], []],
    )


class Proposal(BaseModel):
    """What the firm proposes to do in the country."""

    model_config = ConfigDict(**PAYLOAD_CONFIG, json_schema_extra={"examples": [PROPOSAL_EXAMPLE]})

    title: ShortText = Field(
        description="A one-line title for the proposal.",
        examples=["Radiology triage assistant for regional hospitals"],
    )
    sector: Sector = Field(
        description="The sector the proposal serves.", examples=["health", "agriculture"]
    )
    ai_use_case: LongText = Field(
        description="The AI use case: what the system does, for whom and with which data.",
        examples=["Computer-vision triage of chest X-rays to shorten time to diagnosis."],
    )
    investment_commitment: Money = Field(
        description="The investment the firm commits to make in the country.",
        examples=[{"amount": "5000000.00", "currency": "EUR"}],
    )
    local_jobs: int = Field(
        ge=0,
        le=1_000_000,
        description="Jobs the firm commits to create locally.",
        examples=[40, 0],
    )


class Attestation(BaseModel):
    """A signed statement by the firm."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG, json_schema_extra={"examples": [ATTESTATION_EXAMPLE]}
    )

    accepted: bool = Field(description="Whether the firm accepts the statement.", examples=[True])
    signatory: ShortText = Field(
        description="Name and role of the person signing for the firm.",
        examples=["Dr. Jana Weber, Chief Technology Officer"],
    )
    attested_at: SignedAt = Field(
        description=(
            "When the statement was signed, in UTC; not in the future (a few minutes of clock "
            "difference are tolerated)."
        ),
        examples=["2026-11-20T09:00:00Z"],
    )


class TrainingCommitment(BaseModel):
    """A commitment to train local engineers."""

    model_config = ConfigDict(**PAYLOAD_CONFIG, json_schema_extra={"examples": [TRAINING_EXAMPLE]})

    engineers_per_year: int = Field(
        ge=0, le=100_000, description="Local engineers trained per year.", examples=[30]
    )
    description: LongText = Field(
        description="The training programme.",
        examples=["Twelve-week applied machine-learning residency for local engineers."],
    )


class UniversityPartnership(BaseModel):
    """A research partnership with a local university."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG, json_schema_extra={"examples": [UNIVERSITY_PARTNERSHIP_EXAMPLE]}
    )

    university: ShortText = Field(
        description="The partner university.", examples=["National University of Technology"]
    )
    scope: LongText = Field(
        description="What the partnership covers.",
        examples=["Joint research chair on medical imaging, two funded PhD positions."],
    )


class ExchangeProgram(BaseModel):
    """A staff or researcher exchange program."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG, json_schema_extra={"examples": [EXCHANGE_PROGRAM_EXAMPLE]}
    )

    partner: ShortText = Field(
        description="The organisation on the other side of the exchange.",
        examples=["Acme Research Lab Munich"],
    )
    participants_per_year: int = Field(
        ge=1, le=10_000, description="People exchanged per year.", examples=[6]
    )


class Commitments(BaseModel):
    """Capacity-building commitments and the required attestations."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG, json_schema_extra={"examples": [COMMITMENTS_EXAMPLE]}
    )

    training: TrainingCommitment | None = Field(
        default=None,
        description="Training of local engineers, or null when none is offered.",
        examples=[TRAINING_EXAMPLE, None],
    )
    university_partnerships: list[UniversityPartnership] = Field(
        default_factory=list,
        max_length=20,
        description="Research partnerships with local universities.",
        examples=[[UNIVERSITY_PARTNERSHIP_EXAMPLE], []],
    )
    exchange_programs: list[ExchangeProgram] = Field(
        default_factory=list,
        max_length=20,
        description="Exchange programs.",
        examples=[[EXCHANGE_PROGRAM_EXAMPLE], []],
    )
    data_protection_attestation: Attestation | None = Field(
        default=None,
        description=(
            "Attestation that personal data is processed lawfully, minimally and securely; "
            "null when not given (eligibility then asks for it)."
        ),
        examples=[ATTESTATION_EXAMPLE, None],
    )
    responsible_ai_attestation: Attestation | None = Field(
        default=None,
        description=(
            "Attestation that the AI system is fair, open and private, with human oversight; "
            "null when not given (eligibility then asks for it)."
        ),
        examples=[ATTESTATION_EXAMPLE, None],
    )


class DocumentReference(BaseModel):
    """A reference to a supporting document held by the document store, not the document."""

    model_config = ConfigDict(**PAYLOAD_CONFIG, json_schema_extra={"examples": [DOCUMENT_EXAMPLE]})

    document_id: Identifier = Field(
        description="Id of the document in the document store.", examples=["doc_7K2M9P"]
    )
    kind: DocumentKind = Field(
        description="What the document is.", examples=["business_registration"]
    )
    title: ShortText = Field(
        description="Human-readable title.", examples=["Commercial register extract"]
    )
    sha256: Sha256Hex = Field(
        description="SHA-256 of the document bytes, so auditors can prove which version was used.",
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
    )


class ApplicationContent(BaseModel):
    """Everything the program judges: a full snapshot of an application at one revision."""

    model_config = ConfigDict(**PAYLOAD_CONFIG, json_schema_extra={"examples": [CONTENT_EXAMPLE]})

    firm: Firm = Field(description="The applicant firm.", examples=[FIRM_EXAMPLE])
    incentives: IncentivesRequested = Field(
        description="The incentives requested.", examples=[INCENTIVES_EXAMPLE]
    )
    proposal: Proposal = Field(description="The proposal.", examples=[PROPOSAL_EXAMPLE])
    commitments: Commitments = Field(
        description="Capacity-building commitments and attestations.",
        examples=[COMMITMENTS_EXAMPLE],
    )
    documents: list[DocumentReference] = Field(
        default_factory=list,
        max_length=50,
        description="Supporting documents.",
        examples=[[DOCUMENT_EXAMPLE], []],
    )


# --- events --------------------------------------------------------------------------------------


class ApplicationSubmitted(BaseModel):
    """Event ``application.submitted``: a firm submitted an application (revision 1)."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "application_id": "app_01HZX3Q8W6",
                    "firm_id": "ACME",
                    "revision": 1,
                    "content": CONTENT_EXAMPLE,
                    "submitted_at": "2026-11-26T10:35:02Z",
                }
            ]
        },
    )

    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.",
        examples=["app_01HZX3Q8W6"],
    )
    firm_id: Identifier = Field(
        description="The firm's id in the program (the `firm:<id>` role).", examples=["ACME"]
    )
    revision: int = Field(
        default=1,
        ge=1,
        description="Revision of the content; a submission is revision 1, each amendment adds 1.",
        examples=[1],
    )
    content: ApplicationContent = Field(
        description="The full application as submitted.", examples=[CONTENT_EXAMPLE]
    )
    submitted_at: UtcDatetime = Field(
        description=(
            "When the firm submitted, in UTC. The eligibility rule set in force at this time "
            "decides, including for later amendments."
        ),
        examples=["2026-11-26T10:35:02Z"],
    )


class ApplicationAmended(BaseModel):
    """Event ``application.amended``: the firm changed a submitted application.

    Amendments happen while information has been requested; eligibility re-runs on them.
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "application_id": "app_01HZX3Q8W6",
                    "firm_id": "ACME",
                    "revision": 2,
                    "content": CONTENT_EXAMPLE,
                    "changed_fields": ["commitments.training", "proposal.local_jobs"],
                    "reason": "Added the training programme the technical reviewer asked for.",
                    "in_response_to": "req_5T2W8N",
                    "submitted_at": "2026-11-26T10:35:02Z",
                    "amended_at": "2026-12-03T14:00:00Z",
                }
            ]
        },
    )

    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.",
        examples=["app_01HZX3Q8W6"],
    )
    firm_id: Identifier = Field(description="The firm's id in the program.", examples=["ACME"])
    revision: int = Field(
        ge=2, description="The new revision number of the content.", examples=[2, 3]
    )
    content: ApplicationContent = Field(
        description="The full application after the amendment (a snapshot, not a diff).",
        examples=[CONTENT_EXAMPLE],
    )
    changed_fields: list[FieldPath] = Field(
        min_length=1,
        max_length=100,
        description="Dotted paths of the content fields that changed.",
        examples=[["commitments.training", "proposal.local_jobs"]],
    )
    reason: LongText = Field(
        description="The firm's explanation of the amendment.",
        examples=["Added the training programme the technical reviewer asked for."],
    )
    in_response_to: Identifier | None = Field(
        default=None,
        description="The information request (`request_id`) this amendment answers, if any.",
        examples=["req_5T2W8N", None],
    )
    submitted_at: UtcDatetime = Field(
        description="When the application was first submitted, in UTC (fixes the rule set).",
        examples=["2026-11-26T10:35:02Z"],
    )
    amended_at: UtcDatetime = Field(
        description="When the amendment was made, in UTC.", examples=["2026-12-03T14:00:00Z"]
    )

    @model_validator(mode="after")
    def _amended_after_submission(self) -> Self:
        if self.amended_at < self.submitted_at:
            raise ValueError("amended_at cannot be earlier than submitted_at")
        return self


class ApplicationCancelled(BaseModel):
    """Event ``application.cancelled``: an administrator cancelled an approved application.

    The workflow releases held zone space and cancels the award (what is reserved and not paid
    goes back), then records ``application.compensated``; the envelope actor names the admin.
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "application_id": "app_01HZX3Q8W6",
                    "firm_id": "ACME",
                    "reason": "The firm's licence was revoked by the regulator.",
                    "cancelled_at": "2027-01-20T10:00:00Z",
                }
            ]
        },
    )

    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.",
        examples=["app_01HZX3Q8W6"],
    )
    firm_id: Identifier = Field(description="The firm's id in the program.", examples=["ACME"])
    reason: LongText = Field(
        description="Why the administrator cancelled it, shown to the firm.",
        examples=["The firm's licence was revoked by the regulator."],
    )
    cancelled_at: UtcDatetime = Field(
        description="When it was cancelled, in UTC.", examples=["2027-01-20T10:00:00Z"]
    )


class ApplicationWithdrawn(BaseModel):
    """Event ``application.withdrawn``: the application left the program before a decision.

    Either the firm withdrew it, or the workflow withdrew it because requested information did
    not arrive in time (``reason_code`` tells which; the envelope actor names who).
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "application_id": "app_01HZX3Q8W6",
                    "firm_id": "ACME",
                    "reason_code": "firm_request",
                    "reason": "The project was moved to another country.",
                    "withdrawn_at": "2026-12-10T08:15:00Z",
                }
            ]
        },
    )

    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.",
        examples=["app_01HZX3Q8W6"],
    )
    firm_id: Identifier = Field(description="The firm's id in the program.", examples=["ACME"])
    reason_code: WithdrawalReason = Field(
        description="Why it was withdrawn: by the firm, or after an information request lapsed.",
        examples=["firm_request", "information_timeout"],
    )
    reason: LongText = Field(
        description="Human-readable reason.",
        examples=[
            "The project was moved to another country.",
            "No amendment within 30 days of the information request.",
        ],
    )
    withdrawn_at: UtcDatetime = Field(
        description="When it was withdrawn, in UTC.", examples=["2026-12-10T08:15:00Z"]
    )
