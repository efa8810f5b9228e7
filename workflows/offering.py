"""After the committee, as plain data: the ids, the award's tranches, and the commands and
events of the offer, the award, the milestones and the compensations. No Temporal, no I/O.

Like :mod:`workflows.events`, every builder returns an :class:`~workflows.events.Event` whose
*step* makes its id deterministic; step names are part of recorded histories and of every id
ever published: never change one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from contracts.envelope import Actor, ActorKind
from contracts.money import Money
from contracts.schedule import parse_schedule, split
from contracts.v1.applications import ApplicationContent
from contracts.v1.common import CompensationReason, FastTrackItem
from contracts.v1.disbursement import (
    CancelAward,
    ChargeAward,
    OpenAward,
    ReleaseTranche,
    Tranche,
    fiscal_year,
)
from contracts.v1.disbursement import budget_id as fiscal_year_budget
from contracts.v1.offers import (
    ApplicationCompensated,
    AwardCompleted,
    FastTrackGranted,
    MilestoneVerified,
    OfferLapsed,
    OfferMade,
)
from contracts.v1.zones import ConfirmZoneHold, HoldZoneSpace, ReleaseZoneSpace
from workflows.events import WORKFLOW_ACTOR, Event, clip
from workflows.state import Milestone, OfferView, Phase, TrancheStatus, TrancheView

#: What each fast-track item is granted under, in words the firm reads.
FAST_TRACK_CONDITIONS: dict[FastTrackItem, str] = {
    FastTrackItem.SANDBOX_ACCESS: "Supervised operation within the approved proposal only.",
    FastTrackItem.EXPEDITED_PERMIT: "Permits for the approved sites and activities only.",
    FastTrackItem.EXPEDITED_WORK_VISA: "For staff named in the approved proposal.",
    FastTrackItem.DATA_ACCESS_AGREEMENT: "Under the data-protection terms of the approval.",
    FastTrackItem.EXPEDITED_CUSTOMS: "For equipment listed in the approved proposal.",
}

#: Where each compensation leaves the application.
OUTCOMES: dict[CompensationReason, Phase] = {
    CompensationReason.BUDGET_EXHAUSTED: Phase.UNFUNDED,
    CompensationReason.OFFER_DECLINED: Phase.DECLINED,
    CompensationReason.OFFER_LAPSED: Phase.LAPSED,
    CompensationReason.APPLICATION_WITHDRAWN: Phase.WITHDRAWN,
    CompensationReason.ADMINISTRATIVE: Phase.CANCELLED,
    CompensationReason.APPLICATION_REJECTED: Phase.CANCELLED,
    CompensationReason.COMMAND_REFUSED: Phase.CANCELLED,
}


def _system() -> Actor:
    return Actor.system(WORKFLOW_ACTOR)


def actor_of(actor_id: str, kind: str | None = None) -> Actor:
    """The actor a forwarded fact names (``system:...`` ids are system actors)."""
    if actor_id.startswith("system:"):
        return Actor(kind=ActorKind.SYSTEM, id=actor_id)
    return Actor(kind=ActorKind(kind) if kind else ActorKind.FIRM, id=actor_id)


#: What each command asked of its service, in words the firm reads.
COMMAND_ACTIONS: dict[str, str] = {
    "zone.hold": "The zones service could not hold the requested space",
    "zone.confirm": "The zones service could not allocate the held space",
    "zone.release": "The zones service could not release the space",
    "award.open": "The disbursement service could not open the award and reserve the grant",
    "tranche.release": "The disbursement service could not release a tranche for payment",
    "award.cancel": "The disbursement service could not cancel the award",
    "award.charge": (
        "The disbursement service could not charge the award to the budget of the year the "
        "offer was accepted in"
    ),
}


def refusal_reason(command_type: str, error: str) -> str:
    """The firm's sentence for a command its service refused (dead-lettered)."""
    action = COMMAND_ACTIONS.get(command_type, f"The {command_type} command could not be applied")
    detail = error.strip().rstrip(".")
    return clip(
        f"{action}: {detail}. What was held or reserved is released and the application is "
        "cancelled."
        if detail
        else f"{action}. What was held or reserved is released and the application is cancelled."
    )


# --- ids and the award's arithmetic --------------------------------------------------------------


def offer_id(application_id: str) -> str:
    """The one offer of an application."""
    return f"offer_{application_id}"


def allocation_id(application_id: str, round_: int = 0) -> str:
    """The zones' idempotency key for the application's space (a fresh one each time the
    space is held again after waiting for budget)."""
    return f"alloc_{application_id}" if round_ == 0 else f"alloc_{application_id}_{round_}"


def _step(step: str, round_: int) -> str:
    # Steps of the first round keep the names recorded histories and published ids carry.
    return step if round_ == 0 else f"{step}:{round_}"


def award_id(application_id: str) -> str:
    """The disbursement award of the application's grant."""
    return f"award_{application_id}"


