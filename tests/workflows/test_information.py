"""The information loop: a request pauses the stage, the firm amends, eligibility re-runs on the
amended revision, and the stage resumes; without an amendment in 30 days the application is
withdrawn."""

from __future__ import annotations

import uuid
from datetime import timedelta

from contracts.catalog import decode
from contracts.envelope import ActorKind, deterministic_event_id
from contracts.v1.common import Decision, EligibilityOutcome, ReviewStage, Stage
from tests.workflows.scenarios import (
    SILVA,
    TANAKA,
    Handle,
    Harness,
    amendment,
    eligibility,
    withdrawal,
)
from workflows import policy
from workflows.approval import IncentiveApproval
from workflows.inputs import ApprovalPolicy
from workflows.state import Phase, StageStatus, TaskStatus

QUESTION = "How many local engineers will the residency train per year?"


async def technical_asks(h: Harness) -> Handle:
    """Review open; Tanaka (technical) asks the firm about training."""
    handle = await h.start()
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(handle.id, EligibilityOutcome.ELIGIBLE),
    )
    await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    outcome = await h.decide(
        handle,
        TANAKA,
        ReviewStage.TECHNICAL,
        Decision.REQUEST_INFORMATION,
        comment=QUESTION,
        fields=["commitments.training"],
    )
    assert outcome.stage_closed is False
    assert outcome.application_phase == "information_requested"
    return handle


async def test_a_reviewer_request_pauses_the_group_and_resumes_after_the_amendment(
    h: Harness,
) -> None:
    handle = await technical_asks(h)
    state = await h.until(handle, lambda s: s.information_request is not None)
    assert state.phase is Phase.INFORMATION_REQUESTED
    assert [s.status for s in state.stages[:2]] == [StageStatus.PAUSED, StageStatus.PAUSED]
    assert state.open_stages == []

    events = h.publisher.envelopes(handle.id)
    decision, cancelled, requested = events[-3:]
    assert cancelled.type == "review.task_cancelled"
    assert cancelled.payload.reviewer_id == SILVA, "the parallel stage waits too"
    assert cancelled.payload.reason.startswith("Paused: ")
    assert requested.type == "review.information_requested"
    request = requested.payload
    assert request.reviewer_id == TANAKA
    assert request.stage is ReviewStage.TECHNICAL
    assert request.source is None
    assert request.fields == ["commitments.training"]
    assert request.questions == [QUESTION]
    assert request.respond_by - request.requested_at == timedelta(days=30)
    assert request.request_id == policy.information_request_id(handle.id, 1)
    assert request.task_id == decision.payload.task_id
    assert requested.actor.kind is ActorKind.REVIEWER
    assert requested.actor.id == TANAKA
    assert requested.causation_id == decision.event_id
    assert requested.event_id == deterministic_event_id(handle.id, "information_requested:1")

    await handle.signal(IncentiveApproval.amended, amendment(2))
    state = await h.until(handle, lambda s: s.phase is Phase.AWAITING_ELIGIBILITY)
    assert state.revision == 2
    # A late decision about the old revision is not the one the workflow waits for.
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(handle.id, EligibilityOutcome.INELIGIBLE, revision=1),
    )
    state = await h.state(handle)
    assert state.phase is Phase.AWAITING_ELIGIBILITY
    passed = eligibility(handle.id, EligibilityOutcome.ELIGIBLE, revision=2)
    await handle.signal(IncentiveApproval.eligibility_assessed, passed)

    state = await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    assert state.phase is Phase.TECHNICAL_SECURITY_REVIEW
    assert state.information_request is None
    assert state.assignments == {ReviewStage.TECHNICAL: [TANAKA], ReviewStage.SECURITY: [SILVA]}
    fresh = [t for t in state.tasks if t.status is TaskStatus.OPEN]
    assert {t.round for t in fresh} == {1}
    assert {t.task_id for t in fresh}.isdisjoint({decision.payload.task_id})
    reassigned = h.publisher.envelopes(handle.id, "review.task_assigned")[-2:]
    assert {e.causation_id for e in reassigned} == {uuid.UUID(passed.event_id)}

    await h.decide(handle, TANAKA, ReviewStage.TECHNICAL)
    await h.decide(handle, SILVA, ReviewStage.SECURITY)
    state = await h.until_open(handle, ReviewStage.FINANCE)
    assert state.phase is Phase.FINANCE_REVIEW


async def test_approvals_given_before_the_pause_stand(h: Harness) -> None:
    handle = await h.start()
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(handle.id, EligibilityOutcome.ELIGIBLE),
    )
    await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    await h.decide(handle, SILVA, ReviewStage.SECURITY)
    await h.decide(
        handle, TANAKA, ReviewStage.TECHNICAL, Decision.REQUEST_INFORMATION, comment=QUESTION
    )
    await handle.signal(IncentiveApproval.amended, amendment(2))
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(handle.id, EligibilityOutcome.ELIGIBLE, revision=2),
    )
    state = await h.until_open(handle, ReviewStage.TECHNICAL)
    assert state.assignments == {ReviewStage.TECHNICAL: [TANAKA]}
    assert state.stages[1].status is StageStatus.APPROVED
    assert h.publisher.envelopes(handle.id, "review.task_cancelled") == []


