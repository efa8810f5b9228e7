"""The applications domain: statuses, what a firm may do in each, and the status projection.

Pure: no database, broker or web framework. It is fed plain values and contract models and
answers with plain values, so every rule here is unit-tested directly.

Three concerns live here:

1. **Content rules.** What a draft must contain before it can be submitted
   (:func:`submission_issues`), cross-field checks pydantic cannot express on one field
   (:func:`content_issues`), RFC 7396 merge patches for draft edits (:func:`merge_patch`) and the
   field paths an amendment changes (:func:`changed_fields`).
2. **The firm's actions.** Which actions each status allows (:func:`allowed_actions`,
   :func:`ensure_allowed`).
3. **The status view.** Every downstream event is interpreted into a :class:`Fact`
   (:func:`interpret`): a timeline note, and possibly a candidate status. The statuses, the
   event → status mapping and the rule that decides whether a candidate replaces the current
   status (:func:`contracts.status.transition`) live in :mod:`contracts.status`, because the
   audit service rebuilds past states from the log with the same rules.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.envelope import Envelope, UtcDatetime
from contracts.status import (
    CLOSED,
    Status,
    StatusChange,
    failed_rules,
    status_change,
)
from contracts.v1.applications import (
    ApplicationAmended,
    ApplicationContent,
    ApplicationSubmitted,
    ApplicationWithdrawn,
)
from contracts.v1.approvals import ApplicationApproved, ApplicationRejected
from contracts.v1.common import (
    EligibilityOutcome,
    FieldPath,
    Identifier,
    LongText,
    Stage,
    WithdrawalReason,
    ZoneUnits,
)
from contracts.v1.disbursement import (
    AwardCancelled,
    AwardCharged,
    AwardOpened,
    BudgetExhausted,
    TrancheFailed,
    TranchePaid,
    TrancheReleased,
)
from contracts.v1.eligibility import EligibilityAssessed
from contracts.v1.offers import (
    ApplicationCompensated,
    AwardCompleted,
    FastTrackGranted,
    FastTrackRevoked,
    MilestoneReported,
    MilestoneVerified,
    OfferAccepted,
    OfferDeclined,
    OfferLapsed,
    OfferMade,
)
from contracts.v1.review import (
    ReviewDecisionRecorded,
    ReviewEscalated,
    ReviewInformationRequested,
    ReviewReminderDue,
    ReviewTaskAssigned,
    ReviewTaskCancelled,
)
from contracts.v1.zones import ZoneAllocated, ZoneRefused, ZoneReleased, ZoneWaitlisted
from services.applications.awards import compensation_summary

# --- statuses and actions ------------------------------------------------------------------------


#: Statuses in which an administrator may cancel the application: approved, journey still open.
CANCELLABLE: Final = frozenset(
    {Status.APPROVED, Status.AWARD_OPENED, Status.OFFERED, Status.OFFER_ACCEPTED}
)


class Action(StrEnum):
    """What a firm can do with its application."""

    EDIT = "edit"
    SUBMIT = "submit"
    DELETE = "delete"
    AMEND = "amend"
    WITHDRAW = "withdraw"
    ACCEPT_OFFER = "accept_offer"
    DECLINE_OFFER = "decline_offer"
    REPORT_MILESTONE = "report_milestone"


_ACTIONS: Final[Mapping[Status, tuple[Action, ...]]] = {
    Status.DRAFT: (Action.EDIT, Action.SUBMIT, Action.DELETE),
    Status.SUBMITTED: (Action.WITHDRAW,),
    Status.ELIGIBLE: (Action.WITHDRAW,),
    Status.INFORMATION_REQUESTED: (Action.AMEND, Action.WITHDRAW),
    Status.UNDER_REVIEW: (Action.WITHDRAW,),
    # Withdrawing after approval is the firm's right; the workflow's saga then releases held
    # zone space and cancels the open award.
    Status.APPROVED: (Action.WITHDRAW,),
    Status.AWARD_OPENED: (Action.WITHDRAW,),
    Status.OFFERED: (Action.ACCEPT_OFFER, Action.DECLINE_OFFER, Action.WITHDRAW),
    Status.OFFER_ACCEPTED: (Action.REPORT_MILESTONE, Action.WITHDRAW),
    Status.COMPLETED: (),
    Status.INELIGIBLE: (),
    Status.REJECTED: (),
    Status.WITHDRAWN: (),
    Status.OFFER_DECLINED: (),
    Status.OFFER_LAPSED: (),
    # Waiting for budget: a top-up may still fund it, and the firm may withdraw meanwhile.
    Status.UNFUNDED: (Action.WITHDRAW,),
    Status.CANCELLED: (),
}


def allowed_actions(status: Status) -> tuple[Action, ...]:
    """The actions a firm may take on an application in ``status``."""
    return _ACTIONS[status]


class ActionNotAllowed(Exception):
    """The application's status does not allow the action (the API answers 409)."""

    def __init__(self, status: Status, action: Action) -> None:
        self.status = status
        self.action = action
        self.allowed = allowed_actions(status)
        if status is Status.DRAFT:
            hint = "submit the draft first"
        elif status in CLOSED or status is Status.COMPLETED:
            hint = "the application is closed"
        elif action in (Action.ACCEPT_OFFER, Action.DECLINE_OFFER):
            hint = "no offer is waiting for an answer"
        elif action is Action.REPORT_MILESTONE:
            hint = "milestones are reported once the offer is accepted, while the award is open"
        elif action is Action.AMEND:
            hint = "amendments are accepted only while information has been requested"
        else:
            hint = "the application has been submitted; drafts only can be edited or deleted"
        super().__init__(f"cannot {action} an application that is {status}: {hint}")


