"""An application's state at an instant, rebuilt from the log's records of that application.

Pure: fed the leaves (index and bytes) keyed by the application, it decodes the events among
them and replays those that had occurred by the instant (their ``occurred_at``) with the status
rules of :mod:`contracts.status`, the ones the applications service projects its firms' view
with. Commands and dead letters are left out: a command proposes, an event records what
happened, and a dead letter is a copy of a record that is on the log already (or never took
effect). A record the catalog cannot decode changes nothing and is counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from contracts import catalog
from contracts.envelope import Envelope
from contracts.errors import ContractError
from contracts.status import Status, StatusState, fold
from contracts.v1.applications import ApplicationSubmitted
from contracts.v1.approvals import ApplicationApproved, ApplicationRejected
from contracts.v1.disbursement import AwardCancelled, AwardOpened, TranchePaid
from contracts.v1.eligibility import EligibilityAssessed
from contracts.v1.offers import (
    AwardCompleted,
    OfferAccepted,
    OfferDeclined,
    OfferLapsed,
    OfferMade,
)
from contracts.v1.review import ReviewDecisionRecorded, ReviewTaskAssigned
from services.audit.domain.leaves import LeafFormatError, parse_leaf


@dataclass(frozen=True)
class LoggedEvent:
    """An event decoded from the leaf at ``index``."""

    index: int
    topic: str
    envelope: Envelope[Any]


def logged_events(leaves: Iterable[tuple[int, bytes]]) -> tuple[list[LoggedEvent], int]:
    """The decodable events among ``leaves`` (first copy of each event id), and how many not.

    Only ``.events`` topics count; commands and dead letters are skipped without being counted.
    """
    events: list[LoggedEvent] = []
    seen: set[Any] = set()
    undecodable = 0
    for index, leaf in leaves:
        try:
            record = parse_leaf(leaf)
        except LeafFormatError:
            undecodable += 1
            continue
        if not record.topic.endswith(".events"):
            continue
        try:
            envelope = catalog.decode(record.value)
        except ContractError:  # undecodable, invalid, or a type this version does not know
            undecodable += 1
            continue
        if envelope.event_id in seen:
            continue
        seen.add(envelope.event_id)
        events.append(LoggedEvent(index, record.topic, envelope))
    return events, undecodable


class Actor(BaseModel):
    """Who acted, as the envelope records it."""

    kind: str
    id: str
    firm_id: str | None = None


class DecisionView(BaseModel):
    """A decision on the application: eligibility, a review stage, or the final one."""

    index: int = Field(description="Leaf index of the record.")
    type: str = Field(examples=["review.decision_recorded"])
    occurred_at: datetime
    actor: Actor
    stage: str = Field(examples=["eligibility", "technical", "final"])
    outcome: str = Field(examples=["eligible", "approve", "approved"])
    reviewer_id: str | None = Field(default=None, description="For a review stage's decision.")
    rule_set_version: str | None = None
    rule_set_sha256: str | None = None
    comment: str | None = None


class AssignmentView(BaseModel):
    """A review task given to a reviewer."""

    index: int
    occurred_at: datetime
    stage: str
    reviewer_id: str
    task_id: str


class OfferView(BaseModel):
    """The latest offer made and its answer, if any by then."""

    offer_id: str
    made_at: datetime
    expires_at: datetime
    grant: str | None = None
    answer: str | None = Field(default=None, examples=["accepted", "declined", "lapsed", None])
    answered_at: datetime | None = None


class AwardView(BaseModel):
    """The award opened for the application and what had been paid of it by then."""

    award_id: str
    opened_at: datetime
    total: str
    tranches: int
    paid: list[int] = Field(description="Sequences of the tranches paid.")
    completed: bool = False
    cancelled: bool = False


class StateView(BaseModel):
    """An application's state at ``as_of``, rebuilt from the log."""

    application_id: str
    as_of: datetime
    tree_size: int = Field(description="The log's size the state was rebuilt from.")
    records: int = Field(description="Events of the application that had occurred by `as_of`.")
    undecodable: int = Field(description="Records keyed by it that did not decode (ignored).")
    status: Status
    status_changed_at: datetime
    revision: int
    reasons: list[str]
    firm_id: str | None = None
    decisions: list[DecisionView]
    assignments: list[AssignmentView]
    offer: OfferView | None = None
    award: AwardView | None = None


