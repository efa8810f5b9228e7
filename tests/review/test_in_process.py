"""The desk in process: ASGI transport, its SQLite default, its consumer fed directly.

No broker, Temporal or PostgreSQL: the pattern of ``tests.inprocess`` for the review API. What
needs Temporal (decisions) is tested on the real stack elsewhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from services.kit.consumer import Outcome
from services.review.main import create_app
from services.review.settings import Settings
from tests.inprocess import InProcess, in_process_settings
from tests.review.helpers import ADMIN, AUDITOR, FIRM, NOVAK, SILVA, assigned, new_id, reviewer

StartApp = Callable[..., Awaitable[InProcess]]


@pytest.fixture
async def local_desk(in_process: StartApp, tmp_path: Path) -> InProcess:
    return await in_process(create_app(in_process_settings(Settings, tmp_path)))


async def test_an_assigned_task_reaches_only_its_reviewers_inbox(local_desk: InProcess) -> None:
    app_id, task_id = new_id("app"), new_id("task")
    event = assigned(app_id, task_id, NOVAK)

    assert await local_desk.deliver(event) is Outcome.PROCESSED
    assert (
        await local_desk.deliver(event) is Outcome.DUPLICATE
    )  # redelivered: recognised, not re-applied

    mine = await local_desk.client.get("/v1/inbox", headers=reviewer(NOVAK))
    assert mine.status_code == 200, mine.text
    assert [item["task_id"] for item in mine.json()["items"]] == [task_id]
    theirs = await local_desk.client.get("/v1/inbox", headers=reviewer(SILVA))
    assert task_id not in [item["task_id"] for item in theirs.json()["items"]]
    assert (await local_desk.client.get(f"/v1/tasks/{task_id}", headers=FIRM)).status_code == 403


async def test_only_admins_change_the_registry_and_every_change_names_its_actor(
    local_desk: InProcess,
) -> None:
    rid = "rev.lindqvist@gaip.example"
    body = {
        "reviewer_id": rid,
        "name": "Dr. Erik Lindqvist",
        "roles": ["technical"],
        "affiliations": ["KTH Royal Institute of Technology"],
        "ownership_interests": [],
        "active": True,
    }
    refused = await local_desk.client.post("/v1/registry/reviewers", json=body, headers=AUDITOR)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"

    created = await local_desk.client.post("/v1/registry/reviewers", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    read = await local_desk.client.get(created.headers["location"], headers=ADMIN)
    assert read.status_code == 200
    assert read.json()["updated_by"] == "admin@gaip.example"


async def test_health_names_the_dependencies_it_waits_for(local_desk: InProcess) -> None:
    response = await local_desk.client.get("/health")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["status"] == "ok"  # the SQLite default, migrated at start
    assert checks["broker"]["status"] == "error"
    assert checks["temporal"]["status"] == "error"