def ensure_allowed(status: Status, action: Action) -> None:
    """Raise :class:`ActionNotAllowed` unless ``action`` is allowed in ``status``."""
    if action not in _ACTIONS[status]:
        raise ActionNotAllowed(status, action)


# --- content rules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldIssue:
    """One problem with one field of the application content."""

    #: Path into the content, e.g. ``("firm", "parent_companies", 0, "ownership_pct")``.
    path: tuple[str | int, ...]
    message: str
    #: Machine-readable kind, e.g. ``missing``, ``ownership_exceeds_100``.
    type: str

    @property
    def dotted(self) -> str:
        """The path as dotted text (list indexes in brackets), e.g. ``firm.parent_companies[0]``."""
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out


class InvalidContent(Exception):
    """The content breaks a rule (the API answers 422 with one field error per issue)."""

    def __init__(self, message: str, issues: Sequence[FieldIssue]) -> None:
        super().__init__(message)
        self.issues = tuple(issues)


def _percent(value: Any) -> Decimal | None:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str | int) and not isinstance(value, bool):
        try:
            return Decimal(value)
        except ArithmeticError:
            return None
    return None


def _duplicates(items: Iterable[Any], key: str) -> list[int]:
    seen: set[Any] = set()
    dupes: list[int] = []
    for index, item in enumerate(items):
        value = item.get(key) if isinstance(item, Mapping) else None
        if value is None:
            continue
        if value in seen:
            dupes.append(index)
        seen.add(value)
    return dupes


