"""After the committee: the offer, the firm's answer, the award, milestones and the saga.

Time-skipping runs with fake activities; the zones and disbursement services are played by
the test, which delivers their facts as the bridge would (the ``fact`` signal).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from contracts.envelope import ActorKind, deterministic_event_id
from contracts.money import Money
from contracts.v1.common import (
    CompensationReason,
    Decision,
    FastTrackDeclined,
    FastTrackItem,
    ReviewStage,
    ZoneRefusalReason,
)
from contracts.v1.desk import DecisionRefusal
from contracts.v1.disbursement import BudgetExhausted
from contracts.v1.offers import OfferDeclined
from contracts.v1.zones import ZoneRefused
from tests.workflows.scenarios import (
    COMMITTEE,
    FIRM_ID,
    FIRM_USER,
    HADDAD,
    SILVA,
    TANAKA,
    WEBER,
    Harness,
    accepted,
    offered_before_the_year_end,
    open_task,
    verify,
    withdrawal,
)
from tests.workflows.scenarios import eligible_run as start
from workflows.approval import IncentiveApproval
from workflows.inputs import ApprovalPolicy, CancellationSignal, RefusalSignal
from workflows.state import MilestoneStatus, Phase, TrancheStatus


async def test_offer_package_names_space_grant_tranches_and_expiry(h: Harness) -> None:
    handle = await start(h)
    offer = await h.offered(handle)
    made = offer.payload
    assert made.firm_id == FIRM_ID
    assert {(u.unit_type.value, u.quantity) for u in made.space} == {
        ("gpu_rack_unit", 4),
        ("office_seat", 25),
    }
    assert made.grant == Money.of("250000.00", "EUR")
    assert [(t.milestone, t.amount.amount) for t in made.tranches] == [
        ("signing", Decimal("100000.00")),
        ("milestone 1", Decimal("75000.00")),
        ("milestone 2", Decimal("75000.00")),
    ]
    assert made.expires_at - made.offered_at == timedelta(days=14)
    assert offer.event_id == deterministic_event_id(handle.id, "offer_made")
    state = await h.state(handle)
    assert state.phase is Phase.OFFERED
    hold = h.publisher.envelopes(handle.id, "zone.hold")[0].payload
    assert hold.sector == "health"
    assert hold.hold_seconds == 15 * 24 * 3600, "the hold outlives the offer"
    award = h.publisher.envelopes(handle.id, "award.open")[0].payload
    assert award.budget_id == f"grant-{datetime.now(UTC).year}"


async def test_refused_space_is_left_out_of_the_offer(h: Harness) -> None:
    handle = await start(h)
    await h.reach_quorum(handle)
    (hold,) = await h.until_published_type(handle, "zone.hold")
    now = datetime.now(UTC)
    await h.fact(
        handle,
        ZoneRefused(
            allocation_id=hold.payload.allocation_id,
            application_id=handle.id,
            reason_code=ZoneRefusalReason.NO_CAPACITY,
            reason="No zone suits the health sector with that much space.",
            refused_at=now,
        ),
    )
    await h.award_opened(handle)
    (offer,) = await h.until_published_type(handle, "application.offer_made")
    assert offer.payload.space == []
    assert offer.payload.space_unavailable == hold.payload.requests
    await h.accept(handle, offer.payload.offer_id)
    await h.until_published_type(handle, "tranche.release")
    assert h.publisher.envelopes(handle.id, "zone.confirm") == [], "nothing held to confirm"


async def test_accept_allocates_grants_fast_track_and_pays_signing(h: Harness) -> None:
    handle = await start(h)
    offer = await h.offered(handle)
    accept_id = await h.accept(handle, offer.payload.offer_id)
    (confirm,) = await h.until_published_type(handle, "zone.confirm")
    (granted,) = await h.until_published_type(handle, "application.fast_track_granted")
    (release,) = await h.until_published_type(handle, "tranche.release")
    assert confirm.actor.id == FIRM_USER
    assert confirm.actor.kind is ActorKind.FIRM
    assert confirm.causation_id == uuid.UUID(accept_id)
    assert granted.payload.item == "sandbox_access"
    assert granted.payload.valid_until - granted.payload.valid_from == timedelta(days=365)
    assert release.payload.sequence == 1
    state = await h.state(handle)
    assert state.phase is Phase.AWARDED
    await h.paid(handle, 1)
    state = await h.until(
        handle, lambda s: s.offer is not None and s.offer.tranches[0].status is TrancheStatus.PAID
    )
    assert [t.status for t in state.offer.tranches] == [  # type: ignore[union-attr]
        TrancheStatus.PAID,
        TrancheStatus.SCHEDULED,
        TrancheStatus.SCHEDULED,
    ]


async def test_declined_offer_releases_space_and_cancels_the_award(h: Harness) -> None:
    handle = await start(h)
    offer = await h.offered(handle)
    await h.fact(
        handle,
        OfferDeclined(
            offer_id=offer.payload.offer_id,
            application_id=handle.id,
            firm_id=FIRM_ID,
            reason="We settled elsewhere.",
            declined_at=datetime.now(UTC),
        ),
        actor_id=FIRM_USER,
    )
    final = await handle.result()
    assert final.phase is Phase.DECLINED
    (release,) = h.publisher.envelopes(handle.id, "zone.release")
    (cancel,) = h.publisher.envelopes(handle.id, "award.cancel")
    (done,) = h.publisher.envelopes(handle.id, "application.compensated")
    for e in (release, cancel, done):
        assert e.actor.id == FIRM_USER
        assert e.payload.reason_code is CompensationReason.OFFER_DECLINED
    assert done.payload.space_released
    assert done.payload.award_cancelled
    assert done.payload.outcome == "declined"
    assert done.payload.reason == "We settled elsewhere."


async def test_unanswered_offer_lapses_after_the_offer_period(h: Harness) -> None:
    handle = await start(h, policy=ApprovalPolicy(offer_days=10))
    await h.offered(handle)
    final = await handle.result()  # the time-skipping handle jumps over the ten days
    assert final.phase is Phase.LAPSED
    (lapsed,) = h.publisher.envelopes(handle.id, "application.offer_lapsed")
    made = h.publisher.envelopes(handle.id, "application.offer_made")[0].payload
    assert lapsed.payload.lapsed_at >= made.expires_at
    (done,) = h.publisher.envelopes(handle.id, "application.compensated")
    assert done.actor.id == "system:workflows"
    assert done.payload.reason_code is CompensationReason.OFFER_LAPSED
    assert [e.payload.reason_code for e in h.publisher.envelopes(handle.id, "award.cancel")] == [
        CompensationReason.OFFER_LAPSED
    ]
    assert len(h.publisher.envelopes(handle.id, "zone.release")) == 1


async def test_budget_shortfall_releases_the_hold_and_ends_unfunded(h: Harness) -> None:
    handle = await start(h)
    await h.reach_quorum(handle)
    await h.budget_short(handle)
    final = await handle.result()
    assert final.phase is Phase.UNFUNDED
    assert final.reasons
    assert "waits for budget" in final.reasons[0]
    (release,) = h.publisher.envelopes(handle.id, "zone.release")
    assert release.payload.reason_code is CompensationReason.BUDGET_EXHAUSTED
    assert h.publisher.envelopes(handle.id, "application.offer_made") == []
    (done,) = h.publisher.envelopes(handle.id, "application.compensated")
    assert done.payload.outcome == "approved_unfunded"
    assert done.payload.waitlisted_for_budget is True
    assert done.payload.award_cancelled is False, "nothing was reserved"
    assert done.actor.id == "system:workflows"
    # The time-skipping handle jumped over the budget wait: the award leaves the waitlist.
    (cancel,) = h.publisher.envelopes(handle.id, "award.cancel")
    assert cancel.payload.reason_code is CompensationReason.BUDGET_EXHAUSTED
    assert "No budget became available within 365 days" in cancel.payload.reason
    assert "no longer waits for budget" in final.reasons[0]


async def test_a_top_up_that_opens_the_award_holds_the_space_again_and_offers_it(
    h: Harness,
) -> None:
    handle = await start(h)
    await h.reach_quorum(handle)
    await h.held(handle)
    await h.budget_short(handle)
    state = await h.until(handle, lambda s: s.phase is Phase.UNFUNDED)
    assert "waits for budget" in state.reasons[0]
    await h.award_opened(handle)  # a top-up opened it, first come first served
    second = await h.held(handle, 2)
    first = h.publisher.envelopes(handle.id, "zone.hold")[0]
    assert second.payload.allocation_id != first.payload.allocation_id, "a fresh allocation"
    assert second.event_id == deterministic_event_id(handle.id, "zone_hold:1")
    (offer,) = await h.until_published_type(handle, "application.offer_made")
    assert offer.payload.award_id == first.payload.allocation_id.replace("alloc_", "award_")
    assert len(h.publisher.envelopes(handle.id, "award.open")) == 1, "the award waited"
    await h.accept(handle, offer.payload.offer_id)
    (confirm,) = await h.until_published_type(handle, "zone.confirm")
    assert confirm.payload.allocation_id == second.payload.allocation_id
    (release,) = await h.until_published_type(handle, "tranche.release")
    assert release.payload.sequence == 1
    assert (await h.state(handle)).phase is Phase.AWARDED


async def test_an_award_waiting_across_the_year_end_opens_on_the_new_years_budget(
    h: Harness,
) -> None:
    now = await h.env.get_current_time()
    eve = datetime(now.year, 12, 31, 12, tzinfo=UTC)
    if now > eve - timedelta(hours=1):
        eve = datetime(now.year + 1, 12, 31, 12, tzinfo=UTC)
    await h.env.sleep(eve - now)
    handle = await start(h)
    await h.reach_quorum(handle)
    await h.held(handle)
    await h.budget_short(handle)
    (award,) = h.publisher.envelopes(handle.id, "award.open")
    assert award.payload.budget_id == f"grant-{eve.year}"
    await h.until(handle, lambda s: s.phase is Phase.UNFUNDED)
    new_year = datetime(eve.year + 1, 1, 2, 9, tzinfo=UTC)
    await h.env.sleep(new_year - await h.env.get_current_time())
    # The new year's budget opened the award that waited for last year's.
    await h.award_opened(handle, budget_id=f"grant-{new_year.year}")
    await h.held(handle, 2)
    (offer,) = await h.until_published_type(handle, "application.offer_made")
    await h.accept(handle, offer.payload.offer_id, await h.env.get_current_time())
    (release,) = await h.until_published_type(handle, "tranche.release")
    assert release.payload.sequence == 1
    assert h.publisher.envelopes(handle.id, "award.charge") == [], "charged to this year already"
    state = await h.state(handle)
    assert state.phase is Phase.AWARDED
    assert state.offer is not None
    assert state.offer.budget_id == f"grant-{new_year.year}"


async def test_a_withdrawal_while_waiting_for_budget_takes_the_award_off_the_waitlist(
    h: Harness,
) -> None:
    handle = await start(h)
    await h.reach_quorum(handle)
    await h.budget_short(handle)
    await h.until(handle, lambda s: s.phase is Phase.UNFUNDED)
    await h.until_published_type(handle, "application.compensated")
    await handle.signal(IncentiveApproval.withdrawn, withdrawal("Plans changed."))
    final = await handle.result()
    assert final.phase is Phase.WITHDRAWN
    (cancel,) = h.publisher.envelopes(handle.id, "award.cancel")
    assert cancel.payload.reason_code is CompensationReason.APPLICATION_WITHDRAWN
    assert len(h.publisher.envelopes(handle.id, "zone.release")) == 1, "released once"
    assert [
        e.payload.outcome for e in h.publisher.envelopes(handle.id, "application.compensated")
    ] == [
        "approved_unfunded",
        "withdrawn",
    ]


async def test_withdrawal_during_the_offer_releases_and_cancels(h: Harness) -> None:
    handle = await start(h)
    await h.offered(handle)
    await handle.signal(IncentiveApproval.withdrawn, withdrawal("Plans changed."))
    final = await handle.result()
    assert final.phase is Phase.WITHDRAWN
    (done,) = h.publisher.envelopes(handle.id, "application.compensated")
    assert done.actor.id == FIRM_ID
    assert done.payload.reason_code is CompensationReason.APPLICATION_WITHDRAWN
    assert done.payload.space_released
    assert done.payload.award_cancelled
    assert len(h.publisher.envelopes(handle.id, "award.cancel")) == 1


async def test_withdrawal_before_the_reservation_is_confirmed_still_cancels_the_award(
    h: Harness,
) -> None:
    handle = await start(h)
    await h.reach_quorum(handle)
    await h.until_published_type(handle, "award.open")
    await handle.signal(IncentiveApproval.withdrawn, withdrawal("Plans changed."))
    final = await handle.result()
    assert final.phase is Phase.WITHDRAWN
    assert h.publisher.envelopes(handle.id, "application.offer_made") == []
    (cancel,) = h.publisher.envelopes(handle.id, "award.cancel")
    (release,) = h.publisher.envelopes(handle.id, "zone.release")
    assert cancel.payload.reason_code is release.payload.reason_code
    assert cancel.payload.reason_code is CompensationReason.APPLICATION_WITHDRAWN


async def test_administrative_cancellation_after_acceptance_names_the_admin(h: Harness) -> None:
    handle = await start(h)
    await accepted(h, handle)
    await handle.signal(
        IncentiveApproval.cancelled,
        CancellationSignal(
            event_id=str(uuid.uuid4()), reason="Fraud finding.", actor_id="admin@gaip.example"
        ),
    )
    final = await handle.result()
    assert final.phase is Phase.CANCELLED
    (cancel,) = h.publisher.envelopes(handle.id, "award.cancel")
    assert cancel.actor.kind is ActorKind.ADMIN
    assert cancel.actor.id == "admin@gaip.example"
    assert final.offer is not None
    assert [t.status for t in final.offer.tranches] == [
        TrancheStatus.PAID,
        TrancheStatus.CANCELLED,
        TrancheStatus.CANCELLED,
    ]


async def test_verified_milestone_releases_the_next_tranche(h: Harness) -> None:
    handle = await start(h)
    await accepted(h, handle)
    state = await verify(h, handle, 2)
    task = open_task(state, WEBER, ReviewStage.MILESTONE)
    assert task is not None
    (assigned,) = [
        e
        for e in h.publisher.envelopes(handle.id, "review.task_assigned")
        if e.payload.stage is ReviewStage.MILESTONE
    ]
    assert assigned.payload.reviewer_id == WEBER
    releases = await h.until_published_type(handle, "tranche.release", 2)
    assert releases[1].payload.sequence == 2
    assert releases[1].payload.approved_by == WEBER
    assert releases[1].actor.kind is ActorKind.REVIEWER
    (verified,) = h.publisher.envelopes(handle.id, "application.milestone_verified")
    assert verified.payload.verified is True
    assert verified.actor.id == WEBER


async def test_rejected_milestone_goes_back_to_the_firm_with_the_reason(h: Harness) -> None:
    handle = await start(h)
    await accepted(h, handle)
    await verify(h, handle, 2, Decision.REJECT)
    (decided,) = await h.until_published_type(handle, "application.milestone_verified")
    assert decided.payload.verified is False
    assert decided.payload.comment == "reject: site visit"
    state = await h.state(handle)
    assert state.offer is not None
    assert state.offer.milestones[0].status is MilestoneStatus.REJECTED
    assert len(h.publisher.envelopes(handle.id, "tranche.release")) == 1, "no second tranche"
    # The firm reports again; this time it is verified.
    await verify(h, handle, 2)
    await h.until_published_type(handle, "tranche.release", 2)


async def test_milestone_verifier_follows_the_review_rules(h: Harness) -> None:
    handle = await start(h)
    await accepted(h, handle)
    await h.report(handle, 2)
    state = await h.until(handle, lambda s: ReviewStage.MILESTONE in s.open_stages)
    task = open_task(state, WEBER, ReviewStage.MILESTONE)
    assert task is not None
    # Tanaka decided the technical stage: one person decides at most one stage.
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await h.decide(handle, TANAKA, ReviewStage.MILESTONE, task_id=task.task_id)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == DecisionRefusal.SEPARATION_OF_DUTIES
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await h.decide(handle, WEBER, ReviewStage.MILESTONE, Decision.REQUEST_INFORMATION)
    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.type == DecisionRefusal.INVALID_REQUEST


async def test_last_tranche_paid_closes_the_award(h: Harness) -> None:
    handle = await start(h)
    await accepted(h, handle)
    for sequence in (2, 3):
        await verify(h, handle, sequence)
        await h.paid(handle, sequence)
    final = await handle.result()
    assert final.phase is Phase.COMPLETED
    (done,) = h.publisher.envelopes(handle.id, "application.award_completed")
    assert done.payload.paid == Money.of("250000.00", "EUR")
    assert final.offer is not None
    assert all(t.status is TrancheStatus.PAID for t in final.offer.tranches)


async def test_a_release_seen_after_its_payment_leaves_the_tranche_paid(h: Harness) -> None:
    """A broker's restart can make the bridge forward a tranche's release after its payment."""
    handle = await start(h)
    await accepted(h, handle)
    await verify(h, handle, 2)
    await h.paid(handle, 2)
    for sequence in (1, 2):
        await h.released(handle, sequence)
    state = await h.state(handle)
    assert state.offer is not None
    assert [t.status for t in state.offer.tranches][:2] == [TrancheStatus.PAID] * 2
    await verify(h, handle, 3)
    await h.paid(handle, 3)
    final = await handle.result()
    assert final.phase is Phase.COMPLETED
    assert len(h.publisher.envelopes(handle.id, "application.award_completed")) == 1


async def test_long_milestone_waits_continue_as_new(h: Harness) -> None:
    handle = await start(h, policy=ApprovalPolicy(history_fact_limit=10))
    await accepted(h, handle)
    first_run = (await handle.describe()).run_id
    await h.until(handle, lambda s: s.phase is Phase.AWARDED)
    # The next report reaches the continued run, which still knows the award and the rules.
    await verify(h, handle, 2)
    await h.until_published_type(handle, "tranche.release", 2)
    # The run continues as new once the release is out and no fact waits.
    await h.until_continued(handle, first_run)
    await h.paid(handle, 2)
    await verify(h, handle, 3)  # Weber again: the reviewers of the review stages stay barred
    await h.paid(handle, 3)
    final = await handle.result()  # follows the continued runs
    assert final.phase is Phase.COMPLETED


async def test_a_refused_hold_releases_cancels_and_tells_the_firm(h: Harness) -> None:
    handle = await start(h)
    await h.reach_quorum(handle)
    (hold,) = await h.until_published_type(handle, "zone.hold")
    await h.until_published_type(handle, "award.open")
    refusal = RefusalSignal(
        event_id=str(deterministic_event_id(str(hold.event_id), "command_refused")),
        command_type="zone.hold",
        reason="business_refusal",
        error="zone-north-tech-park has no gpu_rack_unit.",
        consumer="zones",
    )
    await handle.signal(IncentiveApproval.command_refused, refusal)
    await handle.signal(IncentiveApproval.command_refused, refusal)  # redelivered: ignored
    final = await handle.result()
    assert final.phase is Phase.CANCELLED
    assert h.publisher.envelopes(handle.id, "application.offer_made") == []
    (release,) = h.publisher.envelopes(handle.id, "zone.release")
    (cancel,) = h.publisher.envelopes(handle.id, "award.cancel")
    (done,) = h.publisher.envelopes(handle.id, "application.compensated")
    for e in (release, cancel, done):
        assert e.payload.reason_code is CompensationReason.COMMAND_REFUSED
        assert e.actor.id == "system:workflows"
        assert e.causation_id == uuid.UUID(refusal.event_id)
    assert done.payload.outcome == "cancelled"
    assert done.payload.reason.startswith(
        "The zones service could not hold the requested space: "
        "zone-north-tech-park has no gpu_rack_unit."
    )


async def test_a_refused_tranche_release_cancels_what_is_unpaid(h: Harness) -> None:
    handle = await start(h)
    await accepted(h, handle)
    (release,) = h.publisher.envelopes(handle.id, "tranche.release")
    await handle.signal(
        IncentiveApproval.command_refused,
        RefusalSignal(
            event_id=str(deterministic_event_id(str(release.event_id), "command_refused")),
            command_type="tranche.release",
            reason="business_refusal",
            error="",
        ),
    )
    final = await handle.result()
    assert final.phase is Phase.CANCELLED
    (done,) = h.publisher.envelopes(handle.id, "application.compensated")
    assert done.payload.award_cancelled
    assert done.payload.reason.startswith(
        "The disbursement service could not release a tranche for payment."
    )
    assert final.offer is not None
    assert [t.status for t in final.offer.tranches] == [
        TrancheStatus.PAID,
        TrancheStatus.CANCELLED,
        TrancheStatus.CANCELLED,
    ]


async def test_an_offer_accepted_in_the_next_fiscal_year_is_charged_to_that_years_budget(
    h: Harness,
) -> None:
    handle, offer_id, accepted_at = await offered_before_the_year_end(h)
    (award,) = h.publisher.envelopes(handle.id, "award.open")
    assert award.payload.budget_id == f"grant-{accepted_at.year - 1}", "reserved when offered"
    accept_id = await h.accept(handle, offer_id, accepted_at)
    (charge,) = await h.until_published_type(handle, "award.charge")
    assert charge.payload.budget_id == f"grant-{accepted_at.year}"
    assert charge.payload.award_id == award.payload.award_id
    assert charge.actor.id == FIRM_USER
    assert charge.causation_id == uuid.UUID(accept_id)
    assert h.publisher.envelopes(handle.id, "tranche.release") == [], "paid only once charged"
    await h.charged(handle)
    (release,) = await h.until_published_type(handle, "tranche.release")
    assert release.payload.sequence == 1
    await h.until_published_type(handle, "zone.confirm")
    state = await h.state(handle)
    assert state.phase is Phase.AWARDED
    assert state.offer is not None
    assert state.offer.budget_id == f"grant-{accepted_at.year}"


async def test_an_offer_accepted_within_the_year_is_not_charged_again(h: Harness) -> None:
    handle = await start(h)
    await accepted(h, handle)
    assert h.publisher.envelopes(handle.id, "award.charge") == []


async def test_a_next_year_budget_short_of_the_grant_cancels_the_award_and_waits_for_budget(
    h: Harness,
) -> None:
    handle, offer_id, accepted_at = await offered_before_the_year_end(h)
    await h.accept(handle, offer_id, accepted_at)
    (charge,) = await h.until_published_type(handle, "award.charge")
    (award,) = h.publisher.envelopes(handle.id, "award.open")
    await h.fact(
        handle,
        BudgetExhausted(
            budget_id=charge.payload.budget_id,
            award_id=charge.payload.award_id,
            application_id=handle.id,
            requested=award.payload.total,
            available=Money.of("1000.00", "EUR"),
            detected_at=accepted_at,
        ),
        actor_id="system:disbursement",
    )
    final = await handle.result()
    assert final.phase is Phase.UNFUNDED
    assert h.publisher.envelopes(handle.id, "tranche.release") == []
    (cancel,) = h.publisher.envelopes(handle.id, "award.cancel")
    assert cancel.payload.reason_code is CompensationReason.BUDGET_EXHAUSTED
    (done,) = h.publisher.envelopes(handle.id, "application.compensated")
    assert done.payload.award_cancelled, "the reservation in the old budget is given back"
    assert done.payload.space_released
    assert done.payload.waitlisted_for_budget is False, "nothing waits: the award is cancelled"


async def test_a_fast_track_item_the_committee_did_not_approve_is_declined_with_the_reason(
    h: Harness,
) -> None:
    handle = await start(h)
    await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    sandbox = FastTrackDeclined(
        item=FastTrackItem.SANDBOX_ACCESS, reason="The supervision plan is missing."
    )
    with pytest.raises(WorkflowUpdateFailedError) as caught:  # only the committee decides items
        await h.decide(handle, TANAKA, ReviewStage.TECHNICAL, fast_track_declined=[sandbox])
    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.type == DecisionRefusal.INVALID_REQUEST
    await h.decide(handle, TANAKA, ReviewStage.TECHNICAL)
    await h.decide(handle, SILVA, ReviewStage.SECURITY)
    await h.until_open(handle, ReviewStage.FINANCE)
    await h.decide(handle, HADDAD, ReviewStage.FINANCE)
    await h.until_open(handle, ReviewStage.COMMITTEE)
    permit = FastTrackDeclined(item=FastTrackItem.EXPEDITED_PERMIT, reason="Not asked for.")
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await h.decide(handle, COMMITTEE[0], ReviewStage.COMMITTEE, fast_track_declined=[permit])
    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.type == DecisionRefusal.INVALID_REQUEST
    # One of the two approving members declines the sandbox: short of the quorum of two.
    await h.decide(handle, COMMITTEE[0], ReviewStage.COMMITTEE, fast_track_declined=[sandbox])
    await h.decide(handle, COMMITTEE[1], ReviewStage.COMMITTEE)
    await h.held_and_reserved(handle)
    (offer,) = await h.until_published_type(handle, "application.offer_made")
    assert offer.payload.fast_track == []
    assert offer.payload.fast_track_declined == [sandbox]
    await h.accept(handle, offer.payload.offer_id)
    await h.until_published_type(handle, "tranche.release")
    assert h.publisher.envelopes(handle.id, "application.fast_track_granted") == []