def budget_id(incentive_type: str, now: datetime) -> str:
    """The budget of ``incentive_type`` for the fiscal year (the calendar year) of ``now``."""
    return fiscal_year_budget(incentive_type, fiscal_year(now))


def tranches(total: Money, schedule: str) -> list[TrancheView]:
    """The award's tranches: ``total`` split by the shares of ``schedule``."""
    shares = parse_schedule(schedule)
    amounts = split(total.amount, total.currency, shares)
    return [
        TrancheView(sequence=i, name=share.name, amount=Money.of(amount, total.currency))
        for i, (share, amount) in enumerate(zip(shares, amounts, strict=True), start=1)
    ]


def _wire_tranches(views: Sequence[TrancheView]) -> list[Tranche]:
    return [Tranche(sequence=t.sequence, amount=t.amount, milestone=t.name) for t in views]


def paid_total(offer: OfferView) -> Money | None:
    """What has been paid under the award so far."""
    if offer.grant is None:
        return None
    paid = sum(
        (t.amount.amount for t in offer.tranches if t.status is TrancheStatus.PAID), Decimal(0)
    )
    return Money.of(paid, offer.grant.currency)


def next_tranche(offer: OfferView) -> TrancheView | None:
    """The first tranche not paid yet (None when all are)."""
    return next((t for t in offer.tranches if t.status is not TrancheStatus.PAID), None)


# --- commands ----------------------------------------------------------------------------------


def hold_space(
    application_id: str,
    firm_id: str,
    content: ApplicationContent,
    hold: timedelta,
    cause: uuid.UUID | None,
    round_: int = 0,
) -> Event:
    """Hold the requested space in the firm's preference order (the zones check sector fit)."""
    return Event(
        "zone.hold",
        HoldZoneSpace(
            allocation_id=allocation_id(application_id, round_),
            application_id=application_id,
            firm_id=firm_id,
            sector=content.proposal.sector,
            requests=list(content.incentives.zone_space),
            allow_waitlist=True,
            hold_seconds=int(hold.total_seconds()),
        ),
        step=_step("zone_hold", round_),
        actor=_system(),
        causation=cause,
    )


def open_award(
    application_id: str,
    firm_id: str,
    offer: OfferView,
    budget: str,
    cause: uuid.UUID | None,
) -> Event:
    """Reserve the grant in the program budget with its tranche schedule."""
    assert offer.grant is not None
    assert offer.award_id is not None
    return Event(
        "award.open",
        OpenAward(
            award_id=offer.award_id,
            application_id=application_id,
            firm_id=firm_id,
            budget_id=budget,
            total=offer.grant,
            tranches=_wire_tranches(offer.tranches),
        ),
        step="award_open",
        actor=_system(),
        causation=cause,
    )


def charge_award(
    application_id: str,
    offer: OfferView,
    budget: str,
    accepted_at: datetime,
    actor: Actor,
    cause: uuid.UUID | None,
) -> Event:
    """Charge the award to the budget of the fiscal year in which the offer was accepted."""
    assert offer.award_id is not None
    return Event(
        "award.charge",
        ChargeAward(
            award_id=offer.award_id,
            application_id=application_id,
            budget_id=budget,
            accepted_at=accepted_at,
        ),
        step=f"award_charge:{budget}",
        actor=actor,
        causation=cause,
    )


def confirm_space(
    application_id: str, actor: Actor, cause: uuid.UUID | None, round_: int = 0
) -> Event:
    """The offer was accepted: the holds become allocations."""
    return Event(
        "zone.confirm",
        ConfirmZoneHold(
            allocation_id=allocation_id(application_id, round_), application_id=application_id
        ),
        step=_step("zone_confirm", round_),
        actor=actor,
        causation=cause,
    )


def release_tranche(
    application_id: str,
    offer: OfferView,
    sequence: int,
    approved_by: str,
    evidence: str | None,
    actor: Actor,
    cause: uuid.UUID | None,
) -> Event:
    """Pay tranche ``sequence``: the signing tranche on acceptance, the others when verified."""
    assert offer.award_id is not None
    return Event(
        "tranche.release",
        ReleaseTranche(
            award_id=offer.award_id,
            application_id=application_id,
            sequence=sequence,
            approved_by=approved_by,
            evidence=clip(evidence) if evidence else None,
        ),
        step=f"tranche_release:{sequence}",
        actor=actor,
        causation=cause,
    )


def release_space(
    application_id: str,
    reason_code: CompensationReason,
    reason: str,
    actor: Actor,
    cause: uuid.UUID | None,
    round_: int = 0,
) -> Event:
    """Compensation: give the held (or allocated) space back."""
    return Event(
        "zone.release",
        ReleaseZoneSpace(
            allocation_id=allocation_id(application_id, round_),
            application_id=application_id,
            reason_code=reason_code,
            reason=clip(reason),
        ),
        step=_step(f"zone_release:{reason_code.value}", round_),
        actor=actor,
        causation=cause,
    )


