"""The inbox projection through the kit's idempotent consumer, on the embedded SQLite database.

The desk's real consumer and handler are fed records directly (no broker), so every arrival
order of a task's events can be tried: the projected task must come out the same.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from contracts import catalog
from contracts.envelope import Actor, Envelope, utcnow
from contracts.v1.common import ReviewStage
from services.kit.consumer import IdempotentConsumer, Outcome
from services.kit.migrations import upgrade_to_head
from services.kit.runtime import Service
from services.review.main import MIGRATIONS, create_app
from services.review.models import ReviewApplication, ReviewTask
from services.review.settings import Settings
from services.review.views import task_view
from tests.review.helpers import (
    NOVAK,
    approved,
    assigned,
    at,
    cancelled,
    decided,
    envelope,
    escalated,
    information_requested,
    new_id,
    record_of,
    rejected,
    reminded,
    withdrawn,
)


@dataclass
class Projection:
    """The desk's consumer on a migrated SQLite database."""

    service: Service
    consumer: IdempotentConsumer

    async def feed(self, *envelopes: Envelope[Any]) -> list[Outcome]:
        return [await self.consumer.process(record_of(env, i)) for i, env in enumerate(envelopes)]

    async def task(self, task_id: str) -> ReviewTask | None:
        async with self.service.uow() as uow:
            task = await uow.session.get(ReviewTask, task_id)
            uow.session.expunge_all()  # keep the values after the read-only unit rolls back
            return task

    async def view(self, task_id: str) -> dict[str, Any]:
        """The task as the API shows it, without its ids (to compare across tasks)."""
        task = await self.task(task_id)
        assert task is not None
        view = task_view(task, NOW)
        for key in ("task_id", "application_id"):
            view.pop(key)
        return {k: (v.model_dump() if hasattr(v, "model_dump") else v) for k, v in view.items()}


NOW = utcnow()


@pytest.fixture
async def projection(tmp_path: Path) -> AsyncIterator[Projection]:
    settings = Settings(var_dir=tmp_path, kafka_bootstrap="127.0.0.1:1", seed_demo_reviewers=False)
    app = create_app(settings)
    service: Service = app.state.service
    await upgrade_to_head(service.engine, MIGRATIONS)
    try:
        yield Projection(service=service, consumer=service.consumers[0])
    finally:
        await service.engine.dispose()


def _story(app_id: str, task_id: str) -> list[Envelope[Any]]:
    """A task's life: assigned, reminded, escalated, decided late; then the firm withdraws."""
    t0 = at(-20, base=NOW)
    return [
        assigned(app_id, task_id, NOVAK, assigned_at=t0),
        reminded(app_id, task_id, NOVAK, assigned_at=t0, reminded_at=at(7, base=t0)),
        escalated(app_id, task_id, NOVAK, escalated_at=at(14, base=t0)),
        decided(app_id, task_id, NOVAK, decided_at=at(15, base=t0)),
        withdrawn(app_id, withdrawn_at=at(18, base=t0)),
    ]


async def test_every_arrival_order_projects_the_same_task(projection: Projection) -> None:
    reference_app, reference_task = new_id("app"), new_id("task")
    await projection.feed(*_story(reference_app, reference_task))
    expected = await projection.view(reference_task)
    assert expected["status"] == "decided"
    assert expected["sla_state"] == "escalated"
    assert expected["decision"]["decision"] == "approve"
    assert expected["application_outcome"]["outcome"] == "withdrawn"
    assert expected["escalation"]["supervisor_id"] == "sup.meyer@gaip.example"
    assert expected["reminded_at"] is not None

    rng = random.Random(20261201)
    for _ in range(25):
        app_id, task_id = new_id("app"), new_id("task")
        story = _story(app_id, task_id)
        rng.shuffle(story)
        # Redeliveries too: the first two again, at the end.
        outcomes = await projection.feed(*story, *story[:2])
        assert outcomes[-2:] == [Outcome.DUPLICATE, Outcome.DUPLICATE]
        assert await projection.view(task_id) == expected