def content_issues(content: Mapping[str, Any]) -> list[FieldIssue]:
    """Cross-field rules for complete content and drafts alike (a draft is checked on what it has).

    - the parent companies cannot own more than 100 % of the firm together;
    - zone space is requested once per unit type, each fast-track item once, and document ids
      are unique (the contract says "one entry per unit type"; a repeat is a client bug).
    """
    issues: list[FieldIssue] = []
    firm = content.get("firm")
    if isinstance(firm, Mapping):
        parents = firm.get("parent_companies") or []
        shares = [_percent(p.get("ownership_pct")) for p in parents if isinstance(p, Mapping)]
        total = sum((s for s in shares if s is not None), Decimal(0))
        if total > 100:
            issues.append(
                FieldIssue(
                    ("firm", "parent_companies"),
                    f"parent companies own {total} % together; the total cannot exceed 100 %",
                    "ownership_exceeds_100",
                )
            )
    incentives = content.get("incentives")
    if isinstance(incentives, Mapping):
        for index in _duplicates(incentives.get("zone_space") or [], "unit_type"):
            issues.append(
                FieldIssue(
                    ("incentives", "zone_space", index, "unit_type"),
                    "this unit type is already requested; use one entry per unit type",
                    "duplicate_unit_type",
                )
            )
        for index in _duplicates(incentives.get("fast_track") or [], "item"):
            issues.append(
                FieldIssue(
                    ("incentives", "fast_track", index, "item"),
                    "this fast-track item is already requested",
                    "duplicate_fast_track_item",
                )
            )
    for index in _duplicates(content.get("documents") or [], "document_id"):
        issues.append(
            FieldIssue(
                ("documents", index, "document_id"),
                "this document is already referenced",
                "duplicate_document",
            )
        )
    return issues


def _submission_rules(as_json: Mapping[str, Any]) -> list[FieldIssue]:
    issues: list[FieldIssue] = []
    incentives = as_json.get("incentives")
    if isinstance(incentives, Mapping) and not any(
        incentives.get(kind) for kind in ("grant", "zone_space", "fast_track")
    ):
        issues.append(
            FieldIssue(
                ("incentives",),
                "request at least one incentive: a grant, zone space or a fast-track item",
                "no_incentive_requested",
            )
        )
    issues.extend(content_issues(as_json))
    return issues


