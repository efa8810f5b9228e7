"""The desk against the real ``IncentiveApproval`` workflow, not the fake one.

The package's desk (PostgreSQL, the session broker, the Temporal dev server) staffs and decides
real runs: a worker in this process runs the real workflow with its real activities, publishing
to the broker the desk consumes and asking the desk's candidates endpoint over HTTP. A run is
started the way the bridge starts it (signal-with-start, then the eligibility decision).

What a reviewer can reach over HTTP is tested over HTTP. Refusals the desk pre-empts with its
own check (someone else's task is a 404 before Temporal is asked) are sent the way the desk's
decision route sends them, through the desk's own Temporal client, so the workflow's refusal and
the desk's mapping of it are still both real.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from contracts.v1.common import Decision, EligibilityOutcome, ReviewStage
from contracts.v1.desk import DecisionRefusal, ReviewDecisionRequest
from contracts.v1.desk import ReviewerRole as R
from services.kit.auth import Principal, Role
from services.kit.messaging import Record
from services.review.domain import REFUSAL_STATUS
from services.review.temporal import DeskProblem, TemporalDesk
from tests.review.conftest import Desk
from tests.review.helpers import ADMIN, HADDAD, NOVAK, SILVA, TOKENS, new_id, reviewer
from tests.workflows.scenarios import content, eligibility
from workflows.activities import Publisher, ReviewDesk
from workflows.approval import IncentiveApproval
from workflows.inputs import ApprovalInput, ApprovalPolicy, SubmittedSignal
from workflows.state import ApprovalState, Phase, TaskStatus

pytestmark = pytest.mark.integration

Handle = WorkflowHandle[IncentiveApproval, ApprovalState]

#: The committee the demo registry yields for an Acme application (Tanaka advises the firm;
#: Novák, Silva and Haddad decided other stages).
COMMITTEE = ["rev.dubois@gaip.example", "rev.kim@gaip.example", "rev.okafor@gaip.example"]


@dataclass
class Runs:
    """Starts real runs on the worker's task queue and drives them like the bridge."""

    client: Client
    task_queue: str

    async def start(self) -> Handle:
        application_id = new_id("app")
        handle: Handle = await self.client.start_workflow(
            IncentiveApproval.run,
            ApprovalInput(
                application_id=application_id,
                correlation_id=str(uuid.uuid4()),
                policy=ApprovalPolicy(),
            ),
            id=application_id,
            task_queue=self.task_queue,
            start_signal="submitted",
            start_signal_args=[
                SubmittedSignal(
                    event_id=str(uuid.uuid4()), firm_id="ACME", revision=1, content=content()
                )
            ],
        )
        await handle.signal(
            IncentiveApproval.eligibility_assessed,
            eligibility(application_id, EligibilityOutcome.ELIGIBLE),
        )
        return handle


@pytest.fixture(scope="module")
async def runs(
    desk: Desk, temporal_dev: str, unique_name: Callable[[str], str]
) -> AsyncIterator[Runs]:
    """A worker running the real workflow with the real activities against the package desk."""
    client = await Client.connect(temporal_dev, data_converter=pydantic_data_converter)
    task_queue = unique_name("review-real")

    async def publish(records: Sequence[Record]) -> None:
        for record in records:
            await desk.producer.send_and_wait(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )

    worker_principal = Principal(sub="system:workflows", role=Role.ADMIN)
    candidates = ReviewDesk(
        str(desk.client.base_url), lambda: TOKENS.issue(worker_principal)
    ).candidate_reviewers
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[IncentiveApproval],
        activities=[Publisher(publish).publish_message, candidates],
    ):
        yield Runs(client=client, task_queue=task_queue)