async def test_a_whole_story_in_one_batch_projects_the_same_task(projection: Projection) -> None:
    """The kit may hand several messages to the handler in one unit of work."""
    reference_app, reference_task = new_id("app"), new_id("task")
    await projection.feed(*_story(reference_app, reference_task))
    expected = await projection.view(reference_task)

    app_id, task_id = new_id("app"), new_id("task")
    story = _story(app_id, task_id)
    random.Random(7).shuffle(story)
    batch = [record_of(env, i) for i, env in enumerate([*story, story[0]])]
    outcomes = await projection.consumer.process_batch(batch)
    assert outcomes == [Outcome.PROCESSED] * len(story) + [Outcome.DUPLICATE]
    assert await projection.view(task_id) == expected


async def test_a_redelivered_event_id_changes_nothing(projection: Projection) -> None:
    app_id, task_id = new_id("app"), new_id("task")
    first = decided(app_id, task_id, NOVAK, comment="First thoughts.")
    later_copy = decided(
        app_id,
        task_id,
        NOVAK,
        decision="reject",
        comment="A different body under the same event id.",
        decided_at=at(1),
        event_id=first.event_id,
    )
    outcomes = await projection.feed(
        assigned(app_id, task_id, NOVAK, assigned_at=at(-1)), first, later_copy
    )
    assert outcomes == [Outcome.PROCESSED, Outcome.PROCESSED, Outcome.DUPLICATE]
    task = await projection.task(task_id)
    assert task is not None
    assert (task.decision, task.comment) == ("approve", "First thoughts.")
    assert [h["type"] for h in task.history] == ["review.task_assigned", "review.decision_recorded"]


async def test_an_application_end_closes_open_tasks_whichever_arrives_first(
    projection: Projection,
) -> None:
    app_id = new_id("app")
    early, late, done = new_id("task"), new_id("task"), new_id("task")
    t0 = at(-2)
    await projection.feed(
        assigned(app_id, early, NOVAK, assigned_at=t0),
        assigned(app_id, done, NOVAK, stage=ReviewStage.SECURITY, assigned_at=t0),
        decided(app_id, done, NOVAK, stage=ReviewStage.SECURITY, decided_at=at(0.5, base=t0)),
        rejected(app_id, rejected_at=at(1, base=t0)),
        # The assignment of another task travelled on another topic and arrives after the end.
        assigned(app_id, late, NOVAK, stage=ReviewStage.FINANCE, assigned_at=at(0.2, base=t0)),
    )
    for task_id in (early, late):
        view = await projection.view(task_id)
        assert view["status"] == "closed"
        assert view["application_outcome"]["outcome"] == "rejected"
        assert view["application_outcome"]["reasons"] == [
            "Patient data would be processed outside the country."
        ]
        assert view["application_outcome"]["ended_by"] == "rev.silva@gaip.example"
    decided_view = await projection.view(done)
    assert decided_view["status"] == "decided"
    assert decided_view["application_outcome"]["outcome"] == "rejected"
    async with projection.service.uow() as uow:
        application = await uow.session.get(ReviewApplication, app_id)
        uow.session.expunge_all()
    assert application is not None
    assert (application.outcome, application.ended_by) == ("rejected", "rev.silva@gaip.example")


async def test_the_earliest_end_counts_whichever_arrives_first(projection: Projection) -> None:
    """A firm may withdraw an approved application: the review still ended approved."""
    views = []
    for order in ((0, 1), (1, 0)):
        app_id, task_id = new_id("app"), new_id("task")
        ends = [approved(app_id, approved_at=at(-2)), withdrawn(app_id, withdrawn_at=at(-1))]
        await projection.feed(
            assigned(app_id, task_id, NOVAK, assigned_at=at(-3)), *(ends[i] for i in order)
        )
        view = await projection.view(task_id)
        assert view["status"] == "closed"
        assert view["application_outcome"]["outcome"] == "approved"
        task = await projection.task(task_id)
        assert task is not None
        views.append([h["type"] for h in task.history])
    assert views[0] == views[1] == ["review.task_assigned", "application.approved"]


