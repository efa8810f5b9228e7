"""Request and response bodies of the applications API.

The application content is the contract's :class:`~contracts.v1.applications.ApplicationContent`
itself: a submission is validated by exactly the model the events carry, so what the API accepts
is what eligibility and the auditors receive. Drafts use a *partial* variant generated from it
(:func:`draft_model`): every field optional, at any depth, with the same descriptions, examples
and limits (text lengths, non-negative money, percentages, list sizes, unknown fields refused).
"""

from __future__ import annotations

import types
import uuid
from datetime import date, datetime
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.config import JsonDict

from contracts.envelope import ActorKind
from contracts.money import Money
from contracts.status import Status
from contracts.v1.applications import CONTENT_EXAMPLE, ApplicationContent
from contracts.v1.common import EligibilityOutcome, LongText
from contracts.v1.eligibility import RuleResult
from services.applications.awards import AwardView
from services.applications.domain import Action, InformationRequest

# --- drafts --------------------------------------------------------------------------------------

#: Value objects that stay whole in a draft: half an amount of money means nothing.
_WHOLE: tuple[type[BaseModel], ...] = (Money,)


def _draft_annotation(tp: Any) -> Any:
    """``tp`` with every content model in it replaced by its draft variant."""
    if isinstance(tp, type) and issubclass(tp, BaseModel) and not issubclass(tp, _WHOLE):
        return draft_model(tp)
    origin = get_origin(tp)
    if origin is list:
        (item,) = get_args(tp)
        return list[_draft_annotation(item)]  # type: ignore[misc]
    if origin is Union or origin is types.UnionType:
        return Union[tuple(_draft_annotation(arg) for arg in get_args(tp))]  # noqa: UP007
    if origin is Annotated:
        base, *metadata = get_args(tp)
        return Annotated[(_draft_annotation(base), *metadata)]
    return tp


@cache
def draft_model(model: type[BaseModel]) -> type[BaseModel]:
    """The partial variant of a content model: every field optional (``null`` = not given yet).

    Each field keeps its constraints (they are re-attached to the inner type, so ``null`` is the
    only new value allowed), its description and its examples.
    """
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        inner = _draft_annotation(info.annotation)
        if info.metadata:
            inner = Annotated[(inner, *info.metadata)]
        fields[name] = (
            inner | None,
            Field(default=None, description=info.description, examples=info.examples),
        )
    config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra=model.model_config.get("json_schema_extra"),
    )
    draft: type[BaseModel] = create_model(
        f"{model.__name__}Draft",
        __config__=config,
        __doc__=f"Draft of: {(model.__doc__ or model.__name__).strip()} Every field is optional.",
        __module__=__name__,
        **fields,
    )
    return draft


PARTIAL_CONTENT_EXAMPLE: JsonDict = {
    "firm": {
        "legal_name": "Acme Vision AI GmbH",
        "country_of_incorporation": "DE",
    },
    "proposal": {"title": "Radiology triage assistant for regional hospitals", "sector": "health"},
}

if TYPE_CHECKING:

    class ApplicationContentDraft(BaseModel):
        """Static stand-in for the generated draft model (type checkers cannot run the factory)."""

else:
    #: The draft body: :class:`ApplicationContent` with every field optional, at any depth.
    ApplicationContentDraft = draft_model(ApplicationContent)

# --- requests ------------------------------------------------------------------------------------

WITHDRAW_EXAMPLE: JsonDict = {"reason": "The project was moved to another country."}


CANCEL_EXAMPLE: JsonDict = {"reason": "The firm's licence was revoked by the regulator."}


class CancelRequest(BaseModel):
    """Why an administrator cancels an approved application."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [CANCEL_EXAMPLE]}
    )

    reason: LongText = Field(
        description="The reason, shown to the firm on its timeline (at most 4,000 characters).",
        examples=["The firm's licence was revoked by the regulator."],
    )


class WithdrawRequest(BaseModel):
    """Why the firm withdraws its application."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [WITHDRAW_EXAMPLE]}
    )

    reason: LongText = Field(
        description="The firm's reason, shown on the timeline (at most 4,000 characters).",
        examples=["The project was moved to another country."],
    )


AMEND_EXAMPLE: JsonDict = {
    "content": CONTENT_EXAMPLE,
    "reason": "Added the data-protection attestation the eligibility check asked for.",
}