async def test_eligibility_asking_for_information_runs_the_same_loop(h: Harness) -> None:
    handle = await h.start()
    needs = eligibility(
        handle.id,
        EligibilityOutcome.NEEDS_INFORMATION,
        missing=["commitments.data_protection_attestation"],
    )
    await handle.signal(IncentiveApproval.eligibility_assessed, needs)
    state = await h.until(handle, lambda s: s.information_request is not None)
    assert state.phase is Phase.INFORMATION_REQUESTED
    await h.until(handle, lambda s: bool(h.publisher.messages))
    (requested,) = h.publisher.envelopes(handle.id)
    assert requested.type == "review.information_requested"
    assert requested.actor.id == "system:eligibility"
    assert requested.causation_id == uuid.UUID(needs.event_id)
    request = requested.payload
    assert request.source is Stage.ELIGIBILITY
    assert request.reviewer_id == "system:eligibility"
    assert request.stage is ReviewStage.TECHNICAL, "the first review stage waits for it"
    assert request.fields == ["commitments.data_protection_attestation"]
    assert h.desk.calls == [], "no reviewer before eligibility passes"

    await handle.signal(IncentiveApproval.amended, amendment(2))
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(handle.id, EligibilityOutcome.ELIGIBLE, revision=2),
    )
    state = await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    assert state.eligibility_outcome is EligibilityOutcome.ELIGIBLE
    assert {t.round for t in state.tasks} == {1}


async def test_eligibility_may_ask_again_and_then_reject(h: Harness) -> None:
    handle = await technical_asks(h)
    await handle.signal(IncentiveApproval.amended, amendment(2))
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(handle.id, EligibilityOutcome.NEEDS_INFORMATION, revision=2),
    )
    state = await h.until(handle, lambda s: s.information_requests == 2)
    assert state.phase is Phase.INFORMATION_REQUESTED
    assert state.information_request is not None
    assert state.information_request.source is Stage.ELIGIBILITY
    assert state.information_request.stage is ReviewStage.TECHNICAL

    await handle.signal(IncentiveApproval.amended, amendment(3))
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(handle.id, EligibilityOutcome.INELIGIBLE, revision=3),
    )
    final = await handle.result()
    assert final.phase is Phase.REJECTED
    rejected = h.publisher.envelopes(handle.id, "application.rejected")[0]
    assert rejected.payload.stage is Stage.ELIGIBILITY
    requests = h.publisher.envelopes(handle.id, "review.information_requested")
    assert [r.payload.request_id for r in requests] == [
        policy.information_request_id(handle.id, 1),
        policy.information_request_id(handle.id, 2),
    ]


async def test_no_amendment_within_30_days_withdraws_the_application(h: Harness) -> None:
    handle = await technical_asks(h)
    await h.until(handle, lambda s: s.information_request is not None)
    await h.env.sleep(timedelta(days=29))
    state = await h.state(handle)
    assert state.phase is Phase.INFORMATION_REQUESTED, "a day left"
    assert h.publisher.envelopes(handle.id, "application.withdrawn") == []

    final = await handle.result()  # the time-skipping handle jumps to the deadline
    assert final.phase is Phase.WITHDRAWN
    assert final.reasons == [
        "No amendment within 30 days of the information request "
        f"{policy.information_request_id(handle.id, 1)}."
    ]
    (withdrawn,) = h.publisher.envelopes(handle.id, "application.withdrawn")
    assert withdrawn.actor.id == "system:workflows"
    assert withdrawn.payload.reason_code.value == "information_timeout"
    assert withdrawn.payload.firm_id == "ACME"
    requested = h.publisher.envelopes(handle.id, "review.information_requested")[0]
    assert withdrawn.causation_id == requested.event_id
    assert withdrawn.payload.withdrawn_at >= requested.payload.respond_by
    assert withdrawn.event_id == deterministic_event_id(
        handle.id, "withdrawn:information_timeout:1"
    )
    topics = {decode(m.value.encode()).type: m.topic for m in h.publisher.messages}
    assert topics["application.withdrawn"] == "applications.events"


async def test_the_timeout_is_configurable(h: Harness) -> None:
    handle = await h.start(policy=ApprovalPolicy(information_timeout_days=5))
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(handle.id, EligibilityOutcome.NEEDS_INFORMATION),
    )
    state = await h.until(handle, lambda s: s.information_request is not None)
    assert state.information_request is not None
    request = state.information_request
    assert request.respond_by - request.requested_at == timedelta(days=5)
    final = await handle.result()
    assert final.phase is Phase.WITHDRAWN


async def test_withdrawal_during_the_information_loop(h: Harness) -> None:
    handle = await technical_asks(h)
    await h.until(handle, lambda s: s.information_request is not None)
    await handle.signal(IncentiveApproval.withdrawn, withdrawal())
    final = await handle.result()
    assert final.phase is Phase.WITHDRAWN
    assert final.reasons == ["Plans changed."]
    assert h.publisher.envelopes(handle.id, "application.withdrawn") == []


async def test_a_duplicate_amendment_is_ignored(h: Harness) -> None:
    handle = await technical_asks(h)
    signal = amendment(2)
    await handle.signal(IncentiveApproval.amended, signal)
    await handle.signal(IncentiveApproval.amended, signal)
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(handle.id, EligibilityOutcome.ELIGIBLE, revision=2),
    )
    state = await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    assert state.revision == 2
    assert state.information_requests == 1
