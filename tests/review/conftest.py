"""One review desk for the package, on the real broker, PostgreSQL and the Temporal dev server.

The desk runs under uvicorn on a free port for the whole package (start-up, migrations, the
demo seed and the consumer group join are paid once); each test uses its own application and
task ids. A fake ``IncentiveApproval`` worker polls a task queue of its own on the same Temporal
server, so decisions can be tested without the real workflow.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from contracts.envelope import Envelope
from contracts.topics import TOPICS
from services.kit.db import create_engine
from services.kit.logging import configure_logging
from services.kit.messaging import create_producer, ensure_topics
from services.review.main import create_app
from services.review.settings import Settings
from tests.kit.helpers import eventually, fresh_database
from tests.review.fake_workflow import FakeApproval
from tests.review.helpers import ADMIN, publish
from tests.support import free_port, healthy, serving

#: Seconds the package desk waits for a workflow's answer (short: one test waits it out).
DECISION_TIMEOUT = 3.0


@dataclass
class Desk:
    """The running desk and what tests need to look at it."""

    client: httpx.AsyncClient
    app: FastAPI
    engine: AsyncEngine
    producer: AIOKafkaProducer

    async def send(self, *envelopes: Envelope[Any]) -> None:
        """Publish events for the desk to consume."""
        await publish(self.producer, *envelopes)

    async def task(self, task_id: str, headers: dict[str, str] = ADMIN) -> dict[str, Any] | None:
        """The task's detail as ``headers`` sees it, or ``None`` when it answers 404."""
        response = await self.client.get(f"/v1/tasks/{task_id}", headers=headers)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_task(
        self,
        task_id: str,
        check: Callable[[dict[str, Any]], bool] = lambda _: True,
        *,
        timeout: float = 30,
    ) -> dict[str, Any]:
        """Wait until the task is projected and ``check(detail)`` holds; return the detail."""
        seen: dict[str, dict[str, Any]] = {}

        async def ready() -> bool:
            detail = await self.task(task_id)
            if detail is None:
                return False
            seen["detail"] = detail
            return check(detail)

        await eventually(ready, timeout=timeout)
        return seen["detail"]


@pytest.fixture(scope="package")
async def desk(
    pg_url: str,
    kafka_bootstrap: str,
    temporal_dev: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Desk]:
    """The review desk, healthy (migrated, seeded, consuming, connected to Temporal)."""
    configure_logging("review", "WARNING")
    await ensure_topics(
        kafka_bootstrap,
        [(name, topic.partitions) for topic in TOPICS for name in (topic.name, topic.dlq)],
    )
    async with fresh_database(pg_url, "desk") as database_url:
        port = free_port()
        settings = Settings(
            kafka_bootstrap=kafka_bootstrap,
            temporal_address=temporal_dev,
            database_url=database_url,
            port=port,
            var_dir=Path(tmp_path_factory.mktemp("desk")),
            seed_demo_reviewers=True,
            decision_timeout=DECISION_TIMEOUT,
        )
        app = create_app(settings)
        producer = create_producer(kafka_bootstrap, client_id="review-tests")
        await producer.start()
        try:
            async with serving(app, port) as client:
                await eventually(lambda: healthy(client), timeout=60)
                engine = create_engine(database_url)
                try:
                    yield Desk(client=client, app=app, engine=engine, producer=producer)
                finally:
                    await engine.dispose()
        finally:
            await producer.stop()


@dataclass
class FakeWorkflows:
    """Starts fake IncentiveApproval workflows that a worker polls."""

    client: Client
    task_queue: str

    async def start(self, application_id: str, *, task_queue: str | None = None) -> Any:
        """Start the fake workflow for ``application_id`` (the workflow id)."""
        return await self.client.start_workflow(
            FakeApproval.run,
            application_id,
            id=application_id,
            task_queue=task_queue or self.task_queue,
        )


@pytest.fixture(scope="package")
async def fake_workflows(
    temporal_dev: str, unique_name: Callable[[str], str]
) -> AsyncIterator[FakeWorkflows]:
    """A worker running :class:`FakeApproval` on a task queue of its own."""
    client = await Client.connect(temporal_dev, data_converter=pydantic_data_converter)
    task_queue = unique_name("review-fake")
    async with Worker(client, task_queue=task_queue, workflows=[FakeApproval]):
        yield FakeWorkflows(client=client, task_queue=task_queue)
