"""The whole review journey on the real stack, from an HTTP submission to approved.

Everything real: a Tansu broker of its own (so only this journey's events are on it), the
Temporal dev server, PostgreSQL, and the applications, eligibility and review services plus the
workflow worker, each under uvicorn on a free port with its own database. A firm submits over
HTTP; eligibility passes it; the workflow staffs each stage from the desk's candidates; the
assigned reviewers decide every stage through the desk with their own tokens; the application
ends approved, in the firm's status view and on ``approvals.events``.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from contracts import catalog
from contracts.topics import TOPICS
from services.applications.main import create_app as create_applications
from services.applications.settings import Settings as ApplicationsSettings
from services.eligibility.main import create_app as create_eligibility
from services.eligibility.settings import Settings as EligibilitySettings
from services.kit.logging import configure_logging
from services.kit.messaging import ensure_topics
from services.review.main import create_app as create_desk
from services.review.settings import Settings as DeskSettings
from tests.applications.helpers import content
from tests.kit.helpers import eventually, fresh_database, read_topic
from tests.review.helpers import (
    ADMIN,
    TANAKA,
    auth,
    reviewer,
)
from tests.support import free_port, healthy, running_broker, serving
from workflows.settings import Settings as WorkerSettings
from workflows.worker import create_app as create_worker

pytestmark = pytest.mark.integration

FIRM_ID = "ACME"
FIRM = auth("firm", "alice@acme.example", firm=FIRM_ID)
STAGES = ("technical", "security", "finance", "committee")


@dataclass
class Platform:
    """The running parts: one HTTP client per service, and the broker they share."""

    clients: dict[str, httpx.AsyncClient]
    bootstrap: str


@asynccontextmanager
async def platform(
    pg_url: str,
    temporal_dev: str,
    tmp_path: Path,
    task_queue: str,
    more: dict[str, Callable[[dict[str, Any]], FastAPI]] | None = None,
    worker: dict[str, Any] | None = None,
) -> AsyncIterator[Platform]:
    """The four processes (and ``more`` services) on a broker of their own, all healthy.

    ``worker`` adds settings of the workflow worker (its SLA timers, say).
    """
    async with running_broker(tmp_path / "tansu.log") as broker:
        await ensure_topics(
            broker.bootstrap,
            [(name, t.partitions) for t in TOPICS for name in (t.name, t.dlq)],
        )
        async with AsyncExitStack() as stack:
            clients: dict[str, httpx.AsyncClient] = {}
            desk_port = free_port()
            builders: dict[str, Callable[[dict[str, Any]], FastAPI]] = {
                "applications": lambda kw: create_applications(ApplicationsSettings(**kw)),
                "eligibility": lambda kw: create_eligibility(EligibilitySettings(**kw)),
                "review": lambda kw: create_desk(DeskSettings(seed_demo_reviewers=True, **kw)),
                "worker": lambda kw: create_worker(
                    WorkerSettings(
                        task_queue=task_queue,
                        review_url=f"http://127.0.0.1:{desk_port}",
                        **(worker or {}),
                        **kw,
                    )
                ),
                **(more or {}),
            }
            parts: list[tuple[str, FastAPI, int]] = []
            for name, build in builders.items():
                database_url = await stack.enter_async_context(fresh_database(pg_url, name[:4]))
                port = desk_port if name == "review" else free_port()
                app = build(
                    {
                        "kafka_bootstrap": broker.bootstrap,
                        "temporal_address": temporal_dev,
                        "database_url": database_url,
                        "port": port,
                        "var_dir": tmp_path / name,
                    }
                )
                parts.append((name, app, port))
            for name, app, port in parts:
                clients[name] = await stack.enter_async_context(serving(app, port))
            for client in clients.values():
                await eventually(functools.partial(healthy, client), timeout=120)
            yield Platform(clients=clients, bootstrap=broker.bootstrap)


async def submit(applications: httpx.AsyncClient) -> str:
    response = await applications.post(
        "/v1/applications/submissions",
        json=content(),  # signed recently: within the rule sets' attestation window
        headers={**FIRM, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    application_id: str = response.json()["id"]
    return application_id


async def status_of(applications: httpx.AsyncClient, application_id: str) -> str:
    response = await applications.get(f"/v1/applications/{application_id}", headers=FIRM)
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


async def tasks_of(desk: httpx.AsyncClient, application_id: str) -> list[dict[str, Any]]:
    """Every task of the application, as an admin sees them."""
    response = await desk.get("/v1/inbox", params={"limit": 200}, headers=ADMIN)
    assert response.status_code == 200, response.text
    return [t for t in response.json()["items"] if t["application_id"] == application_id]


async def test_submission_to_approval_through_the_desk(
    pg_url: str, temporal_dev: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    configure_logging("tests", "WARNING")
    async with platform(pg_url, temporal_dev, tmp_path, unique_name("full-run")) as running:
        applications, desk = running.clients["applications"], running.clients["review"]
        application_id = await submit(applications)

        decided: dict[str, set[str]] = {stage: set() for stage in STAGES}
        decisions = 0

        async def decide_open_tasks() -> bool:
            """Decide whatever is open in the reviewers' own inboxes; True once approved."""
            nonlocal decisions
            if await status_of(applications, application_id) == "approved":
                return True
            for task in await tasks_of(desk, application_id):
                if task["status"] != "open":
                    continue
                who = task["reviewer_id"]
                mine = await desk.get("/v1/inbox", params={"status": "open"}, headers=reviewer(who))
                assert task["task_id"] in [t["task_id"] for t in mine.json()["items"]]
                response = await desk.post(
                    f"/v1/tasks/{task['task_id']}/decision",
                    json={"decision": "approve", "comment": f"{task['stage']} review: sound."},
                    headers={**reviewer(who), "Idempotency-Key": str(uuid.uuid4())},
                )
                if response.status_code == 409:
                    # The committee reached its quorum a moment ago: the application has ended,
                    # whether the run is still finishing or has completed.
                    assert response.json()["reason"] == "application_closed", response.text
                    continue
                assert response.status_code == 200, response.text
                decided[task["stage"]].add(who)
                decisions += 1
            return False

        await eventually(decide_open_tasks, timeout=240, interval=0.5)

        tasks = await tasks_of(desk, application_id)
        # Separation of duties: one person, one stage; the conflicted reviewer never appears.
        everyone = [who for people in decided.values() for who in people]
        assert len(everyone) == len(set(everyone)) == decisions
        assert [len(decided[s]) for s in STAGES] == [1, 1, 1, 2]
        assert TANAKA not in {t["reviewer_id"] for t in tasks}

        async def desk_sees_the_end() -> bool:
            current = await tasks_of(desk, application_id)
            return all(t["application_outcome"] is not None for t in current)

        await eventually(desk_sees_the_end, timeout=60)
        tasks = await tasks_of(desk, application_id)
        assert {t["application_outcome"]["outcome"] for t in tasks} == {"approved"}
        assert {t["status"] for t in tasks} <= {"decided", "cancelled"}
        assert sum(t["status"] == "decided" for t in tasks) == decisions

        records = await read_topic(running.bootstrap, "approvals.events", count=1, timeout=30)
        approvals = [catalog.decode(r.value) for r in records]
        approved = [e for e in approvals if e.subject == application_id]
        assert [e.type for e in approved] == ["application.approved"]
        payload = approved[0].payload
        assert payload.firm_id == FIRM_ID
        assert {(a.stage.value, a.reviewer_id) for a in payload.approvals} == {
            (stage, who) for stage, people in decided.items() for who in people
        }
        timeline = await applications.get(f"/v1/applications/{application_id}", headers=FIRM)
        assert timeline.json()["status"] == "approved"
