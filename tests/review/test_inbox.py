"""The inbox on the real broker and PostgreSQL: review events in, tasks out over HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from contracts.v1.common import ReviewStage
from tests.review.conftest import Desk
from tests.review.helpers import (
    ADMIN,
    AUDITOR,
    FIRM,
    HADDAD,
    MEYER,
    NOVAK,
    SILVA,
    SUPERVISOR,
    approved,
    assigned,
    at,
    auth,
    decided,
    escalated,
    new_id,
    reminded,
    reviewer,
    withdrawn,
)

pytestmark = pytest.mark.integration


async def inbox(desk: Desk, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await desk.client.get("/v1/inbox", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(page: dict[str, Any]) -> list[str]:
    return [item["task_id"] for item in page["items"]]


async def test_a_reviewer_sees_their_tasks_soonest_due_first(desk: Desk) -> None:
    me = f"{new_id('rev')}@gaip.example"
    app_a, app_b = new_id("app"), new_id("app")
    later, sooner, other = new_id("task"), new_id("task"), new_id("task")
    await desk.send(
        assigned(app_a, later, me, due_in_days=14, title="Crop disease early warning"),
        assigned(app_b, sooner, me, stage=ReviewStage.COMMITTEE, due_in_days=3),
        assigned(app_b, other, HADDAD, stage=ReviewStage.FINANCE),
    )
    await desk.wait_task(other)
    await desk.wait_task(later)
    page = await inbox(desk, reviewer(me))
    assert ids(page) == [sooner, later]
    assert page["total"] == 2
    first, second = page["items"]
    assert (first["stage"], first["status"], first["sla_state"]) == ("committee", "open", "on_time")
    assert first["quorum"] == {"required": 2, "members": 3}
    assert second["summary"]["title"] == "Crop disease early warning"
    assert second["summary"]["firm_legal_name"] == "Acme Vision AI GmbH"
    assert second["application_id"] == app_a
    assert second["due_at"] > first["due_at"]

    assert ids(await inbox(desk, reviewer(me), stage="technical")) == [later]
    assert ids(await inbox(desk, reviewer(me), status="decided")) == []
    assert ids(await inbox(desk, reviewer(me), limit=1, offset=1)) == [later]


async def test_tasks_follow_decisions_reminders_escalations_and_the_end(desk: Desk) -> None:
    me = f"{new_id('rev')}@gaip.example"
    app_id = new_id("app")
    reminded_task, escalated_task, overdue_task, decided_task = (new_id("task") for _ in range(4))
    t0 = at(-10)
    t_old = at(-20)
    await desk.send(
        assigned(app_id, reminded_task, me, assigned_at=t0),
        reminded(app_id, reminded_task, me, assigned_at=t0, reminded_at=at(7, base=t0)),
        assigned(app_id, escalated_task, me, stage=ReviewStage.SECURITY, assigned_at=t_old),
        escalated(
            app_id, escalated_task, me, stage=ReviewStage.SECURITY, escalated_at=at(14, base=t_old)
        ),
        assigned(app_id, overdue_task, me, stage=ReviewStage.FINANCE, assigned_at=t_old),
        assigned(app_id, decided_task, me, stage=ReviewStage.COMMITTEE, assigned_at=t0),
        decided(app_id, decided_task, me, stage=ReviewStage.COMMITTEE, decided_at=at(1, base=t0)),
    )
    detail = await desk.wait_task(decided_task, lambda d: d["status"] == "decided")
    assert detail["decision"]["decision"] == "approve"
    assert [h["type"] for h in detail["history"]] == [
        "review.task_assigned",
        "review.decision_recorded",
    ]
    states = {item["task_id"]: item for item in (await inbox(desk, reviewer(me)))["items"]}
    assert states[reminded_task]["sla_state"] == "reminder_sent"
    assert states[escalated_task]["sla_state"] == "escalated"
    assert states[escalated_task]["escalation"]["supervisor_id"] == MEYER
    assert states[overdue_task]["sla_state"] == "overdue"
    assert states[decided_task]["sla_state"] == "on_time"
    assert sorted(ids(await inbox(desk, reviewer(me), status="open"))) == sorted(
        [reminded_task, escalated_task, overdue_task]
    )

    # The firm withdraws (applications.events): open tasks close, the decided one stays decided.
    await desk.send(withdrawn(app_id, withdrawn_at=at(0)))
    await desk.wait_task(reminded_task, lambda d: d["status"] == "closed")
    page = await inbox(desk, reviewer(me))
    statuses = {item["task_id"]: item["status"] for item in page["items"]}
    assert statuses == {
        reminded_task: "closed",
        escalated_task: "closed",
        overdue_task: "closed",
        decided_task: "decided",
    }
    assert all(item["application_outcome"]["outcome"] == "withdrawn" for item in page["items"])


async def test_duplicates_on_the_broker_change_nothing(desk: Desk) -> None:
    app_id, task_id = new_id("app"), new_id("task")
    first = decided(app_id, task_id, NOVAK, comment="First and only decision.")
    impostor = decided(
        app_id,
        task_id,
        NOVAK,
        decision="reject",
        comment="Same event id, another body: must be dropped.",
        decided_at=at(1),
        event_id=first.event_id,
    )
    t0 = at(-1)
    assignment = assigned(app_id, task_id, NOVAK, assigned_at=t0)
    marker = reminded(app_id, task_id, NOVAK, assigned_at=t0, reminded_at=at(0.5, base=t0))
    # One key, one topic: one partition, in order. The reminder, sent last, shows that every
    # record before it has been handled.
    await desk.send(assignment, assignment, first, first, impostor, marker)
    detail = await desk.wait_task(task_id, lambda d: d["reminded_at"] is not None)
    assert detail["decision"]["decision"] == "approve"
    assert detail["decision"]["comment"] == "First and only decision."
    assert [h["type"] for h in detail["history"]] == [
        "review.task_assigned",
        "review.reminder_due",
        "review.decision_recorded",
    ]
    async with desk.engine.connect() as conn:
        marks = await conn.scalar(
            text("SELECT count(*) FROM processed_messages WHERE event_id = :id"),
            {"id": first.event_id},
        )
    assert marks == 1


async def test_an_approval_arriving_before_the_review_events_still_closes(desk: Desk) -> None:
    """approvals.events and review.events are different topics: no order between them."""
    app_id, task_id = new_id("app"), new_id("task")
    await desk.send(approved(app_id, approved_at=at(0)))
    await desk.send(
        assigned(app_id, task_id, NOVAK, stage=ReviewStage.COMMITTEE, assigned_at=at(-2))
    )
    # Whichever topic is read first, the task ends closed.
    detail = await desk.wait_task(task_id, lambda d: d["status"] == "closed")
    assert detail["application_outcome"]["outcome"] == "approved"
    assert [h["type"] for h in detail["history"]] == [
        "review.task_assigned",
        "application.approved",
    ]


async def test_supervisors_see_escalations(desk: Desk) -> None:
    app_id = new_id("app")
    mine, shared, elsewhere, done = (new_id("task") for _ in range(4))
    t_old = at(-20)
    other_supervisor = f"{new_id('sup')}@gaip.example"
    events = []
    for task_id, supervisor in ((mine, MEYER), (shared, None), (elsewhere, other_supervisor)):
        events += [
            assigned(app_id, task_id, SILVA, assigned_at=t_old),
            escalated(
                app_id, task_id, SILVA, escalated_at=at(14, base=t_old), supervisor_id=supervisor
            ),
        ]
    events += [
        assigned(app_id, done, SILVA, assigned_at=t_old),
        escalated(app_id, done, SILVA, escalated_at=at(14, base=t_old)),
        decided(app_id, done, SILVA, decided_at=at(15, base=t_old)),
    ]
    await desk.send(*events)
    await desk.wait_task(done, lambda d: d["status"] == "decided")

    response = await desk.client.get("/v1/supervisor/escalations", headers=SUPERVISOR)
    assert response.status_code == 200
    listed = ids(response.json())
    assert {mine, shared, elsewhere} <= set(listed)
    assert done not in listed  # default: open ones only
    only_mine = await desk.client.get(
        "/v1/supervisor/escalations", params={"mine": "true"}, headers=SUPERVISOR
    )
    assert {mine, shared} <= set(ids(only_mine.json()))
    assert elsewhere not in ids(only_mine.json())
    decided_ones = await desk.client.get(
        "/v1/supervisor/escalations", params={"status": "decided"}, headers=AUDITOR
    )
    assert done in ids(decided_ones.json())

    # A supervisor may open an escalated task of someone else; not a task that was not escalated.
    assert (await desk.task(mine, SUPERVISOR)) is not None
    quiet = new_id("task")
    await desk.send(assigned(app_id, quiet, SILVA))
    await desk.wait_task(quiet)
    assert (await desk.task(quiet, SUPERVISOR)) is None

    for headers in (reviewer(SILVA), FIRM):
        response = await desk.client.get("/v1/supervisor/escalations", headers=headers)
        assert response.status_code == 403


async def test_who_sees_which_task(desk: Desk) -> None:
    app_id, task_id = new_id("app"), new_id("task")
    await desk.send(assigned(app_id, task_id, NOVAK))
    await desk.wait_task(task_id)

    assert (await desk.task(task_id, reviewer(NOVAK))) is not None
    assert (await desk.task(task_id, AUDITOR)) is not None
    # Another reviewer: 404, the same as a task that does not exist.
    assert (await desk.task(task_id, reviewer(SILVA))) is None
    assert (await desk.task(new_id("task"), ADMIN)) is None
    assert task_id not in ids(await inbox(desk, reviewer(SILVA)))

    # Auditors and admins see every reviewer's tasks, or one reviewer's.
    assert task_id in ids(await inbox(desk, AUDITOR, reviewer_id=NOVAK, limit=200))
    assert task_id not in ids(await inbox(desk, ADMIN, reviewer_id=SILVA, limit=200))
    # Reviewers cannot look into someone else's inbox.
    response = await desk.client.get(
        "/v1/inbox", params={"reviewer_id": NOVAK}, headers=reviewer(SILVA)
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"

    for path in ("/v1/inbox", f"/v1/tasks/{task_id}", "/v1/supervisor/escalations"):
        assert (await desk.client.get(path, headers=FIRM)).status_code == 403
        assert (await desk.client.get(path)).status_code == 401
        bad = {"Authorization": "Bearer not-a-token"}
        assert (await desk.client.get(path, headers=bad)).status_code == 401

    other_key = auth("reviewer", NOVAK)
    other_key["Authorization"] = other_key["Authorization"][:-4] + "AAAA"
    assert (await desk.client.get("/v1/inbox", headers=other_key)).status_code == 401


async def test_bad_filters_are_422(desk: Desk) -> None:
    for params in ({"status": "pending"}, {"stage": "eligibility"}, {"limit": 0}):
        response = await desk.client.get("/v1/inbox", params=params, headers=reviewer(NOVAK))
        assert response.status_code == 422
        assert response.json()["errors"][0]["parameter"] in params
