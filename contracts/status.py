"""An application's status: the statuses, what each event means for it, and how facts combine.

One home for the status rules. The applications service projects its firms' status view with
them, and the audit service rebuilds an application's state at any instant from the log with
the same rules, so the two cannot disagree. Pure: plain values and contract models only.

- :func:`status_change` is the event → status mapping: the status a downstream event proposes
  (with the reasons a firm is given), or ``None``.
- :func:`transition` decides whether a proposed status replaces the current one. It is built so
  that the result does not depend on the order in which events arrive (they come from several
  topics, so only each topic is ordered) and a duplicate changes nothing:

  - a *closure* (ineligible, rejected, withdrawn, ...) beats any open status; between two
    closures the earlier one wins, because the journey ended then;
  - *approved* and what follows it (award opened, offered, accepted, completed) beat every
    other open status and only move forward;
  - *approved_unfunded* waits for budget between the approval and the award: a top-up that
    opens the award moves it on (award opened, offered, ...), and a closure ends it;
  - review follows eligibility: once a review has begun (under review, or information
    requested), a passing assessment of the same content does not move the application back
    to *eligible*, and the review's facts replace *eligible* whatever the clocks say. An
    amendment's assessment and its new review tasks are produced apart, so either can happen
    first;
  - between the other open statuses the later fact (``occurred_at``) wins;
  - a fact about a superseded revision of the content (an assessment of revision 1 arriving
    after the firm amended to revision 2) does not change the status;
  - an eligibility assessment of exactly the current revision always follows ``submitted``,
    whatever the producers' clocks say: it cannot have happened before the submission.
- :func:`own_status` is what the firm's own actions set directly (submission, amendment, an
  answer to the offer, a withdrawal): the applications service records those when it accepts
  the action, not when the event comes back.
- :func:`fold` replays a sequence of envelopes into a :class:`StatusState`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from contracts.envelope import Envelope
from contracts.v1.applications import (
    ApplicationAmended,
    ApplicationSubmitted,
    ApplicationWithdrawn,
)
from contracts.v1.approvals import ApplicationApproved, ApplicationRejected
from contracts.v1.common import EligibilityOutcome, Stage
from contracts.v1.disbursement import AwardOpened
from contracts.v1.eligibility import EligibilityAssessed
from contracts.v1.offers import (
    ApplicationCompensated,
    AwardCompleted,
    OfferAccepted,
    OfferDeclined,
    OfferLapsed,
    OfferMade,
)
from contracts.v1.review import ReviewInformationRequested, ReviewTaskAssigned


class Status(StrEnum):
    """Where an application stands, as its firm sees it."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    ELIGIBLE = "eligible"
    INELIGIBLE = "ineligible"
    INFORMATION_REQUESTED = "information_requested"
    UNDER_REVIEW = "under_review"
    APPROVED = "approved"
    AWARD_OPENED = "award_opened"
    OFFERED = "offered"
    OFFER_ACCEPTED = "offer_accepted"
    COMPLETED = "completed"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    OFFER_DECLINED = "offer_declined"
    OFFER_LAPSED = "offer_lapsed"
    UNFUNDED = "approved_unfunded"
    CANCELLED = "cancelled"


#: Statuses that end the journey. Nothing but an earlier closure replaces them.
CLOSED: Final = frozenset(
    {
        Status.INELIGIBLE,
        Status.REJECTED,
        Status.WITHDRAWN,
        Status.OFFER_DECLINED,
        Status.OFFER_LAPSED,
        Status.CANCELLED,
    }
)
#: Statuses after the final decision, in the order they follow each other. (The grant is
#: reserved, ``award_opened``, before the offer is made; an application whose budget fell short
#: waits, ``approved_unfunded``, until a top-up opens its award.)
SETTLED_RANK: Final[Mapping[Status, int]] = {
    Status.APPROVED: 1,
    Status.UNFUNDED: 2,
    Status.AWARD_OPENED: 3,
    Status.OFFERED: 4,
    Status.OFFER_ACCEPTED: 5,
    Status.COMPLETED: 6,
}

