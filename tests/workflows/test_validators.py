"""Each refusal of the ``decide`` validator, on its own.

A refused update leaves no trace: nothing is recorded, nothing is published, and the reviewer
gets an ``ApplicationError`` whose type is the refusal code and whose message says why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.catalog import decode
from contracts.v1.common import Decision, EligibilityOutcome, ReviewStage
from contracts.v1.desk import DecisionRefusal, ReviewDecisionOutcome, ReviewerProfile
from contracts.v1.desk import ReviewerRole as R
from tests.workflows.scenarios import (
    COMMITTEE,
    HADDAD,
    NOVAK,
    SILVA,
    TANAKA,
    FakeDesk,
    Handle,
    Harness,
    RecordingPublisher,
    amendment,
    eligibility,
)
from workflows.activities import OutgoingMessage
from workflows.approval import IncentiveApproval
from workflows.state import Phase


async def refused(call: Awaitable[ReviewDecisionOutcome]) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await call
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.non_retryable
    return cause


async def review_open(h: Harness) -> Handle:
    handle = await h.start()
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(handle.id, EligibilityOutcome.ELIGIBLE),
    )
    await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    return handle


async def assert_nothing_recorded(h: Harness, handle: Handle) -> None:
    state = await h.state(handle)
    assert state.decisions == []
    assert h.publisher.envelopes(handle.id, "review.decision_recorded") == []


async def test_wrong_role(h: Harness) -> None:
    handle = await review_open(h)
    error = await refused(h.decide(handle, TANAKA, ReviewStage.TECHNICAL, roles=[R.COMMITTEE]))
    assert error.type == DecisionRefusal.WRONG_ROLE
    assert error.message == (
        f"{TANAKA} does not hold the technical role needed to decide the technical stage."
    )
    await assert_nothing_recorded(h, handle)


async def test_not_assigned(desk: FakeDesk, h: Harness) -> None:
    # Ahn sorts first, so Tanaka (who holds the role) is not the technical reviewer here.
    desk.profiles.append(
        ReviewerProfile(reviewer_id="rev.ahn@gaip.example", name="Ahn", roles=[R.TECHNICAL])
    )
    handle = await review_open(h)
    state = await h.state(handle)
    (task,) = [t for t in state.tasks if t.stage is ReviewStage.TECHNICAL]
    assert task.reviewer_id == "rev.ahn@gaip.example"
    error = await refused(h.decide(handle, TANAKA, ReviewStage.TECHNICAL, task_id=task.task_id))
    assert error.type == DecisionRefusal.NOT_ASSIGNED
    assert f"{TANAKA} is not assigned an open task {task.task_id}" in error.message
    await assert_nothing_recorded(h, handle)


async def test_conflict_of_interest(h: Harness) -> None:
    handle = await review_open(h)
    # Novak holds the role but owns part of the applicant's parent company.
    error = await refused(h.decide(handle, NOVAK, ReviewStage.TECHNICAL))
    assert error.type == DecisionRefusal.CONFLICT_OF_INTEREST
    assert "Acme Holdings SE" in error.message
    await assert_nothing_recorded(h, handle)


async def test_conflict_of_interest_after_an_amendment_names_a_new_parent(h: Harness) -> None:
    """The check re-runs on the assignment snapshot against the amended application."""
    handle = await review_open(h)
    await h.decide(
        handle,
        SILVA,
        ReviewStage.SECURITY,
        Decision.REQUEST_INFORMATION,
        comment="Who owns the data platform?",
    )
    # The firm now names Silva's former employer as a parent company; Novak's conflict is gone.
    await handle.signal(IncentiveApproval.amended, amendment(2, parents=["CNPD"]))
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(handle.id, EligibilityOutcome.ELIGIBLE, revision=2),
    )
    state = await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    # Silva's seat went to the next eligible security reviewer.
    assert state.assignments == {ReviewStage.TECHNICAL: [TANAKA], ReviewStage.SECURITY: [NOVAK]}
    old = next(t for t in state.tasks if t.reviewer_id == SILVA)
    error = await refused(h.decide(handle, SILVA, ReviewStage.SECURITY, task_id=old.task_id))
    assert error.type == DecisionRefusal.CONFLICT_OF_INTEREST
    assert "CNPD" in error.message


async def test_separation_of_duties(desk: FakeDesk, h: Harness) -> None:
    # Ahn may review both technical and security; the choice gives Ahn technical only.
    desk.profiles.append(
        ReviewerProfile(
            reviewer_id="rev.ahn@gaip.example", name="Ahn", roles=[R.TECHNICAL, R.SECURITY]
        )
    )
    handle = await review_open(h)
    state = await h.state(handle)
    assert state.assignments == {
        ReviewStage.TECHNICAL: ["rev.ahn@gaip.example"],
        ReviewStage.SECURITY: [SILVA],
    }
    await h.decide(handle, "rev.ahn@gaip.example", ReviewStage.TECHNICAL)
    security = next(t for t in state.tasks if t.stage is ReviewStage.SECURITY)
    error = await refused(
        h.decide(handle, "rev.ahn@gaip.example", ReviewStage.SECURITY, task_id=security.task_id)
    )
    assert error.type == DecisionRefusal.SEPARATION_OF_DUTIES
    assert "already decided the technical stage" in error.message
    assert len((await h.state(handle)).decisions) == 1


async def test_stage_not_open(h: Harness) -> None:
    handle = await review_open(h)
    error = await refused(h.decide(handle, HADDAD, ReviewStage.FINANCE))
    assert error.type == DecisionRefusal.STAGE_NOT_OPEN
    assert error.message == (
        "The finance stage is not open for decisions: it is pending and the application is "
        "technical_security_review."
    )
    await assert_nothing_recorded(h, handle)


async def test_stage_not_open_while_information_is_requested(h: Harness) -> None:
    handle = await review_open(h)
    security = next(t for t in (await h.state(handle)).tasks if t.stage is ReviewStage.SECURITY)
    await h.decide(
        handle, TANAKA, ReviewStage.TECHNICAL, Decision.REQUEST_INFORMATION, comment="Why?"
    )
    await h.until(handle, lambda s: s.phase is Phase.INFORMATION_REQUESTED)
    error = await refused(h.decide(handle, SILVA, ReviewStage.SECURITY, task_id=security.task_id))
    assert error.type == DecisionRefusal.STAGE_NOT_OPEN
    assert "it is paused" in error.message


async def test_duplicate_decision(h: Harness) -> None:
    handle = await review_open(h)
    task = next(t for t in (await h.state(handle)).tasks if t.stage is ReviewStage.TECHNICAL)
    await h.decide(handle, TANAKA, ReviewStage.TECHNICAL, request_id="dec_first")
    error = await refused(
        h.decide(
            handle,
            TANAKA,
            ReviewStage.TECHNICAL,
            Decision.REJECT,
            request_id="dec_second",
            task_id=task.task_id,
        )
    )
    assert error.type == DecisionRefusal.DUPLICATE_DECISION
    assert f"{TANAKA} already decided the technical stage (approve on task {task.task_id}," in (
        error.message
    )
    state = await h.state(handle)
    assert [d.request_id for d in state.decisions] == ["dec_first"]


async def test_duplicate_decision_on_a_committee_still_deciding(h: Harness) -> None:
    handle = await review_open(h)
    await h.decide(handle, TANAKA, ReviewStage.TECHNICAL)
    await h.decide(handle, SILVA, ReviewStage.SECURITY)
    await h.until_open(handle, ReviewStage.FINANCE)
    await h.decide(handle, HADDAD, ReviewStage.FINANCE)
    state = await h.until_open(handle, ReviewStage.COMMITTEE)
    member = state.assignments[ReviewStage.COMMITTEE][0]
    await h.decide(handle, member, ReviewStage.COMMITTEE)
    # Whatever task id the second attempt names, the member decided the stage already.
    error = await refused(
        h.decide(handle, member, ReviewStage.COMMITTEE, Decision.REJECT, task_id="task_other")
    )
    assert error.type == DecisionRefusal.DUPLICATE_DECISION
    assert ReviewStage.COMMITTEE in (await h.state(handle)).open_stages


async def test_invalid_request(h: Harness) -> None:
    handle = await review_open(h)
    error = await refused(
        h.decide(handle, TANAKA, ReviewStage.TECHNICAL, fields=["commitments.training"])
    )
    assert error.type == DecisionRefusal.INVALID_REQUEST
    await assert_nothing_recorded(h, handle)


async def test_a_refused_request_id_may_be_used_again_once_valid(h: Harness) -> None:
    handle = await review_open(h)
    await refused(h.decide(handle, TANAKA, ReviewStage.TECHNICAL, roles=[], request_id="dec_retry"))
    outcome = await h.decide(handle, TANAKA, ReviewStage.TECHNICAL, request_id="dec_retry")
    assert outcome.stage_closed is True


@dataclass
class HeldApproval(RecordingPublisher):
    """Publishes like the recorder, but holds ``application.approved`` until released."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    holding: asyncio.Event = field(default_factory=asyncio.Event)

    @activity.defn(name="publish_message")
    async def publish_message(self, message: OutgoingMessage) -> None:
        if decode(message.value.encode()).type == "application.approved":
            self.holding.set()
            await self.release.wait()
        self.messages.append(message)


async def test_a_vote_after_the_quorum_is_application_closed_while_the_run_finishes(
    client: Client, env: WorkflowEnvironment
) -> None:
    """The quorum ends the application at once; the run then publishes the approval. A vote
    in between gets application_closed, the answer the desk gives once the run completed."""
    publisher = HeldApproval()
    held = Harness(client, env, "test-held-approval", publisher, FakeDesk())
    async with Worker(
        client,
        task_queue=held.task_queue,
        workflows=[IncentiveApproval],
        activities=[publisher.publish_message, held.desk.candidate_reviewers],
    ):
        try:
            handle = await review_open(held)
            await held.reach_quorum(handle)
            await publisher.holding.wait()  # the run is publishing its approval right now
            error = await refused(held.decide(handle, COMMITTEE[2], ReviewStage.COMMITTEE))
            assert error.type == DecisionRefusal.APPLICATION_CLOSED
            assert error.message == (
                "The application has ended (approved); no stage of it takes decisions any more."
            )
            publisher.release.set()
            assert (await held.until_approved(handle)).phase is Phase.APPROVED
            assert len((await held.state(handle)).decisions) == 5
        finally:
            publisher.release.set()
            await held.close()