def cancel_award(
    application_id: str,
    offer: OfferView,
    reason_code: CompensationReason,
    reason: str,
    actor: Actor,
    cause: uuid.UUID | None,
    round_: int = 0,
) -> Event:
    """Compensation: cancel the award, releasing what was reserved and not paid (or take it
    off the budget's waitlist)."""
    assert offer.award_id is not None
    return Event(
        "award.cancel",
        CancelAward(
            award_id=offer.award_id,
            application_id=application_id,
            reason_code=reason_code,
            reason=clip(reason),
        ),
        step=_step(f"award_cancel:{reason_code.value}", round_),
        actor=actor,
        causation=cause,
    )


# --- events ------------------------------------------------------------------------------------


def offer_made(
    application_id: str, firm_id: str, offer: OfferView, cause: uuid.UUID | None
) -> Event:
    """The package the firm is offered (what is held, the grant, the tranches, the expiry)."""
    assert offer.offered_at is not None
    assert offer.expires_at is not None
    return Event(
        "application.offer_made",
        OfferMade(
            offer_id=offer.offer_id,
            application_id=application_id,
            firm_id=firm_id,
            space=list(offer.held),
            space_unavailable=list(offer.unavailable),
            grant=offer.grant,
            award_id=offer.award_id if offer.grant else None,
            tranches=_wire_tranches(offer.tranches),
            fast_track=list(offer.fast_track),
            fast_track_declined=list(offer.fast_track_declined),
            offered_at=offer.offered_at,
            expires_at=offer.expires_at,
        ),
        step="offer_made",
        actor=_system(),
        causation=cause,
    )


def offer_lapsed(application_id: str, firm_id: str, offer: OfferView, now: datetime) -> Event:
    """Nobody answered the offer in time."""
    return Event(
        "application.offer_lapsed",
        OfferLapsed(
            offer_id=offer.offer_id, application_id=application_id, firm_id=firm_id, lapsed_at=now
        ),
        step="offer_lapsed",
        actor=_system(),
        causation=None,
    )


def fast_track_granted(
    application_id: str,
    firm_id: str,
    item: FastTrackItem,
    now: datetime,
    validity: timedelta,
    cause: uuid.UUID | None,
) -> Event:
    """An approved fast-track item is granted for its validity period."""
    return Event(
        "application.fast_track_granted",
        FastTrackGranted(
            application_id=application_id,
            firm_id=firm_id,
            item=item,
            conditions=FAST_TRACK_CONDITIONS[item],
            valid_from=now,
            valid_until=now + validity,
        ),
        step=f"fast_track_granted:{item.value}",
        actor=_system(),
        causation=cause,
    )


def milestone_decided(application_id: str, milestone: Milestone, cause: uuid.UUID | None) -> Event:
    """A reviewer verified (or did not verify) a reported milestone."""
    assert milestone.reviewer_id is not None
    assert milestone.comment is not None
    assert milestone.decided_at is not None
    return Event(
        "application.milestone_verified",
        MilestoneVerified(
            report_id=milestone.report_id,
            application_id=application_id,
            sequence=milestone.sequence,
            verified=milestone.status.value == "verified",
            reviewer_id=milestone.reviewer_id,
            comment=clip(milestone.comment),
            decided_at=milestone.decided_at,
        ),
        step=f"milestone_decided:{milestone.report_id}",
        actor=Actor(kind=ActorKind.REVIEWER, id=milestone.reviewer_id),
        causation=cause,
    )


def award_completed(
    application_id: str, firm_id: str, offer: OfferView, now: datetime, cause: uuid.UUID | None
) -> Event:
    """The last tranche is paid: the award is closed."""
    paid = paid_total(offer)
    assert paid is not None
    assert offer.award_id is not None
    return Event(
        "application.award_completed",
        AwardCompleted(
            award_id=offer.award_id,
            application_id=application_id,
            firm_id=firm_id,
            paid=paid,
            completed_at=now,
        ),
        step="award_completed",
        actor=_system(),
        causation=cause,
    )


def compensated(
    application_id: str,
    firm_id: str,
    reason_code: CompensationReason,
    reason: str,
    *,
    space_released: bool,
    award_cancelled: bool,
    actor: Actor,
    now: datetime,
    cause: uuid.UUID | None,
    round_: int = 0,
    waitlisted: bool | None = None,
) -> Event:
    """The saga undid what the approval had set aside, naming who caused it.

    ``waitlisted`` (default: a budget shortfall waits) says whether the application waits for
    budget."""
    outcome = OUTCOMES[reason_code]
    return Event(
        "application.compensated",
        ApplicationCompensated(
            application_id=application_id,
            firm_id=firm_id,
            reason_code=reason_code,
            reason=clip(reason),
            space_released=space_released,
            award_cancelled=award_cancelled,
            outcome=outcome.value,
            waitlisted_for_budget=(
                reason_code is CompensationReason.BUDGET_EXHAUSTED
                if waitlisted is None
                else waitlisted
            ),
            compensated_at=now,
        ),
        step=_step(f"compensated:{reason_code.value}", round_),
        actor=actor,
        causation=cause,
    )