async def until(
    handle: Handle, check: Callable[[ApprovalState], bool], timeout: float = 30
) -> ApprovalState:
    """Poll the run's ``state`` query until ``check`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        state = await handle.query(IncentiveApproval.state)
        if check(state):
            return state
        if loop.time() > deadline:
            raise AssertionError(f"the run never got there: {state}")
        await asyncio.sleep(0.1)


async def open_tasks(desk: Desk, handle: Handle, *stages: ReviewStage) -> dict[ReviewStage, str]:
    """Wait until ``stages`` are open and their tasks projected at the desk; stage -> task id."""
    state = await until(handle, lambda s: set(stages) <= set(s.open_stages))
    tasks = {
        t.stage: t.task_id for t in state.tasks if t.stage in stages and t.status is TaskStatus.OPEN
    }
    for task_id in tasks.values():
        await desk.wait_task(task_id)
    return tasks


async def committee_tasks(desk: Desk, handle: Handle) -> dict[str, str]:
    """The committee's open tasks by reviewer, projected at the desk."""
    state = await until(handle, lambda s: ReviewStage.COMMITTEE in s.open_stages)
    tasks = {
        t.reviewer_id: t.task_id
        for t in state.tasks
        if t.stage is ReviewStage.COMMITTEE and t.status is TaskStatus.OPEN
    }
    for task_id in tasks.values():
        await desk.wait_task(task_id)
    return tasks


async def post(desk: Desk, task_id: str, who: str, decision: str = "approve", **body: Any) -> Any:
    return await desk.client.post(
        f"/v1/tasks/{task_id}/decision",
        json={"decision": decision, "comment": f"{decision} by {who}", **body},
        headers={**reviewer(who), "Idempotency-Key": str(uuid.uuid4())},
    )


async def refused_by_workflow(
    desk: Desk,
    handle: Handle,
    who: str,
    stage: ReviewStage,
    task_id: str,
    roles: Sequence[R],
    **changes: Any,
) -> DeskProblem:
    """Send the decide update as the desk's decision route does; return the problem it became."""
    temporal: TemporalDesk = desk.app.state.desk
    request = ReviewDecisionRequest(
        request_id=f"dec_{uuid.uuid4().hex}",
        task_id=task_id,
        stage=stage,
        reviewer_id=who,
        token_roles=list(roles),
        decision=Decision.APPROVE,
        comment=f"approve by {who}",
    ).model_copy(update=changes)
    with pytest.raises(DeskProblem) as problem:
        await temporal.decide(handle.id, request)
    return problem.value


def assert_refusal(problem: DeskProblem, code: DecisionRefusal) -> None:
    assert problem.code == code.value, problem.detail
    assert problem.status == REFUSAL_STATUS[code]
    assert problem.extensions["reason"] == code.value