#: Open statuses of a review under way: a passing assessment does not move them back.
REVIEWING: Final = frozenset({Status.UNDER_REVIEW, Status.INFORMATION_REQUESTED})

#: Where a compensation leaves the application (the workflow's outcome names).
COMPENSATION_STATUS: Final[Mapping[str, Status]] = {
    "approved_unfunded": Status.UNFUNDED,
    "declined": Status.OFFER_DECLINED,
    "lapsed": Status.OFFER_LAPSED,
    "withdrawn": Status.WITHDRAWN,
    "cancelled": Status.CANCELLED,
}


@dataclass(frozen=True)
class StatusState:
    """The projected status of one application."""

    status: Status
    #: When the fact that set the status happened (the event's ``occurred_at``).
    changed_at: datetime
    #: The content revision the firm last submitted (1 at submission, +1 per amendment).
    revision: int
    #: Why, in words for the firm (failed rules, requested information, ...).
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class StatusChange:
    """A status an event proposes."""

    status: Status
    at: datetime
    reasons: tuple[str, ...] = ()
    #: The content revision the event is about, when the event says (eligibility does).
    revision: int | None = None


def transition(current: StatusState, change: StatusChange) -> bool:
    """Whether ``change`` replaces ``current`` (see the module docstring for the rules)."""
    if current.status is Status.DRAFT:
        return False  # downstream facts exist only for submitted applications
    if change.revision is not None and change.revision < current.revision:
        return False  # about content the firm has since amended
    if current.status in CLOSED:
        return change.status in CLOSED and change.at < current.changed_at
    if change.status in CLOSED:
        return True
    if current.status in SETTLED_RANK:
        rank, current_rank = SETTLED_RANK.get(change.status, 0), SETTLED_RANK[current.status]
        # The same decision reported twice: the earlier report stands, whatever the order.
        return rank > current_rank or (rank == current_rank and change.at < current.changed_at)
    if change.status in SETTLED_RANK:
        return True
    if (
        current.status is Status.SUBMITTED
        and change.revision is not None
        and change.revision == current.revision
    ):
        return True
    if change.status is Status.ELIGIBLE and current.status in REVIEWING:
        return False
    if current.status is Status.ELIGIBLE and change.status in REVIEWING:
        return True
    return change.at >= current.changed_at


def failed_rules(assessment: EligibilityAssessed) -> tuple[str, ...]:
    """The explanations of the rules an assessment failed."""
    return tuple(r.explanation for r in assessment.rule_results if not r.passed)


def _assessment_change(payload: EligibilityAssessed, at: datetime) -> StatusChange:
    revision = payload.application_revision
    match payload.outcome:
        case EligibilityOutcome.ELIGIBLE:
            return StatusChange(Status.ELIGIBLE, at, (), revision)
        case EligibilityOutcome.INELIGIBLE:
            reasons = failed_rules(payload) or (
                "The application does not meet the program's rules.",
            )
            return StatusChange(Status.INELIGIBLE, at, reasons, revision)
        case EligibilityOutcome.NEEDS_INFORMATION:
            missing = f"Missing: {', '.join(payload.missing_fields)}."
            return StatusChange(
                Status.INFORMATION_REQUESTED, at, (missing, *failed_rules(payload)), revision
            )
    raise AssertionError(f"unhandled outcome {payload.outcome}")  # pragma: no cover


def _granted(payload: ApplicationApproved) -> tuple[str, ...]:
    granted = []
    if payload.grant is not None:
        granted.append(f"grant of {payload.grant}")
    if payload.zone_space:
        granted.append("zone space")
    if payload.fast_track:
        granted.append("fast-track: " + ", ".join(payload.fast_track))
    return (f"Granted: {'; '.join(granted)}.",) if granted else ()