def check_submission(content: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidContent` unless complete content may be submitted.

    ``content`` is a validated :class:`~contracts.v1.applications.ApplicationContent` in JSON
    form. On top of the contract's own validation, a submission asks for at least one incentive
    and passes :func:`content_issues`. Attestations may still be missing: eligibility then asks
    for them, and the firm amends.
    """
    issues = _submission_rules(content)
    if issues:
        raise InvalidContent(f"the application cannot be submitted: {len(issues)} issue(s)", issues)


def complete_content(draft: Mapping[str, Any]) -> ApplicationContent:
    """The draft as complete content, ready to submit; :class:`InvalidContent` listing every gap.

    Every required field of :class:`~contracts.v1.applications.ApplicationContent` must be
    there, and :func:`check_submission` must pass.
    """
    try:
        content = ApplicationContent.model_validate(draft)
    except ValidationError as exc:
        issues = [
            FieldIssue(
                tuple(error["loc"]),
                "required to submit" if error["type"] == "missing" else str(error["msg"]),
                str(error["type"]),
            )
            for error in exc.errors(include_url=False, include_input=False)
        ]
        issues.extend(_submission_rules(draft))
        raise InvalidContent(
            f"the draft is incomplete or invalid: {len(issues)} field(s) to fix", issues
        ) from None
    issues = _submission_rules(draft)
    if issues:
        raise InvalidContent(f"the draft cannot be submitted: {len(issues)} issue(s)", issues)
    return content


def submission_issues(draft: Mapping[str, Any]) -> list[FieldIssue]:
    """What stands between ``draft`` and a valid submission (empty when it can be submitted)."""
    try:
        complete_content(draft)
    except InvalidContent as exc:
        return list(exc.issues)
    return []


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Apply an RFC 7396 JSON merge patch: objects merge, ``null`` removes, the rest replaces."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            current = result.get(key)
            result[key] = merge_patch(current if isinstance(current, Mapping) else {}, value)
        else:
            result[key] = value
    return result


#: The contract caps ``changed_fields`` at 100 entries.
MAX_CHANGED_FIELDS: Final = 100


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Dotted paths of the leaves that differ; a changed list is reported as a whole.

    Sorted, and collapsed to the top-level sections when there would be more than
    :data:`MAX_CHANGED_FIELDS`.
    """
    paths: list[str] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
        elif _normalise(a) != _normalise(b):
            paths.append(prefix)

    walk(before, after, "")
    if len(paths) > MAX_CHANGED_FIELDS:
        paths = sorted({p.split(".", 1)[0] for p in paths})
    return sorted(paths)


def _normalise(value: Any) -> Any:
    # An absent list and an empty one mean the same to the program.
    if value is None or value == []:
        return None
    return value


# --- the status projection -----------------------------------------------------------------------


class InformationRequest(BaseModel):
    """What the program asked the firm for; the firm answers by amending its application."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Stage = Field(
        description="The stage that asked: `eligibility`, or a review stage.",
        examples=["eligibility", "technical"],
    )
    request_id: Identifier | None = Field(
        default=None,
        description="Id of a reviewer's request (an amendment answers it); null for eligibility.",
        examples=["req_5T2W8N", None],
    )
    fields: list[FieldPath] = Field(
        default_factory=list,
        description="Content fields to complete or correct, as dotted paths.",
        examples=[["commitments.data_protection_attestation"]],
    )
    questions: list[LongText] = Field(
        default_factory=list,
        description="What the program wants to know, in words.",
        examples=[["How many local engineers will the residency train per year?"]],
    )
    requested_at: UtcDatetime = Field(
        description="When the information was requested, in UTC.",
        examples=["2026-12-02T15:20:00Z"],
    )
    respond_by: UtcDatetime | None = Field(
        default=None,
        description="Deadline for the amendment, in UTC, when the request sets one.",
        examples=["2027-01-01T15:20:00Z", None],
    )
    event_id: uuid.UUID = Field(
        description="The event that carried the request; the amendment names it as its cause.",
        examples=["0b6f3c3e-6d0e-4a5c-9a55-3c1d7c3f9b21"],
    )


@dataclass(frozen=True)
class Fact:
    """What one event means for an application's status view."""

    #: A short sentence for the timeline.
    summary: str
    reasons: tuple[str, ...] = ()
    #: Internal workflow mechanics (reminders, escalations) that firms do not see.
    staff_only: bool = False
    change: StatusChange | None = None
    eligibility: EligibilityAssessed | None = None
    information_request: InformationRequest | None = None


def _stage_name(stage: str) -> str:
    return {"security": "security and data-protection"}.get(stage, stage)


def _units(units: Sequence[ZoneUnits]) -> str:
    return ", ".join(f"{u.quantity} x {u.unit_type} in {u.zone_id}" for u in units)


def _assessment_fact(payload: EligibilityAssessed, event_id: uuid.UUID) -> Fact:
    rule_set = f"{payload.rule_set_id} {payload.rule_set_version}"
    revision = payload.application_revision
    match payload.outcome:
        case EligibilityOutcome.ELIGIBLE:
            summary = f"Eligible under rule set {rule_set} (revision {revision})."
        case EligibilityOutcome.INELIGIBLE:
            summary = f"Not eligible under rule set {rule_set} (revision {revision})."
        case EligibilityOutcome.NEEDS_INFORMATION:
            return Fact(
                summary=f"More information needed under rule set {rule_set}.",
                eligibility=payload,
                information_request=InformationRequest(
                    source=Stage.ELIGIBILITY,
                    fields=list(payload.missing_fields),
                    questions=list(failed_rules(payload)),
                    requested_at=payload.assessed_at,
                    event_id=event_id,
                ),
            )
    return Fact(summary=summary, eligibility=payload)


def interpret(envelope: Envelope[Any]) -> Fact | None:
    """What ``envelope`` means for the status view; ``None`` for types the view ignores.

    The status it proposes, and the reasons the firm is given for it, come from
    :func:`contracts.status.status_change`, the one home of the event → status mapping.
    """
    fact = _describe(envelope)
    if fact is None:
        return None
    change = status_change(envelope)
    if change is None:
        return fact
    return replace(fact, change=change, reasons=fact.reasons or change.reasons)


def _describe(envelope: Envelope[Any]) -> Fact | None:
    payload = envelope.payload
    match payload:
        # --- this service's own events ---------------------------------------------------------
        case (
            ApplicationSubmitted()
            | ApplicationAmended()
            | OfferAccepted()
            | OfferDeclined()
            | MilestoneReported()
            | FastTrackRevoked()
        ):
            # Only this service submits and amends, and it records both on the timeline in
            # the same transaction that stages the event: coming back, they add nothing.
            return None
        case ApplicationWithdrawn():
            # Also emitted by the workflow when requested information does not arrive in time.
            if payload.reason_code is WithdrawalReason.INFORMATION_TIMEOUT:
                summary = "Withdrawn: the requested information did not arrive in time."
            else:
                summary = "Application withdrawn by the firm."
            return Fact(summary=summary)
        # --- eligibility ----------------------------------------------------------------------
        case EligibilityAssessed():
            return _assessment_fact(payload, envelope.event_id)
        # --- review -----------------------------------------------------------------------
        case ReviewTaskAssigned():
            return Fact(summary=f"{_stage_name(payload.stage).capitalize()} review started.")
        case ReviewDecisionRecorded():
            decision = {
                "approve": "approved",
                "reject": "rejected",
                "request_information": "asked for more information",
            }[payload.decision]
            return Fact(summary=f"{_stage_name(payload.stage).capitalize()} review {decision}.")
        case ReviewInformationRequested():
            # `source` is newer than the first v1 schema (the workflow sets it to `eligibility`
            # when the rules, not the stage's reviewer, found fields missing); older producers
            # omit it, hence the lookup with a default.
            asked_by: Stage | None = getattr(payload, "source", None)
            source = asked_by or Stage(payload.stage.value)
            who = (
                "The eligibility check"
                if source is Stage.ELIGIBILITY
                else f"The {_stage_name(payload.stage)} review"
            )
            return Fact(
                summary=(
                    f"{who} asks for more information (respond by {payload.respond_by:%Y-%m-%d})."
                ),
                information_request=InformationRequest(
                    source=source,
                    request_id=payload.request_id,
                    fields=list(payload.fields),
                    questions=list(payload.questions),
                    requested_at=payload.requested_at,
                    respond_by=payload.respond_by,
                    event_id=envelope.event_id,
                ),
            )
        case ReviewReminderDue():
            return Fact(
                summary=f"Reminder: {payload.stage} review open for {payload.days_open} days.",
                staff_only=True,
            )
        case ReviewEscalated():
            return Fact(
                summary=f"{payload.stage.capitalize()} review escalated to a supervisor.",
                reasons=(payload.reason,),
                staff_only=True,
            )
        case ReviewTaskCancelled():
            return Fact(
                summary=f"{payload.stage.capitalize()} review task cancelled.",
                reasons=(payload.reason,),
                staff_only=True,
            )
        # --- final decisions --------------------------------------------------------------
        case ApplicationApproved():
            return Fact(summary="Application approved.")
        case ApplicationRejected():
            if payload.stage is Stage.ELIGIBILITY:
                return Fact(summary="Application closed: not eligible.")
            return Fact(summary=f"Application rejected at the {_stage_name(payload.stage)} stage.")
        # --- the offer and the award -------------------------------------------------------
        case OfferMade():
            return Fact(
                summary=f"Offer made; answer by {payload.expires_at:%Y-%m-%d %H:%M} UTC.",
                reasons=(_offer_terms(payload),),
            )
        case OfferLapsed():
            return Fact(summary="Offer lapsed.")
        case FastTrackGranted():
            return Fact(
                summary=f"Fast-track granted: {payload.item.replace('_', ' ')} until "
                f"{payload.valid_until:%Y-%m-%d}.",
                reasons=(payload.conditions,),
            )
        case MilestoneVerified():
            verdict = "verified" if payload.verified else "not verified; please report it again"
            return Fact(
                summary=f"Milestone for tranche {payload.sequence} {verdict}.",
                reasons=(payload.comment,),
            )
        case AwardCompleted():
            return Fact(summary=f"Award completed: {payload.paid} paid in full.")
        case ApplicationCompensated():
            return Fact(
                summary=f"Compensation: {compensation_summary(payload)}",
                reasons=(payload.reason,),
            )
        # --- zones ------------------------------------------------------------------------
        case ZoneAllocated():
            done = "" if payload.complete else " (partly; the rest is waitlisted)"
            return Fact(summary=f"Zone space allocated{done}: {_units(payload.units)}.")
        case ZoneWaitlisted():
            entries = ", ".join(
                f"{e.quantity} x {e.unit_type} in {e.zone_id} (position {e.position})"
                for e in payload.entries
            )
            return Fact(summary=f"Waitlisted for zone space: {entries}.")
        case ZoneReleased():
            return Fact(
                summary=f"Zone space released: {_units(payload.units)}.", reasons=(payload.reason,)
            )
        case ZoneRefused():
            return Fact(summary="Zone space could not be allocated.", reasons=(payload.reason,))
        # --- disbursement ----------------------------------------------------------------
        case AwardOpened():
            return Fact(
                summary=f"Award opened: {payload.total} in {len(payload.tranches)} tranche(s)."
            )
        case TrancheReleased():
            return Fact(summary=f"Tranche {payload.sequence} released: {payload.amount}.")
        case TranchePaid():
            return Fact(summary=f"Tranche {payload.sequence} paid: {payload.amount}.")
        case TrancheFailed():
            return Fact(
                summary=f"Tranche {payload.sequence} payment failed.", reasons=(payload.reason,)
            )
        case AwardCancelled():
            return Fact(summary="Award cancelled.", reasons=(payload.reason,))
        case AwardCharged():
            return Fact(
                summary=f"Grant of {payload.amount} charged to the {payload.budget_id} budget, "
                "the fiscal year in which the offer was accepted.",
            )
        case BudgetExhausted():
            return Fact(
                summary=f"Program budget short: {payload.requested} needed, "
                f"{payload.available} available.",
                staff_only=True,
            )
    return None


def _offer_terms(offer: OfferMade) -> str:
    parts = []
    if offer.space:
        parts.append(f"zone space: {_units(offer.space)}")
    if offer.grant is not None:
        tranches = ", ".join(f"{t.milestone} {t.amount}" for t in offer.tranches)
        parts.append(f"grant of {offer.grant} in tranches ({tranches})")
    if offer.fast_track:
        parts.append("fast-track: " + ", ".join(i.replace("_", " ") for i in offer.fast_track))
    if offer.fast_track_declined:
        parts.append(
            "fast-track not approved: "
            + ", ".join(
                f"{d.item.replace('_', ' ')} ({d.reason.rstrip('.')})"
                for d in offer.fast_track_declined
            )
        )
    if offer.space_unavailable:
        parts.append(
            "not available: "
            + ", ".join(f"{r.quantity} x {r.unit_type}" for r in offer.space_unavailable)
        )
    return ("Offered: " + "; ".join(parts) + ".") if parts else "Offered."


def is_newer_assessment(stored: EligibilityAssessed | None, new: EligibilityAssessed) -> bool:
    """Whether ``new`` should replace the assessment shown on the status view.

    The latest revision's latest assessment is shown, even when a later review status has
    already moved the application on: the firm still sees which rule set judged it.
    """
    if stored is None:
        return True
    return (new.application_revision, new.assessed_at) >= (
        stored.application_revision,
        stored.assessed_at,
    )


#: Actor kinds that are program staff.
STAFF_ACTOR_KINDS: Final = frozenset({"reviewer", "supervisor", "auditor", "admin"})


def visible_actor_id(kind: str, actor_id: str, *, for_firm: bool) -> str:
    """The actor id a caller may see: firms see program staff by role, not by name.

    Reviewers' identities stay inside the program, so that firms cannot approach or pressure
    them; staff callers see everything.
    """
    if for_firm and kind in STAFF_ACTOR_KINDS:
        return f"program {kind}"
    return actor_id