async def add_reviewer(desk: Desk, rid: str, **entry: Any) -> None:
    body = {"reviewer_id": rid, "name": rid, "roles": ["technical"], **entry}
    response = await desk.client.post("/v1/registry/reviewers", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text


async def test_conflicted_variants_are_never_assigned_and_the_workflow_refuses_them(
    desk: Desk, runs: Runs
) -> None:
    """Declared "Acme Vision-AI GmbH." or the firm's register entry: a conflict with the firm
    "Acme Vision AI GmbH" (register DE "HRB 123456"). Both ids sort before every demo reviewer,
    so only the conflict rule keeps them from the technical seat."""
    by_name = f"rev.0name-{uuid.uuid4().hex[:8]}@gaip.example"
    by_register = f"rev.0register-{uuid.uuid4().hex[:8]}@gaip.example"
    await add_reviewer(desk, by_name, affiliations=["Acme Vision-AI GmbH."])
    await add_reviewer(
        desk,
        by_register,
        affiliations=["An unrelated name"],
        declared_identifiers=[{"register_country": "DE", "register_number": "hrb-123456"}],
    )
    try:
        handle = await runs.start()
        tasks = await open_tasks(desk, handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
        state = await handle.query(IncentiveApproval.state)
        assert state.assignments[ReviewStage.TECHNICAL] == [NOVAK]
        assert {by_name, by_register}.isdisjoint(t.reviewer_id for t in state.tasks)

        for who in (by_name, by_register):
            # Over HTTP the desk refuses at once: someone else's task is not even visible.
            response = await post(desk, tasks[ReviewStage.TECHNICAL], who)
            assert response.status_code == 404, response.text
            # The workflow refuses too, for the conflict, if the decision reaches it.
            problem = await refused_by_workflow(
                desk,
                handle,
                who,
                ReviewStage.TECHNICAL,
                tasks[ReviewStage.TECHNICAL],
                [R.TECHNICAL],
            )
            assert_refusal(problem, DecisionRefusal.CONFLICT_OF_INTEREST)
            assert "Acme Vision AI GmbH" in problem.detail
        assert (await handle.query(IncentiveApproval.state)).decisions == []
    finally:
        for rid in (by_name, by_register):
            await desk.client.delete(f"/v1/registry/reviewers/{rid}", headers=ADMIN)


async def test_refusals_of_the_real_workflow_are_the_desks_problems(desk: Desk, runs: Runs) -> None:
    handle = await runs.start()
    tasks = await open_tasks(desk, handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    technical, security = tasks[ReviewStage.TECHNICAL], tasks[ReviewStage.SECURITY]

    # Decisions the desk cannot judge itself (its projection may lag): the workflow refuses.
    invalid = await refused_by_workflow(
        desk,
        handle,
        NOVAK,
        ReviewStage.TECHNICAL,
        technical,
        [R.TECHNICAL],
        requested_fields=["commitments.training"],
    )
    assert_refusal(invalid, DecisionRefusal.INVALID_REQUEST)
    wrong_role = await refused_by_workflow(
        desk, handle, NOVAK, ReviewStage.TECHNICAL, technical, [R.COMMITTEE]
    )
    assert_refusal(wrong_role, DecisionRefusal.WRONG_ROLE)
    not_assigned = await refused_by_workflow(
        desk, handle, SILVA, ReviewStage.TECHNICAL, technical, [R.TECHNICAL]
    )
    assert_refusal(not_assigned, DecisionRefusal.NOT_ASSIGNED)

    # Novák asks the firm for information: the group pauses, Silva's security task is cancelled.
    response = await post(
        desk,
        technical,
        NOVAK,
        "request_information",
        requested_fields=["commitments.training"],
    )
    assert response.status_code == 200, response.text
    await until(handle, lambda s: s.phase is Phase.INFORMATION_REQUESTED)

    response = await post(desk, security, SILVA)
    assert response.status_code == 409, response.text
    assert response.json()["reason"] == "stage_not_open"
    assert response.json()["type"] == "urn:incentives:problem:stage_not_open"

    response = await post(desk, technical, NOVAK, "reject")
    assert response.status_code == 409, response.text
    assert response.json()["reason"] == "duplicate_decision"

    separation = await refused_by_workflow(
        desk, handle, NOVAK, ReviewStage.SECURITY, security, [R.SECURITY]
    )
    assert_refusal(separation, DecisionRefusal.SEPARATION_OF_DUTIES)
    assert [d.reviewer_id for d in (await handle.query(IncentiveApproval.state)).decisions] == [
        NOVAK
    ]


async def test_a_vote_after_the_quorum_is_application_closed_whenever_it_arrives(
    desk: Desk, runs: Runs
) -> None:
    """The committee closes at 2 of 3; the third member's vote reads application_closed, while
    the run is still publishing its last events and after it has gone on to the offer."""
    handle = await runs.start()
    tasks = await open_tasks(desk, handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    for stage, who in ((ReviewStage.TECHNICAL, NOVAK), (ReviewStage.SECURITY, SILVA)):
        response = await post(desk, tasks[stage], who)
        assert response.status_code == 200, response.text
    finance = await open_tasks(desk, handle, ReviewStage.FINANCE)
    response = await post(desk, finance[ReviewStage.FINANCE], HADDAD)
    assert response.status_code == 200, response.text
    members = await committee_tasks(desk, handle)
    assert sorted(members) == COMMITTEE
    first, second, late = COMMITTEE
    response = await post(desk, members[first], first)
    assert response.status_code == 200, response.text
    response = await post(desk, members[second], second)
    assert response.status_code == 200, response.text
    assert response.json()["stage_closed"] is True

    just_after = await post(desk, members[late], late)
    # The run goes on to the offer; the review itself has ended.
    result = await until(handle, lambda s: s.phase is Phase.APPROVED and s.offer is not None)
    assert result.phase is Phase.APPROVED
    long_after = await post(desk, members[late], late)
    for response in (just_after, long_after):
        assert response.status_code == 409, response.text
        assert response.json()["reason"] == "application_closed"
        assert response.json()["title"] == "The application has ended"