class AmendRequest(BaseModel):
    """A new revision of the application, answering the open information request."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [AMEND_EXAMPLE]}
    )

    content: ApplicationContent = Field(
        description=(
            "The complete application after the amendment (a full snapshot, not a diff); the "
            "changed fields are worked out by the service."
        ),
        examples=[CONTENT_EXAMPLE],
    )
    reason: LongText = Field(
        description="What changed and why, for the reviewers (at most 4,000 characters).",
        examples=["Added the data-protection attestation the eligibility check asked for."],
    )


# --- responses -----------------------------------------------------------------------------------

_APP_ID = "app_3f2a9c0d41e84b6f9d7e5a1b2c3d4e5f"

ELIGIBILITY_EXAMPLE: JsonDict = {
    "outcome": "eligible",
    "application_revision": 1,
    "rule_set_id": "gaip-eligibility",
    "rule_set_version": "2026.1",
    "rule_set_sha256": "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b",
    "rule_set_effective_from": "2026-01-01",
    "rule_results": [
        {
            "rule_id": "priority_sector",
            "passed": True,
            "explanation": "The proposal serves a priority sector (health).",
        }
    ],
    "missing_fields": [],
    "assessed_at": "2026-11-26T10:35:04Z",
}
INFORMATION_REQUEST_EXAMPLE: JsonDict = {
    "source": "technical",
    "request_id": "req_5T2W8N",
    "fields": ["commitments.training"],
    "questions": ["How many local engineers will the residency train per year?"],
    "requested_at": "2026-12-02T15:20:00Z",
    "respond_by": "2027-01-01T15:20:00Z",
    "event_id": "0b6f3c3e-6d0e-4a5c-9a55-3c1d7c3f9b21",
}
TIMELINE_EXAMPLE: list[JsonDict] = [
    {
        "at": "2026-11-26T10:35:02Z",
        "event": "application.submitted",
        "status": "submitted",
        "actor": {"kind": "firm", "id": "alice@acme.example"},
        "summary": "Application submitted (revision 1).",
        "reasons": [],
    },
    {
        "at": "2026-11-26T10:35:04Z",
        "event": "eligibility.assessed",
        "status": "eligible",
        "actor": {"kind": "system", "id": "system:eligibility"},
        "summary": "Eligible under rule set gaip-eligibility 2026.1 (revision 1).",
        "reasons": [],
    },
]
SUMMARY_EXAMPLE: JsonDict = {
    "id": _APP_ID,
    "firm_id": "ACME",
    "status": "eligible",
    "revision": 1,
    "title": "Radiology triage assistant for regional hospitals",
    "legal_name": "Acme Vision AI GmbH",
    "rule_set_version": "2026.1",
    "created_at": "2026-11-26T10:30:00Z",
    "updated_at": "2026-11-26T10:35:04Z",
    "submitted_at": "2026-11-26T10:35:02Z",
}


class ActorView(BaseModel):
    """Who caused a timeline entry."""

    model_config = ConfigDict(frozen=True)

    kind: ActorKind = Field(
        description="The kind of actor: the firm, program staff, or an automated system step.",
        examples=["firm", "system", "reviewer"],
    )
    id: str = Field(
        description=(
            "The actor: a firm user id, a system actor such as `system:eligibility`, or, for "
            "firms looking at program staff, just the role (e.g. `program reviewer`)."
        ),
        examples=["alice@acme.example", "system:eligibility", "program reviewer"],
    )


class TimelineEntryView(BaseModel):
    """One entry of an application's timeline: a status change or a notable fact."""

    model_config = ConfigDict(frozen=True)

    at: datetime = Field(description="When it happened, in UTC.", examples=["2026-11-26T10:35:04Z"])
    event: str = Field(
        description=(
            "What happened: the event type (e.g. `eligibility.assessed`), or "
            "`application.draft_created` for the creation of the draft."
        ),
        examples=["application.submitted", "eligibility.assessed", "review.task_assigned"],
    )
    status: Status | None = Field(
        description="The status the application moved to; null when the status did not change.",
        examples=["eligible", None],
    )
    actor: ActorView = Field(
        description="Who did it.", examples=[{"kind": "system", "id": "system:eligibility"}]
    )
    summary: str = Field(
        description="What happened, in one sentence.",
        examples=["Eligible under rule set gaip-eligibility 2026.1 (revision 1)."],
    )
    reasons: list[str] = Field(
        description="Why: failed rules, a reviewer's reasons, the firm's own explanation.",
        examples=[["The investment commitment is below the EUR 1,000,000 minimum."], []],
    )


class EligibilityView(BaseModel):
    """The eligibility decision on the latest revision, and the rule set that made it."""

    model_config = ConfigDict(frozen=True)

    outcome: EligibilityOutcome = Field(
        description="Eligible, ineligible, or needs more information.",
        examples=["eligible", "ineligible", "needs_information"],
    )
    application_revision: int = Field(
        description="The revision of the content that was assessed.", examples=[1]
    )
    rule_set_id: str = Field(description="The rule set applied.", examples=["gaip-eligibility"])
    rule_set_version: str = Field(
        description="Version of the rule set applied: the one in force at submission.",
        examples=["2026.1"],
    )
    rule_set_sha256: str = Field(
        description="SHA-256 of the rule-set file, proving exactly which rules were applied.",
        examples=["3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b"],
    )
    rule_set_effective_from: date = Field(
        description="The date from which the rule set applies.", examples=["2026-01-01"]
    )
    rule_results: list[RuleResult] = Field(
        description="Every rule's outcome with its explanation, in rule-set order.",
        examples=[
            [
                {
                    "rule_id": "priority_sector",
                    "passed": True,
                    "explanation": "The proposal serves a priority sector (health).",
                }
            ]
        ],
    )
    missing_fields: list[str] = Field(
        description="Fields the rules needed but the application lacks.",
        examples=[["commitments.data_protection_attestation"], []],
    )
    assessed_at: datetime = Field(
        description="When the assessment was made, in UTC.", examples=["2026-11-26T10:35:04Z"]
    )


