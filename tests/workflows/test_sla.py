"""SLA timers: a reminder at N days and an escalation to a supervisor at M days after a task's
assignment, raced against the decision on durable workflow timers (moved by the test clock)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from contracts.envelope import deterministic_event_id
from contracts.v1.common import EligibilityOutcome, ReviewStage
from contracts.v1.desk import DecisionRefusal, ReviewerRole, TaskReassignment
from tests.workflows.scenarios import (
    HADDAD,
    MEYER,
    NOVAK,
    PROFILES,
    SILVA,
    TANAKA,
    WEBER,
    FakeDesk,
    Handle,
    Harness,
    eligibility,
    withdrawal,
)
from workflows.approval import IncentiveApproval
from workflows.inputs import ApprovalPolicy


async def review_open(h: Harness, policy: ApprovalPolicy | None = None) -> Handle:
    handle = await h.start(policy=policy)
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(handle.id, EligibilityOutcome.ELIGIBLE),
    )
    await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    return handle


async def published(h: Harness, handle: Handle, message_type: str, count: int) -> list:  # type: ignore[type-arg]
    """The events of ``message_type`` once ``count`` of them are out."""
    await h.until(handle, lambda _: len(h.publisher.envelopes(handle.id, message_type)) >= count)
    return h.publisher.envelopes(handle.id, message_type)


async def test_reminder_at_n_days_then_escalation_at_m_days(h: Harness) -> None:
    handle = await review_open(h)
    await h.env.sleep(timedelta(days=6, hours=23))
    assert h.publisher.envelopes(handle.id, "review.reminder_due") == []

    await h.env.sleep(timedelta(hours=2))
    reminders = await published(h, handle, "review.reminder_due", 2)
    assert {r.payload.reviewer_id for r in reminders} == {TANAKA, SILVA}
    for reminder in reminders:
        payload = reminder.payload
        assert payload.days_open == 7
        assert payload.reminded_at - payload.assigned_at == timedelta(days=7)
        assert payload.due_at - payload.assigned_at == timedelta(days=14)
        assert reminder.actor.id == "system:workflows"
        assert reminder.event_id == deterministic_event_id(
            handle.id, f"reminder:{payload.stage.value}:{payload.reviewer_id}:0"
        )
    assert h.publisher.envelopes(handle.id, "review.escalated") == []

    await h.env.sleep(timedelta(days=7))
    escalations = await published(h, handle, "review.escalated", 2)
    for escalation in escalations:
        payload = escalation.payload
        assert payload.supervisor_id == MEYER
        assert payload.days_open == 14
        assert payload.reason == "No decision 14 days after assignment."
        late = payload.escalated_at - escalation_assigned(h, handle, payload.task_id)
        assert timedelta(days=14) <= late < timedelta(days=14, seconds=5)
    state = await h.state(handle)
    assert {t.escalated_to for t in state.tasks} == {MEYER}
    assert ReviewerRole.SUPERVISOR in [c.role for c in h.desk.calls]

    # Late, but still accepted: the escalation informs a supervisor, it does not take over.
    await h.decide(handle, TANAKA, ReviewStage.TECHNICAL)
    await h.env.sleep(timedelta(days=30))
    assert len(h.publisher.envelopes(handle.id, "review.reminder_due")) == 2, "one reminder each"
    assert len(h.publisher.envelopes(handle.id, "review.escalated")) == 2


def escalation_assigned(h: Harness, handle: Handle, task_id: str):  # type: ignore[no-untyped-def]
    return next(
        e.payload.assigned_at
        for e in h.publisher.envelopes(handle.id, "review.task_assigned")
        if e.payload.task_id == task_id
    )


async def test_a_decided_task_gets_no_reminder(h: Harness) -> None:
    handle = await review_open(h)
    await h.env.sleep(timedelta(days=1))
    await h.decide(handle, TANAKA, ReviewStage.TECHNICAL)
    await h.env.sleep(timedelta(days=7))
    (reminder,) = await published(h, handle, "review.reminder_due", 1)
    assert reminder.payload.reviewer_id == SILVA


async def test_sla_days_come_from_the_policy(h: Harness) -> None:
    handle = await review_open(h, ApprovalPolicy(sla_reminder_days=2, sla_escalation_days=3))
    state = await h.state(handle)
    assert {t.due_at - t.assigned_at for t in state.tasks} == {timedelta(days=3)}
    await h.env.sleep(timedelta(days=2, minutes=1))
    await published(h, handle, "review.reminder_due", 2)
    assert h.publisher.envelopes(handle.id, "review.escalated") == []
    await h.env.sleep(timedelta(days=1))
    escalations = await published(h, handle, "review.escalated", 2)
    assert {e.payload.days_open for e in escalations} == {3}


async def test_escalation_goes_to_the_shared_queue_without_a_supervisor(
    desk: FakeDesk, h: Harness
) -> None:
    desk.failing = {ReviewerRole.SUPERVISOR}
    handle = await review_open(h)
    await h.env.sleep(timedelta(days=14, minutes=1))
    escalations = await published(h, handle, "review.escalated", 2)
    assert {e.payload.supervisor_id for e in escalations} == {None}


async def test_a_conflicted_supervisor_is_skipped(desk: FakeDesk, h: Harness) -> None:
    meyer = next(p for p in desk.profiles if p.reviewer_id == MEYER)
    desk.profiles.remove(meyer)
    desk.profiles.append(meyer.model_copy(update={"affiliations": ["Acme Vision AI GmbH"]}))
    handle = await review_open(h)
    await h.env.sleep(timedelta(days=14, minutes=1))
    escalations = await published(h, handle, "review.escalated", 2)
    assert {e.payload.supervisor_id for e in escalations} == {None}


async def test_withdrawal_stops_the_timers(h: Harness) -> None:
    handle = await review_open(h)
    await h.env.sleep(timedelta(days=8))
    await published(h, handle, "review.reminder_due", 2)
    await handle.signal(IncentiveApproval.withdrawn, withdrawal())
    await handle.result()
    await h.env.sleep(timedelta(days=30))
    assert h.publisher.envelopes(handle.id, "review.escalated") == []


def reassignment(task_id: str, to: str, *, by: str = MEYER, key: str = "1") -> TaskReassignment:
    return TaskReassignment(
        request_id=f"rea_{task_id}_{to}_{key}",
        task_id=task_id,
        supervisor_id=by,
        supervisor_roles=list(PROFILES[by].roles),
        reviewer=PROFILES[to],
        reason="On leave.",
    )


async def reassign_refused(handle: Handle, request: TaskReassignment) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await handle.execute_update(IncentiveApproval.reassign, request)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def test_a_supervisor_reassigns_an_escalated_task_to_a_reviewer_free_to_decide(
    h: Harness,
) -> None:
    handle = await review_open(h)
    state = await h.state(handle)
    (technical,) = [t for t in state.tasks if t.stage is ReviewStage.TECHNICAL]
    assert technical.reviewer_id == TANAKA
    # Not escalated yet: a task moves only once its SLA ran out.
    early = await reassign_refused(handle, reassignment(technical.task_id, WEBER))
    assert early.type == DecisionRefusal.INVALID_REQUEST

    await h.env.sleep(timedelta(days=14, hours=1))
    await published(h, handle, "review.escalated", 2)
    refusals = {
        "not a supervisor": (reassignment(technical.task_id, WEBER, by=SILVA), "wrong_role"),
        "lacks the role": (reassignment(technical.task_id, HADDAD), "wrong_role"),
        "declared an interest": (reassignment(technical.task_id, NOVAK), "conflict_of_interest"),
    }
    for request, code in refusals.values():
        assert (await reassign_refused(handle, request)).type == code
    assert h.publisher.envelopes(handle.id, "review.task_cancelled") == []

    moved = await handle.execute_update(
        IncentiveApproval.reassign, reassignment(technical.task_id, WEBER)
    )
    assert moved.cancelled_task_id == technical.task_id
    assert moved.reviewer_id == WEBER
    again = await handle.execute_update(
        IncentiveApproval.reassign, reassignment(technical.task_id, WEBER)
    )
    assert again == moved, "a repeated request gets the first outcome"
    (cancelled,) = await published(h, handle, "review.task_cancelled", 1)
    assert cancelled.payload.task_id == technical.task_id
    assigned = await published(h, handle, "review.task_assigned", 3)
    assert [a.payload.reviewer_id for a in assigned if a.payload.task_id == moved.task_id] == [
        WEBER
    ]
    state = await h.state(handle)
    new = next(t for t in state.tasks if t.task_id == moved.task_id)
    assert new.status.value == "open"
    assert new.escalated_at is None
    assert new.due_at - new.assigned_at == timedelta(days=14)
    # The new reviewer decides the stage.
    await h.decide(handle, WEBER, ReviewStage.TECHNICAL, task_id=moved.task_id)
    assert [d.reviewer_id for d in (await h.state(handle)).decisions] == [WEBER]


async def test_a_supervisor_decides_an_escalated_task_in_the_reviewers_place(h: Harness) -> None:
    handle = await review_open(h)
    state = await h.state(handle)
    tasks = {t.stage: t for t in state.tasks}
    technical, security = tasks[ReviewStage.TECHNICAL], tasks[ReviewStage.SECURITY]
    meyer = PROFILES[MEYER]
    # Not escalated yet: the reviewer's task is theirs to decide.
    with pytest.raises(WorkflowUpdateFailedError) as early:
        await h.decide(
            handle, MEYER, ReviewStage.TECHNICAL, task_id=technical.task_id, supervisor=meyer
        )
    assert isinstance(early.value.cause, ApplicationError)
    assert early.value.cause.type == DecisionRefusal.INVALID_REQUEST

    await h.env.sleep(timedelta(days=14, hours=1))
    await published(h, handle, "review.escalated", 2)
    await h.decide(
        handle, MEYER, ReviewStage.TECHNICAL, task_id=technical.task_id, supervisor=meyer
    )
    (cancelled,) = await published(h, handle, "review.task_cancelled", 1)
    assert cancelled.payload.task_id == technical.task_id
    (recorded,) = await published(h, handle, "review.decision_recorded", 1)
    assert recorded.payload.reviewer_id == MEYER
    assert recorded.actor.id == MEYER
    state = await h.state(handle)
    assert [(d.reviewer_id, d.stage) for d in state.decisions] == [(MEYER, ReviewStage.TECHNICAL)]
    assert next(t for t in state.tasks if t.task_id == technical.task_id).status.value == (
        "cancelled"
    )
    # Separation of duties binds the supervisor too: not the security stage as well.
    with pytest.raises(WorkflowUpdateFailedError) as second:
        await h.decide(
            handle, MEYER, ReviewStage.SECURITY, task_id=security.task_id, supervisor=meyer
        )
    assert isinstance(second.value.cause, ApplicationError)
    assert second.value.cause.type == DecisionRefusal.SEPARATION_OF_DUTIES