class NothingLogged(LookupError):
    """No event of the application had occurred by the instant."""


def _actor(envelope: Envelope[Any]) -> Actor:
    return Actor(
        kind=envelope.actor.kind.value, id=envelope.actor.id, firm_id=envelope.actor.firm_id
    )


def _decision(event: LoggedEvent) -> DecisionView | None:
    envelope = event.envelope
    payload = envelope.payload
    base: dict[str, Any] = {
        "index": event.index,
        "type": envelope.type,
        "occurred_at": envelope.occurred_at,
        "actor": _actor(envelope),
    }
    match payload:
        case EligibilityAssessed():
            return DecisionView(
                **base,
                stage="eligibility",
                outcome=payload.outcome.value,
                rule_set_version=payload.rule_set_version,
                rule_set_sha256=payload.rule_set_sha256,
            )
        case ReviewDecisionRecorded():
            return DecisionView(
                **base,
                stage=payload.stage.value,
                outcome=payload.decision.value,
                reviewer_id=payload.reviewer_id,
                comment=payload.comment,
            )
        case ApplicationApproved():
            return DecisionView(**base, stage="final", outcome="approved")
        case ApplicationRejected():
            return DecisionView(
                **base, stage="final", outcome="rejected", comment="; ".join(payload.reasons)
            )
    return None


def state_as_of(
    application_id: str,
    events: Sequence[LoggedEvent],
    as_of: datetime,
    *,
    tree_size: int,
    undecodable: int = 0,
) -> StateView:
    """The state at ``as_of`` from ``events`` (in log order); :class:`NothingLogged` if none."""
    occurred = [e for e in events if e.envelope.occurred_at <= as_of]
    if not occurred:
        raise NothingLogged(f"no event of application {application_id} occurred by {as_of}")
    envelopes = [e.envelope for e in occurred]
    state = fold(envelopes, StatusState(Status.DRAFT, occurred[0].envelope.occurred_at, 0))
    firm_id: str | None = None
    decisions: list[DecisionView] = []
    assignments: list[AssignmentView] = []
    offer: OfferView | None = None
    award: AwardView | None = None
    for event in occurred:
        payload = event.envelope.payload
        at = event.envelope.occurred_at
        decision = _decision(event)
        if decision is not None:
            decisions.append(decision)
        match payload:
            case ApplicationSubmitted():
                firm_id = payload.firm_id
            case ReviewTaskAssigned():
                assignments.append(
                    AssignmentView(
                        index=event.index,
                        occurred_at=at,
                        stage=payload.stage.value,
                        reviewer_id=payload.reviewer_id,
                        task_id=payload.task_id,
                    )
                )
            case OfferMade():
                offer = OfferView(
                    offer_id=payload.offer_id,
                    made_at=at,
                    expires_at=payload.expires_at,
                    grant=None if payload.grant is None else str(payload.grant),
                )
            case OfferAccepted() | OfferDeclined() | OfferLapsed() if offer is not None:
                answer = {OfferAccepted: "accepted", OfferDeclined: "declined"}.get(
                    type(payload), "lapsed"
                )
                offer = offer.model_copy(update={"answer": answer, "answered_at": at})
            case AwardOpened():
                award = AwardView(
                    award_id=payload.award_id,
                    opened_at=at,
                    total=str(payload.total),
                    tranches=len(payload.tranches),
                    paid=[],
                )
            case TranchePaid() if award is not None and payload.sequence not in award.paid:
                award = award.model_copy(update={"paid": [*award.paid, payload.sequence]})
            case AwardCompleted() if award is not None:
                award = award.model_copy(update={"completed": True})
            case AwardCancelled() if award is not None:
                award = award.model_copy(update={"cancelled": True})
    return StateView(
        application_id=application_id,
        as_of=as_of,
        tree_size=tree_size,
        records=len(occurred),
        undecodable=undecodable,
        status=state.status,
        status_changed_at=state.changed_at,
        revision=state.revision,
        reasons=list(state.reasons),
        firm_id=firm_id,
        decisions=decisions,
        assignments=assignments,
        offer=offer,
        award=award,
    )
