"""IncentiveApproval's stage machine on the time-skipping server, with fake activities."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import CancelledError

from contracts.envelope import ActorKind, deterministic_event_id
from contracts.v1.common import Decision, EligibilityOutcome, ReviewStage
from contracts.v1.desk import ReviewerRole
from tests.workflows.scenarios import (
    COMMITTEE,
    HADDAD,
    OKAFOR,
    ROSTER,
    SILVA,
    TANAKA,
    FakeDesk,
    Handle,
    Harness,
    content,
    eligibility,
    open_task,
    withdrawal,
)
from workflows import policy
from workflows.approval import IncentiveApproval
from workflows.inputs import ApprovalPolicy, SubmittedSignal
from workflows.state import Phase, StageStatus, TaskStatus


async def start_eligible(h: Harness, policy: ApprovalPolicy | None = None) -> Handle:
    """A run whose submission passed eligibility: the review stages open next."""
    handle = await h.start(policy=policy)
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(handle.id, EligibilityOutcome.ELIGIBLE),
    )
    return handle


# --- eligibility ----------------------------------------------------------------------------------


async def test_ineligible_application_is_rejected_with_failed_rules(h: Harness) -> None:
    handle = await h.start()
    signal = eligibility(handle.id, EligibilityOutcome.INELIGIBLE)
    await handle.signal(IncentiveApproval.eligibility_assessed, signal)
    await handle.signal(IncentiveApproval.eligibility_assessed, signal)  # redelivered
    state = await handle.result()

    assert state.phase is Phase.REJECTED
    assert state.reasons == ["The investment commitment must be at least EUR 1,000,000."]
    assert len(h.publisher.messages) == 1, "one rejection, whatever the redeliveries"
    message = h.publisher.messages[0]
    assert message.topic == "approvals.events"
    assert message.key == handle.id
    (envelope,) = h.publisher.envelopes(handle.id)
    assert envelope.type == "application.rejected"
    assert envelope.actor.id == "system:eligibility"
    assert envelope.producer == "workflows"
    assert envelope.payload.decided_by == "system:eligibility"
    assert envelope.payload.firm_id == "ACME"
    assert envelope.causation_id == uuid.UUID(signal.event_id)
    # A retried activity or a replay republishes the very same id.
    assert envelope.event_id == deterministic_event_id(handle.id, "rejected:eligibility")
    assert h.desk.calls == [], "nobody is assigned to an ineligible application"


async def test_decision_arriving_before_submission_waits_for_it(h: Harness) -> None:
    """The bridge reads two topics, so eligibility may start the workflow first."""
    app_id = f"app_{uuid.uuid4().hex[:10]}"
    handle = await h.start(
        app_id,
        signal="eligibility_assessed",
        argument=eligibility(app_id, EligibilityOutcome.INELIGIBLE),
    )
    state = await h.state(handle)
    assert state.phase is Phase.AWAITING_ELIGIBILITY
    assert h.publisher.messages == [], "no firm id yet, so nothing can be published"
    submitted = SubmittedSignal(
        event_id=str(uuid.uuid4()),
        firm_id="ACME",
        revision=1,
        content=content(),
    )
    await handle.signal(IncentiveApproval.submitted, submitted)
    final = await handle.result()
    assert final.phase is Phase.REJECTED
    assert json.loads(h.publisher.messages[0].value)["payload"]["firm_id"] == "ACME"


# --- the full journey -----------------------------------------------------------------------------


async def test_full_approval_emits_every_transition_with_its_actor(h: Harness) -> None:
    handle = await start_eligible(h)
    app_id = handle.id
    final = await h.approve_all(handle)

    assert final.phase is Phase.APPROVED
    assert final.open_stages == []
    assert [s.status for s in final.stages] == [StageStatus.APPROVED] * 4
    events = h.publisher.envelopes(app_id)
    kinds = [(e.type, getattr(e.payload, "stage", None)) for e in events]
    T, S, F, C = (ReviewStage.TECHNICAL, ReviewStage.SECURITY, ReviewStage.FINANCE,
                  ReviewStage.COMMITTEE)  # fmt: skip
    assert kinds == [
        ("review.task_assigned", T),
        ("review.task_assigned", S),
        ("review.decision_recorded", T),
        ("review.decision_recorded", S),
        ("review.task_assigned", F),
        ("review.decision_recorded", F),
        ("review.task_assigned", C),
        ("review.task_assigned", C),
        ("review.task_assigned", C),
        ("review.decision_recorded", C),
        ("review.decision_recorded", C),
        ("review.task_cancelled", C),
        ("application.approved", None),
        ("zone.hold", None),
        ("award.open", None),
    ]
    assigned = [e.payload for e in events if e.type == "review.task_assigned"]
    assert [(a.stage, a.reviewer_id) for a in assigned] == [
        (T, TANAKA),
        (S, SILVA),
        (F, HADDAD),
        *((C, member) for member in COMMITTEE),
    ], "sorted ids, no conflict (novak owns part of the parent), one stage per person"
    for a in assigned:
        assert a.due_at - a.assigned_at == timedelta(days=14)
        assert a.summary.firm_legal_name == "Acme Vision AI GmbH"
        assert (a.quorum is not None) is (a.stage is C)
        assert a.task_id == policy.task_id(app_id, a.stage, a.reviewer_id, 0)
    assert assigned[-1].quorum is not None
    assert (assigned[-1].quorum.required, assigned[-1].quorum.members) == (2, 3)

    # Actors: reviewers for their decisions, the workflow for what it does by itself.
    for e in events:
        if e.type == "review.decision_recorded":
            assert e.actor.kind is ActorKind.REVIEWER
            assert e.actor.id == e.payload.reviewer_id
        else:
            assert e.actor.id == "system:workflows"
    cancelled = next(e for e in events if e.type == "review.task_cancelled")
    assert cancelled.payload.reviewer_id == COMMITTEE[2]
    assert cancelled.payload.reason == "The committee reached 2 of 3 approvals."

    approved, hold, award = events[-3:]
    assert approved.event_id == deterministic_event_id(app_id, "approved")
    # The approval causes the hold of the space and the reservation of the grant.
    assert hold.causation_id == award.causation_id == approved.event_id
    assert hold.payload.requests == approved.payload.zone_space
    assert award.payload.total == approved.payload.grant
    assert [(a.stage, a.reviewer_id) for a in approved.payload.approvals] == [
        (T, TANAKA),
        (S, SILVA),
        (F, HADDAD),
        (C, COMMITTEE[0]),
        (C, COMMITTEE[1]),
    ]
    assert (approved.payload.quorum.required, approved.payload.quorum.members) == (2, 3)
    assert approved.payload.grant is not None
    assert approved.payload.fast_track == ["sandbox_access"]
    # The approval follows from the decision that reached the quorum.
    last_decision = [e for e in events if e.type == "review.decision_recorded"][-1]
    assert approved.causation_id == last_decision.event_id
    assert all(e.correlation_id == events[0].correlation_id for e in events)
    topics = {m.topic for m in h.publisher.messages}
    assert topics == {
        "review.events",
        "approvals.events",
        "zones.commands",
        "disbursement.commands",
    }
    # One candidates call per stage role (the parallel pair concurrently): none asked twice.
    roles = [c.role for c in h.desk.calls]
    assert set(roles[:2]) == {ReviewerRole.TECHNICAL, ReviewerRole.SECURITY}
    assert roles[2:] == [ReviewerRole.FINANCE, ReviewerRole.COMMITTEE]


async def test_technical_and_security_run_in_parallel(h: Harness) -> None:
    handle = await start_eligible(h)
    state = await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    assert state.phase is Phase.TECHNICAL_SECURITY_REVIEW
    assert state.assignments == {ReviewStage.TECHNICAL: [TANAKA], ReviewStage.SECURITY: [SILVA]}

    # Security may decide first; finance waits for both.
    outcome = await h.decide(handle, SILVA, ReviewStage.SECURITY)
    assert outcome.stage_closed is True
    assert outcome.application_phase == "technical_security_review"
    state = await h.state(handle)
    assert state.open_stages == [ReviewStage.TECHNICAL]
    assert open_task(state, HADDAD, ReviewStage.FINANCE) is None

    outcome = await h.decide(handle, TANAKA, ReviewStage.TECHNICAL)
    assert outcome.application_phase == "finance_review"
    state = await h.until_open(handle, ReviewStage.FINANCE)
    assert state.phase is Phase.FINANCE_REVIEW
    assert state.assignments == {ReviewStage.FINANCE: [HADDAD]}
    assert [(d.stage, d.reviewer_id) for d in state.decisions] == [
        (ReviewStage.SECURITY, SILVA),
        (ReviewStage.TECHNICAL, TANAKA),
    ]


async def test_committee_quorum_is_configurable(desk: FakeDesk, h: Harness) -> None:
    desk.profiles.append(ROSTER[3].model_copy(update={"reviewer_id": "rev.lindqvist@gaip.example"}))
    rule = ApprovalPolicy(committee_required=3, committee_members=4)
    handle = await start_eligible(h, policy=rule)
    await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    await h.decide(handle, TANAKA, ReviewStage.TECHNICAL)
    await h.decide(handle, SILVA, ReviewStage.SECURITY)
    await h.until_open(handle, ReviewStage.FINANCE)
    await h.decide(handle, HADDAD, ReviewStage.FINANCE)
    state = await h.until_open(handle, ReviewStage.COMMITTEE)
    members = state.assignments[ReviewStage.COMMITTEE]
    assert members == sorted(members)
    assert len(members) == 4

    for count, member in enumerate(members[:2], start=1):
        outcome = await h.decide(handle, member, ReviewStage.COMMITTEE)
        assert outcome.stage_closed is False, f"{count} of 3 approvals is no quorum"
        assert outcome.application_phase == "committee_review"
    outcome = await h.decide(handle, members[2], ReviewStage.COMMITTEE)
    assert outcome.stage_closed is True
    assert outcome.application_phase == "approved"
    final = await h.until_approved(handle)
    assert final.phase is Phase.APPROVED
    approved = h.publisher.envelopes(handle.id, "application.approved")[0].payload
    assert (approved.quorum.required, approved.quorum.members) == (3, 4)
    assert [a.reviewer_id for a in approved.approvals if a.stage is ReviewStage.COMMITTEE] == (
        members[:3]
    )
    (cancelled,) = h.publisher.envelopes(handle.id, "review.task_cancelled")
    assert cancelled.payload.reviewer_id == members[3]


async def test_committee_rejects_once_the_quorum_is_out_of_reach(h: Harness) -> None:
    handle = await start_eligible(h)
    await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    await h.decide(handle, TANAKA, ReviewStage.TECHNICAL)
    await h.decide(handle, SILVA, ReviewStage.SECURITY)
    await h.until_open(handle, ReviewStage.FINANCE)
    await h.decide(handle, HADDAD, ReviewStage.FINANCE)
    await h.until_open(handle, ReviewStage.COMMITTEE)

    first = await h.decide(
        handle, COMMITTEE[0], ReviewStage.COMMITTEE, Decision.REJECT, comment="Too early."
    )
    assert first.stage_closed is False, "2 of 3 is still reachable"
    second = await h.decide(
        handle, COMMITTEE[1], ReviewStage.COMMITTEE, Decision.REJECT, comment="No local impact."
    )
    assert second.stage_closed is True
    assert second.application_phase == "rejected"
    final = await handle.result()
    assert final.phase is Phase.REJECTED
    assert final.reasons == ["Too early.", "No local impact."]
    rejected = h.publisher.envelopes(handle.id, "application.rejected")[0]
    assert rejected.payload.stage.value == "committee"
    assert rejected.payload.decided_by == COMMITTEE[1]
    assert rejected.actor.id == COMMITTEE[1]
    (cancelled,) = h.publisher.envelopes(handle.id, "review.task_cancelled")
    assert cancelled.payload.reviewer_id == COMMITTEE[2]


async def test_a_rejecting_stage_ends_the_journey_and_cancels_the_parallel_task(
    h: Harness,
) -> None:
    handle = await start_eligible(h)
    await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    outcome = await h.decide(
        handle, TANAKA, ReviewStage.TECHNICAL, Decision.REJECT, comment="No evaluation plan."
    )
    assert outcome.stage_closed is True
    assert outcome.application_phase == "rejected"
    final = await handle.result()

    assert final.phase is Phase.REJECTED
    assert final.reasons == ["No evaluation plan."]
    types = [e.type for e in h.publisher.envelopes(handle.id)]
    assert types[-3:] == [
        "review.decision_recorded",
        "review.task_cancelled",
        "application.rejected",
    ]
    decision, cancelled, rejected = h.publisher.envelopes(handle.id)[-3:]
    assert cancelled.payload.reviewer_id == SILVA
    assert cancelled.payload.reason == "The application was rejected at the technical stage."
    assert cancelled.causation_id == decision.event_id
    assert rejected.payload.stage.value == "technical"
    assert rejected.payload.reasons == ["No evaluation plan."]
    assert rejected.payload.decided_by == TANAKA
    assert rejected.actor.kind is ActorKind.REVIEWER
    assert rejected.causation_id == decision.event_id
    assert rejected.event_id == deterministic_event_id(handle.id, "rejected:technical")
    assert [t.status for t in final.tasks] == [TaskStatus.DECIDED, TaskStatus.CANCELLED]
    assert [s.status for s in final.stages[:2]] == [StageStatus.REJECTED, StageStatus.CANCELLED]


# --- withdrawal and duplicates -------------------------------------------------------------------


async def test_withdrawal_mid_review_cancels_open_tasks_and_ends_cleanly(h: Harness) -> None:
    handle = await start_eligible(h)
    await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    await h.decide(handle, TANAKA, ReviewStage.TECHNICAL)
    signal = withdrawal("The project moved to another country.")
    await handle.signal(IncentiveApproval.withdrawn, signal)
    await handle.signal(IncentiveApproval.withdrawn, signal)  # redelivered
    final = await handle.result()

    assert final.phase is Phase.WITHDRAWN
    assert final.reasons == ["The project moved to another country."]
    assert final.open_stages == []
    (cancelled,) = h.publisher.envelopes(handle.id, "review.task_cancelled")
    assert cancelled.payload.reviewer_id == SILVA
    assert cancelled.payload.reason == (
        "The firm withdrew the application: The project moved to another country."
    )
    assert cancelled.causation_id == uuid.UUID(signal.event_id)
    assert h.publisher.envelopes(handle.id, "application.withdrawn") == [], (
        "the applications service announced the firm's withdrawal already"
    )


async def test_withdrawal_while_waiting_for_eligibility(h: Harness) -> None:
    handle = await h.start()
    await handle.signal(IncentiveApproval.withdrawn, withdrawal())
    final = await handle.result()
    assert final.phase is Phase.WITHDRAWN
    assert h.publisher.messages == []


async def test_duplicate_facts_change_nothing(h: Harness) -> None:
    handle = await h.start()
    signal = eligibility(handle.id, EligibilityOutcome.ELIGIBLE)
    for _ in range(3):
        await handle.signal(IncentiveApproval.eligibility_assessed, signal)
    # Another decision about the same revision (a re-run) does not open anything twice either.
    await handle.signal(
        IncentiveApproval.eligibility_assessed, eligibility(handle.id, EligibilityOutcome.ELIGIBLE)
    )
    await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    await handle.signal(IncentiveApproval.withdrawn, withdrawal())
    await handle.result()
    types = [e.type for e in h.publisher.envelopes(handle.id)]
    assert types.count("review.task_assigned") == 2
    assert types.count("review.task_cancelled") == 2


async def test_a_repeated_request_id_returns_the_first_outcome(h: Harness) -> None:
    handle = await start_eligible(h)
    await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    first = await h.decide(handle, TANAKA, ReviewStage.TECHNICAL, request_id="dec_1")
    again = await h.decide(
        handle, TANAKA, ReviewStage.TECHNICAL, request_id="dec_1", task_id="task_whatever"
    )
    assert again == first
    state = await h.state(handle)
    assert len(state.decisions) == 1


# --- assignment ----------------------------------------------------------------------------------


async def test_assignment_waits_and_retries_while_nobody_is_eligible(
    desk: FakeDesk, h: Harness
) -> None:
    security = [p for p in desk.profiles if ReviewerRole.SECURITY in p.roles]
    desk.profiles = [p for p in desk.profiles if p not in security]
    handle = await start_eligible(h)
    state = await h.until(handle, lambda s: len(h.desk.calls) >= 2)
    assert state.stages[0].status is StageStatus.STAFFING
    assert state.tasks == [], "technical waits with security: the group is staffed at once"

    await h.env.sleep(timedelta(minutes=61))  # one retry interval: still nobody
    await h.until(handle, lambda s: len(h.desk.calls) >= 4)
    desk.profiles.extend(security)
    await h.env.sleep(timedelta(minutes=61))
    state = await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    assert state.assignments == {ReviewStage.TECHNICAL: [TANAKA], ReviewStage.SECURITY: [SILVA]}


async def test_a_run_cancelled_while_it_asks_the_desk_ends_cancelled(
    desk: FakeDesk, h: Harness
) -> None:
    # The cancelled activity is the run's cancellation, not the desk being away: the run must
    # not go back to waiting for reviewers.
    desk.answer = asyncio.Event()  # never released: the desk is still thinking when it ends
    handle = await start_eligible(h)
    await h.until(handle, lambda s: len(h.desk.calls) >= 1)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as caught:
        await asyncio.wait_for(handle.result(), timeout=30)  # a run that kept waiting: a failure
    assert isinstance(caught.value.cause, CancelledError)
    assert (await handle.describe()).status is WorkflowExecutionStatus.CANCELED


async def test_assignment_retries_when_the_desk_fails(desk: FakeDesk, h: Harness) -> None:
    desk.failing = {ReviewerRole.TECHNICAL}
    handle = await start_eligible(h)
    await h.until(handle, lambda s: len(h.desk.calls) >= 2)
    desk.failing = set()
    await h.env.sleep(timedelta(minutes=61))
    state = await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    assert state.assignments[ReviewStage.TECHNICAL] == [TANAKA]


async def test_withdrawal_ends_the_wait_for_reviewers(desk: FakeDesk, h: Harness) -> None:
    desk.profiles = []
    handle = await start_eligible(h)
    await h.until(handle, lambda s: len(h.desk.calls) >= 2)
    await handle.signal(IncentiveApproval.withdrawn, withdrawal())
    final = await handle.result()
    assert final.phase is Phase.WITHDRAWN
    assert h.publisher.messages == []


async def test_inactive_and_conflicted_reviewers_are_never_assigned(
    desk: FakeDesk, h: Harness
) -> None:
    desk.profiles = [
        p.model_copy(update={"active": False}) if p.reviewer_id == OKAFOR else p
        for p in desk.profiles
    ]
    handle = await start_eligible(h)
    await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    await h.decide(handle, TANAKA, ReviewStage.TECHNICAL)
    await h.decide(handle, SILVA, ReviewStage.SECURITY)
    await h.until_open(handle, ReviewStage.FINANCE)
    await h.decide(handle, HADDAD, ReviewStage.FINANCE)
    state = await h.until(handle, lambda s: len(h.desk.calls) >= 4)
    # Okafor is inactive (the fake desk lists him anyway), Novak is conflicted and the others
    # decided a stage already: only two committee members are eligible, so the committee waits.
    assert state.stages[3].status is StageStatus.STAFFING
    assert ReviewStage.COMMITTEE not in state.assignments
    assert {t.reviewer_id for t in state.tasks} == {TANAKA, SILVA, HADDAD}