async def test_cancellation(projection: Projection) -> None:
    app_id, task_id = new_id("app"), new_id("task")
    t0 = at(-1)
    await projection.feed(
        assigned(app_id, task_id, NOVAK, stage=ReviewStage.COMMITTEE, assigned_at=t0),
        cancelled(
            app_id, task_id, NOVAK, stage=ReviewStage.COMMITTEE, cancelled_at=at(0.5, base=t0)
        ),
    )
    view = await projection.view(task_id)
    assert view["status"] == "cancelled"
    assert view["sla_state"] == "on_time"
    assert view["cancellation"]["reason"] == "The committee reached 2 of 3 approvals."
    assert view["quorum"] == {"required": 2, "members": 3}


async def test_information_request_then_reassignment_reopens_the_task(
    projection: Projection,
) -> None:
    """The stage resumes after the amendment by assigning the same task again."""
    app_id, task_id = new_id("app"), new_id("task")
    t0 = at(-10)
    await projection.feed(
        assigned(app_id, task_id, NOVAK, assigned_at=t0),
        decided(
            app_id,
            task_id,
            NOVAK,
            decision="request_information",
            comment="How many engineers?",
            decided_at=at(1, base=t0),
        ),
        information_requested(app_id, task_id, NOVAK, requested_at=at(1, base=t0)),
    )
    paused = await projection.view(task_id)
    assert paused["status"] == "decided"
    assert paused["decision"]["decision"] == "request_information"
    assert paused["information_request"]["fields"] == ["commitments.training"]

    await projection.feed(assigned(app_id, task_id, NOVAK, assigned_at=at(5, base=t0)))
    resumed = await projection.view(task_id)
    assert resumed["status"] == "open"
    assert resumed["decision"] is None
    assert resumed["information_request"] is None
    assert resumed["assigned_at"] == at(5, base=t0)
    task = await projection.task(task_id)
    assert task is not None
    assert len(task.history) == 4


async def test_an_information_request_from_eligibility_is_no_reviewer_task(
    projection: Projection,
) -> None:
    app_id, task_id = new_id("app"), new_id("elig")
    asked = envelope(
        "review.information_requested",
        app_id,
        request_id=new_id("req"),
        task_id=task_id,
        stage="technical",
        reviewer_id="system:eligibility",
        fields=["commitments.training"],
        requested_at=at(-1),
        respond_by=at(29),
        source="eligibility",
    )
    assert await projection.feed(asked) == [Outcome.PROCESSED]
    assert await projection.task(task_id) is None


async def test_unassigned_facts_wait_for_their_assignment(projection: Projection) -> None:
    app_id, task_id = new_id("app"), new_id("task")
    await projection.feed(decided(app_id, task_id, NOVAK))
    task = await projection.task(task_id)
    assert task is not None
    assert task.assigned_at is None  # kept, but not shown until the assignment arrives
    await projection.feed(assigned(app_id, task_id, NOVAK, assigned_at=at(-1)))
    assert (await projection.view(task_id))["status"] == "decided"


async def test_events_about_other_types_are_skipped(projection: Projection) -> None:
    app_id = new_id("app")
    example = catalog.example_payloads("application.amended")[0]
    amended = catalog.make_envelope(
        "application.amended",
        example.model_copy(update={"application_id": app_id}),
        subject=app_id,
        actor=Actor.system("tests"),
        producer="tests",
        correlation_id=uuid.uuid4(),
    )
    assert await projection.feed(amended) == [Outcome.IGNORED]
    async with projection.service.uow() as uow:
        assert (await uow.session.exec(select(ReviewApplication))).all() == []
