"""Decisions: the desk's ``decide`` update, and each refusal as the right problem.

A fake ``IncentiveApproval`` (see ``fake_workflow.py``) runs on the Temporal dev server, so the
mapping is tested on real Temporal errors without depending on the real workflow's stages;
``test_real_workflow.py`` checks the same mapping against the real workflow.
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from contracts.v1.common import ReviewStage
from contracts.v1.desk import DecisionRefusal, ReviewDecisionRequest
from services.kit.logging import configure_logging
from services.kit.runtime import Service
from services.review.domain import REFUSAL_STATUS, decision_request_id
from services.review.main import create_app
from services.review.settings import Settings
from tests.review.conftest import Desk, FakeWorkflows
from tests.review.fake_workflow import PHASE, REFUSE
from tests.review.helpers import (
    ADMIN,
    AUDITOR,
    FIRM,
    MEYER,
    NOVAK,
    SILVA,
    SUPERVISOR,
    assigned,
    at,
    escalated,
    new_id,
    record_of,
    reviewer,
)
from tests.support import Attempts, free_port, serving

pytestmark = pytest.mark.integration


async def open_task(
    desk: Desk,
    fakes: FakeWorkflows | None,
    reviewer_id: str = NOVAK,
    *,
    stage: ReviewStage = ReviewStage.TECHNICAL,
    task_queue: str | None = None,
) -> tuple[str, str, WorkflowHandle[Any, Any] | None]:
    """An application with a (fake) workflow and a task projected into the desk."""
    app_id, task_id = new_id("app"), new_id("task")
    handle = await fakes.start(app_id, task_queue=task_queue) if fakes is not None else None
    await desk.send(assigned(app_id, task_id, reviewer_id, stage=stage))
    await desk.wait_task(task_id)
    return app_id, task_id, handle


async def post_decision(
    desk: Desk,
    task_id: str,
    headers: dict[str, str],
    *,
    key: str | None = None,
    **body: Any,
) -> Any:
    payload = {"decision": "approve", "comment": "Architecture and evaluation plan are sound."}
    payload.update(body)
    extra = {"Idempotency-Key": key} if key is not None else {}
    return await desk.client.post(
        f"/v1/tasks/{task_id}/decision", json=payload, headers={**headers, **extra}
    )


def key() -> str:
    return str(uuid.uuid4())


async def test_a_decision_reaches_the_workflow_as_the_decide_update(
    desk: Desk, fake_workflows: FakeWorkflows
) -> None:
    app_id, task_id, handle = await open_task(desk, fake_workflows)
    assert handle is not None
    idempotency_key = key()
    response = await post_decision(desk, task_id, reviewer(NOVAK), key=idempotency_key)
    assert response.status_code == 200, response.text
    expected_id = decision_request_id(task_id, NOVAK, idempotency_key)
    assert response.json() == {
        "task_id": task_id,
        "application_id": app_id,
        "request_id": expected_id,
        "stage": "technical",
        "decision": "approve",
        "stage_closed": True,
        "application_phase": PHASE,
    }
    (sent,) = await handle.query("requests", result_type=list[ReviewDecisionRequest])
    assert sent == ReviewDecisionRequest(
        request_id=expected_id,
        task_id=task_id,
        stage=ReviewStage.TECHNICAL,
        reviewer_id=NOVAK,
        # From the registry, not from the token: Novák holds three roles there.
        token_roles=["technical", "security", "committee"],
        decision="approve",
        comment="Architecture and evaluation plan are sound.",
    )


async def test_a_retry_with_the_same_key_returns_the_first_outcome(
    desk: Desk, fake_workflows: FakeWorkflows
) -> None:
    _, task_id, handle = await open_task(desk, fake_workflows)
    assert handle is not None
    idempotency_key = key()
    first = await post_decision(desk, task_id, reviewer(NOVAK), key=idempotency_key)
    again = await post_decision(desk, task_id, reviewer(NOVAK), key=idempotency_key)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert len(await handle.query("requests", result_type=list[ReviewDecisionRequest])) == 1

    changed_mind = await post_decision(
        desk, task_id, reviewer(NOVAK), key=idempotency_key, decision="reject"
    )
    assert changed_mind.status_code == 422
    assert changed_mind.json()["errors"][0]["type"] == "idempotency_key_reused"


async def test_an_information_request_carries_the_fields(
    desk: Desk, fake_workflows: FakeWorkflows
) -> None:
    _, task_id, handle = await open_task(desk, fake_workflows)
    assert handle is not None
    response = await post_decision(
        desk,
        task_id,
        reviewer(NOVAK),
        key=key(),
        decision="request_information",
        comment="How many local engineers will the residency train per year?",
        requested_fields=["commitments.training"],
    )
    assert response.status_code == 200, response.text
    (sent,) = await handle.query("requests", result_type=list[ReviewDecisionRequest])
    assert sent.requested_fields == ["commitments.training"]


@pytest.mark.parametrize("refusal", list(DecisionRefusal))
async def test_each_refusal_is_a_problem_with_its_reason(
    desk: Desk, fake_workflows: FakeWorkflows, refusal: DecisionRefusal
) -> None:
    app_id, task_id, _ = await open_task(desk, fake_workflows)
    response = await post_decision(
        desk, task_id, reviewer(NOVAK), key=key(), comment=f"{REFUSE}{refusal.value}"
    )
    assert response.status_code == REFUSAL_STATUS[refusal]
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == f"urn:incentives:problem:{refusal.value}"
    assert problem["reason"] == refusal.value
    assert problem["status"] == REFUSAL_STATUS[refusal]
    assert problem["detail"] == f"Refused by the fake workflow: {refusal.value}."
    assert problem["title"]
    assert (problem["application_id"], problem["task_id"]) == (app_id, task_id)
    assert problem["instance"] == f"/v1/tasks/{task_id}/decision"


async def test_an_unknown_failure_of_the_update_is_a_502(
    desk: Desk, fake_workflows: FakeWorkflows
) -> None:
    _, task_id, _ = await open_task(desk, fake_workflows)
    response = await post_decision(
        desk, task_id, reviewer(NOVAK), key=key(), comment=f"{REFUSE}SomethingElse"
    )
    assert response.status_code == 502
    assert response.json()["reason"] == "workflow_error"


async def test_no_workflow_is_404_and_an_ended_one_409(
    desk: Desk, fake_workflows: FakeWorkflows
) -> None:
    _, orphan, _ = await open_task(desk, None)
    response = await post_decision(desk, orphan, reviewer(NOVAK), key=key())
    assert response.status_code == 404
    assert response.json()["reason"] == "workflow_not_found"

    _, task_id, handle = await open_task(desk, fake_workflows)
    assert handle is not None
    await handle.signal("finish")
    await handle.result()
    response = await post_decision(desk, task_id, reviewer(NOVAK), key=key())
    assert response.status_code == 409
    assert response.json()["reason"] == "application_closed"


async def test_a_workflow_nobody_runs_is_a_503_after_the_timeout(
    desk: Desk, fake_workflows: FakeWorkflows, unique_name: Any
) -> None:
    _, task_id, _ = await open_task(desk, fake_workflows, task_queue=unique_name("nobody"))
    response = await post_decision(desk, task_id, reviewer(NOVAK), key=key())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "retry with the same Idempotency-Key" in response.json()["detail"]


async def test_who_may_decide(desk: Desk, fake_workflows: FakeWorkflows) -> None:
    _, task_id, handle = await open_task(desk, fake_workflows, SILVA)
    assert handle is not None
    for headers in (AUDITOR, ADMIN, FIRM):
        assert (await post_decision(desk, task_id, headers, key=key())).status_code == 403
    # Another reviewer does not even learn that the task exists.
    assert (await post_decision(desk, task_id, reviewer(NOVAK), key=key())).status_code == 404
    assert (await post_decision(desk, task_id, {}, key=key())).status_code == 401

    # A supervisor sees the escalated task but it is not theirs to decide.
    await desk.send(escalated(handle.id, task_id, SILVA, escalated_at=at(0)))
    await desk.wait_task(task_id, lambda d: d["escalation"] is not None)
    response = await post_decision(desk, task_id, SUPERVISOR, key=key())
    assert response.status_code == 403
    assert "assigned to rev.silva@gaip.example" in response.json()["detail"]
    assert await handle.query("requests", result_type=list[ReviewDecisionRequest]) == []


async def test_a_reviewer_missing_from_the_registry_sends_no_roles(
    desk: Desk, fake_workflows: FakeWorkflows
) -> None:
    """The workflow, not the desk, refuses (wrong_role): the desk just reports the registry."""
    stranger = f"{new_id('rev')}@gaip.example"
    _, task_id, handle = await open_task(desk, fake_workflows, stranger)
    assert handle is not None
    response = await post_decision(desk, task_id, reviewer(stranger), key=key())
    assert response.status_code == 200
    (sent,) = await handle.query("requests", result_type=list[ReviewDecisionRequest])
    assert sent.token_roles == []


@pytest.mark.parametrize(
    ("headers", "body", "where"),
    [
        ({}, {}, "Idempotency-Key"),
        ({"Idempotency-Key": "short"}, {}, "Idempotency-Key"),
        ({"Idempotency-Key": "has spaces in it"}, {}, "Idempotency-Key"),
        ({"Idempotency-Key": "k" * 20}, {"decision": "maybe"}, "#/decision"),
        ({"Idempotency-Key": "k" * 20}, {"comment": ""}, "#/comment"),
        (
            {"Idempotency-Key": "k" * 20},
            {"decision": "approve", "requested_fields": ["commitments.training"]},
            "#",
        ),
        (
            {"Idempotency-Key": "k" * 20},
            {"requested_fields": ["Not A Path"]},
            "#/requested_fields/0",
        ),
    ],
)
async def test_malformed_decisions_are_422(
    desk: Desk, headers: dict[str, str], body: dict[str, Any], where: str
) -> None:
    task_id = new_id("task")
    payload = {"decision": "request_information", "comment": "Please explain.", **body}
    response = await desk.client.post(
        f"/v1/tasks/{task_id}/decision", json=payload, headers={**reviewer(NOVAK), **headers}
    )
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert where in [e.get("header") or e.get("pointer") for e in errors]


async def test_temporal_unreachable_is_a_503_and_one_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A desk started before Temporal: health names it, decisions are 503, one warning line.

    No broker either: the task is fed straight to the desk's consumer.
    """
    connects = Attempts()
    monkeypatch.setattr(Client, "connect", connects.wrap(Client.connect))
    dead_temporal = f"127.0.0.1:{free_port()}"
    buffer = io.StringIO()
    configure_logging("review", "INFO", stream=buffer)
    port = free_port()
    settings = Settings(
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        temporal_address=dead_temporal,
        var_dir=tmp_path,
        port=port,
        temporal_retry_interval=0.2,
    )
    app = create_app(settings)
    try:
        async with serving(app, port) as client:
            service: Service = app.state.service
            app_id, task_id = new_id("app"), new_id("task")
            await service.consumers[0].process(record_of(assigned(app_id, task_id, NOVAK)))

            health = (await client.get("/health")).json()
            assert health["checks"]["temporal"]["status"] == "error"
            assert dead_temporal in health["checks"]["temporal"]["detail"]

            response = await client.post(
                f"/v1/tasks/{task_id}/decision",
                json={"decision": "approve", "comment": "Fine."},
                headers={**reviewer(NOVAK), "Idempotency-Key": key()},
            )
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert response.json()["type"] == "urn:incentives:problem:dependency_unavailable"
            assert dead_temporal in response.json()["detail"]
            await connects.reach(connects.count + 3)  # several more attempts, 0.2 s apart
    finally:
        configure_logging("review", "WARNING")
    records = [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]
    waiting = [r for r in records if r["event"].startswith("Temporal ")]
    assert [r["event"] for r in waiting] == [
        f"Temporal {dead_temporal} not reachable yet, retrying"
    ]
    assert all("exception" not in r for r in waiting)