def status_change(envelope: Envelope[Any]) -> StatusChange | None:
    """The status a downstream event proposes for its application; ``None`` if it proposes none.

    The firm's own actions (submission, amendment, offer answers) are not downstream facts:
    see :func:`own_status`.
    """
    at = envelope.occurred_at
    payload = envelope.payload
    match payload:
        case ApplicationWithdrawn():
            # Also emitted by the workflow when requested information does not arrive in time.
            return StatusChange(Status.WITHDRAWN, at, (payload.reason,))
        case EligibilityAssessed():
            return _assessment_change(payload, at)
        case ReviewTaskAssigned():
            return StatusChange(Status.UNDER_REVIEW, at)
        case ReviewInformationRequested():
            reasons = tuple(payload.questions) or (f"Please review: {', '.join(payload.fields)}.",)
            return StatusChange(Status.INFORMATION_REQUESTED, at, reasons)
        case ApplicationApproved():
            return StatusChange(Status.APPROVED, at, _granted(payload))
        case ApplicationRejected():
            # An eligibility closure keeps "ineligible" (the firm already sees the failed rules)
            # rather than replacing it with a vaguer "rejected".
            closed = Status.INELIGIBLE if payload.stage is Stage.ELIGIBILITY else Status.REJECTED
            return StatusChange(closed, at, tuple(payload.reasons))
        case OfferMade():
            return StatusChange(Status.OFFERED, at)
        case OfferLapsed():
            return StatusChange(
                Status.OFFER_LAPSED, at, ("The offer was not answered before it expired.",)
            )
        case AwardCompleted():
            return StatusChange(Status.COMPLETED, at)
        case ApplicationCompensated():
            if payload.outcome == "approved_unfunded" and not payload.waitlisted_for_budget:
                # Short of budget after the award opened (charged to the acceptance year's
                # budget): the award is cancelled and nothing waits.
                return StatusChange(Status.CANCELLED, at, (payload.reason,))
            outcome = COMPENSATION_STATUS.get(payload.outcome)
            return StatusChange(outcome, at, (payload.reason,)) if outcome else None
        case AwardOpened():
            return StatusChange(Status.AWARD_OPENED, at)
    return None


def own_status(envelope: Envelope[Any]) -> tuple[Status, int | None, tuple[str, ...]] | None:
    """What a firm's own action set when it was accepted: status, new revision (if any), reasons.

    The applications service sets these statuses in the transaction that stages the event,
    because the action is only accepted in a status that allows it.
    """
    payload = envelope.payload
    match payload:
        case ApplicationSubmitted():
            return Status.SUBMITTED, payload.revision, ()
        case ApplicationAmended():
            return Status.SUBMITTED, payload.revision, (payload.reason,)
        case OfferAccepted():
            return Status.OFFER_ACCEPTED, None, ()
        case OfferDeclined():
            return Status.OFFER_DECLINED, None, ()
    return None


def fold(envelopes: Iterable[Envelope[Any]], start: StatusState) -> StatusState:
    """``start`` after every envelope about the application, taken in the order given.

    A downstream fact about a revision the firm has not submitted yet (in this order) waits
    until that revision's own event has been taken: across topics the order is not causal.
    """
    state = start
    waiting: list[StatusChange] = []

    def take(change: StatusChange) -> None:
        nonlocal state
        if transition(state, change):
            state = replace(
                state, status=change.status, changed_at=change.at, reasons=change.reasons
            )

    for envelope in envelopes:
        own = own_status(envelope)
        if own is not None:
            status, revision, reasons = own
            state = StatusState(status, envelope.occurred_at, revision or state.revision, reasons)
            ready = [c for c in waiting if c.revision is not None and c.revision <= state.revision]
            waiting = [c for c in waiting if c not in ready]
            for held in ready:
                take(held)
            continue
        change = status_change(envelope)
        if change is None:
            continue
        if change.revision is not None and change.revision > state.revision:
            waiting.append(change)
        else:
            take(change)
    return state