class ApplicationSummary(BaseModel):
    """An application as listed: identity, status and headline facts."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="The application id.", examples=[_APP_ID])
    firm_id: str = Field(description="The firm that owns it.", examples=["ACME"])
    status: Status = Field(
        description="Where the application stands (see the API description for the meanings).",
        examples=["draft", "submitted", "eligible"],
    )
    revision: int = Field(
        description="0 for a draft, 1 once submitted, +1 per amendment.", examples=[1]
    )
    title: str | None = Field(
        description="The proposal's title, when given.",
        examples=["Radiology triage assistant for regional hospitals"],
    )
    legal_name: str | None = Field(
        description="The firm's legal name as given in the application.",
        examples=["Acme Vision AI GmbH"],
    )
    rule_set_version: str | None = Field(
        description="Version of the eligibility rule set that assessed the latest revision.",
        examples=["2026.1", None],
    )
    created_at: datetime = Field(
        description="When the application was created, in UTC.",
        examples=["2026-11-26T10:30:00Z"],
    )
    updated_at: datetime = Field(
        description="When anything about it last changed, in UTC.",
        examples=["2026-11-26T10:35:04Z"],
    )
    submitted_at: datetime | None = Field(
        description="When it was first submitted, in UTC; null for a draft.",
        examples=["2026-11-26T10:35:02Z", None],
    )


class ApplicationView(ApplicationSummary):
    """An application with its content, status, eligibility decision and timeline."""

    journey_id: uuid.UUID = Field(
        description=(
            "The application's journey id: the correlation id of every event about it. "
            "Quote it when you contact the program."
        ),
        examples=["6a1e1f7e-0d64-4f67-9d4a-77c8c9b0a001"],
    )
    status_reasons: list[str] = Field(
        description="Why the application has its status (e.g. the failed eligibility rules).",
        examples=[["The investment commitment is below the EUR 1,000,000 minimum."], []],
    )
    status_changed_at: datetime = Field(
        description="When the current status was reached, in UTC.",
        examples=["2026-11-26T10:35:04Z"],
    )
    allowed_actions: list[Action] = Field(
        description="What the firm can do now: `edit`, `submit`, `delete`, `amend`, `withdraw`.",
        examples=[["edit", "submit", "delete"], ["amend", "withdraw"], []],
    )
    missing_for_submission: list[str] = Field(
        description=(
            "For a draft: the fields still to fill in (or fix) before it can be submitted, as "
            "dotted paths. Empty once submittable, and for submitted applications."
        ),
        examples=[["proposal.investment_commitment", "incentives"], []],
    )
    content: ApplicationContentDraft = Field(
        description="The draft, or the content of the latest submitted revision.",
        examples=[CONTENT_EXAMPLE],
    )
    eligibility: EligibilityView | None = Field(
        description="The eligibility decision on the latest revision; null until assessed.",
        examples=[ELIGIBILITY_EXAMPLE, None],
    )
    information_request: InformationRequest | None = Field(
        description=(
            "What the program asked for, while the status is `information_requested`; answer it "
            "with `POST /v1/applications/{id}/amend`."
        ),
        examples=[INFORMATION_REQUEST_EXAMPLE, None],
    )
    award: AwardView | None = Field(
        default=None,
        description=(
            "Once approved and offered: the offer and its expiry, the space held and allocated, "
            "the award and each tranche with its state, the fast-track items granted, the "
            "milestones and every compensation. Answer the offer with "
            "`POST /v1/applications/{id}/offer/accept` or `.../offer/decline`; report a "
            "milestone with `POST /v1/applications/{id}/milestones`."
        ),
        examples=[None],
    )
    timeline: list[TimelineEntryView] = Field(
        description="Every status change and notable fact, oldest first.",
        examples=[TIMELINE_EXAMPLE],
    )


class ApplicationPage(BaseModel):
    """One page of applications, newest first."""

    model_config = ConfigDict(frozen=True)

    items: list[ApplicationSummary] = Field(
        description="The applications on this page.", examples=[[SUMMARY_EXAMPLE]]
    )
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page.",
        examples=["MjAyNi0xMS0yNlQxMDozMDowMCswMDowMHxhcHBfM2Yy", None],
    )


__all__ = [
    "PARTIAL_CONTENT_EXAMPLE",
    "AmendRequest",
    "ApplicationContentDraft",
    "ApplicationPage",
    "ApplicationSummary",
    "ApplicationView",
    "EligibilityView",
    "TimelineEntryView",
    "WithdrawRequest",
    "draft_model",
]