async def test_only_a_supervisor_reassigns_and_only_to_a_registered_reviewer(
    desk: Desk, fake_workflows: FakeWorkflows
) -> None:
    _, task_id, handle = await open_task(desk, fake_workflows, SILVA)
    assert handle is not None
    await desk.send(escalated(handle.id, task_id, SILVA, escalated_at=at(0)))
    await desk.wait_task(task_id, lambda d: d["escalation"] is not None)
    path = f"/v1/supervisor/tasks/{task_id}/reassign"
    body = {"reviewer_id": NOVAK, "reason": "On leave."}
    for headers in (reviewer(SILVA), AUDITOR, ADMIN, FIRM):
        response = await desk.client.post(
            path, json=body, headers={**headers, "Idempotency-Key": key()}
        )
        assert response.status_code == 403, response.text
    unknown = {"reviewer_id": f"{new_id('rev')}@gaip.example", "reason": "On leave."}
    response = await desk.client.post(
        path, json=unknown, headers={**SUPERVISOR, "Idempotency-Key": key()}
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "reviewer_id"
    missing_reason = await desk.client.post(
        path, json={"reviewer_id": NOVAK}, headers={**SUPERVISOR, "Idempotency-Key": key()}
    )
    assert missing_reason.status_code == 422
    assert await handle.query("requests", result_type=list[ReviewDecisionRequest]) == []


async def test_a_supervisor_decides_an_escalated_task_with_their_registry_profile(
    desk: Desk, fake_workflows: FakeWorkflows
) -> None:
    _, task_id, handle = await open_task(desk, fake_workflows, SILVA)
    assert handle is not None
    path = f"/v1/supervisor/tasks/{task_id}/decision"
    body = {"decision": "approve", "comment": "Decided in the reviewer's place."}
    # Not escalated yet: the supervisor does not see the task.
    early = await desk.client.post(
        path, json=body, headers={**SUPERVISOR, "Idempotency-Key": key()}
    )
    assert early.status_code == 404, early.text
    await desk.send(escalated(handle.id, task_id, SILVA, escalated_at=at(0)))
    await desk.wait_task(task_id, lambda d: d["escalation"] is not None)
    for headers in (reviewer(SILVA), AUDITOR, ADMIN, FIRM):
        response = await desk.client.post(
            path, json=body, headers={**headers, "Idempotency-Key": key()}
        )
        assert response.status_code == 403, response.text
    idempotency_key = key()
    response = await desk.client.post(
        path, json=body, headers={**SUPERVISOR, "Idempotency-Key": idempotency_key}
    )
    assert response.status_code == 200, response.text
    (sent,) = await handle.query("requests", result_type=list[ReviewDecisionRequest])
    assert sent.request_id == decision_request_id(task_id, MEYER, idempotency_key)
    assert sent.reviewer_id == MEYER
    assert sent.token_roles == ["supervisor"]
    assert sent.supervisor is not None
    assert sent.supervisor.reviewer_id == MEYER
    assert sent.supervisor.roles == ["supervisor"]
    # The ordinary route still refuses the supervisor on another reviewer's task.
    other = await post_decision(desk, task_id, SUPERVISOR, key=key())
    assert other.status_code == 403, other.text
