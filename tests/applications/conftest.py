"""One applications service for the package, on the real broker and a fresh PostgreSQL database.

The service runs under uvicorn on a free port for the whole package (start-up, migrations and
the consumer group join are paid once); each test uses its own firm id and application ids.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.topics import TOPICS
from services.applications.main import create_app
from services.applications.settings import Settings
from services.kit.db import create_engine
from services.kit.logging import configure_logging
from services.kit.messaging import create_producer, ensure_topics
from services.kit.runtime import Service
from tests.kit.helpers import eventually, fresh_database, scalar
from tests.support import free_port, healthy, serving


@dataclass
class Running:
    """The running service and what tests need to look at it."""

    client: httpx.AsyncClient
    app: FastAPI
    engine: AsyncEngine
    bootstrap: str

    @property
    def service(self) -> Service:
        service: Service = self.app.state.service
        return service

    async def count(self, sql: str, **params: Any) -> int:
        """``SELECT count(*) ...`` on the service's database."""
        return int(await scalar(self.engine, sql, **params) or 0)


@pytest.fixture(scope="package")
async def running(
    pg_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    """The applications service, healthy (database migrated, broker connected, consuming)."""
    # JSON lines, as in production: the development renderer spends seconds drawing the
    # locals of the deliberately failed request's traceback.
    configure_logging("applications", "WARNING")
    await ensure_topics(
        kafka_bootstrap,
        [(name, topic.partitions) for topic in TOPICS for name in (topic.name, topic.dlq)],
    )
    async with fresh_database(pg_url, "apps") as database_url:
        port = free_port()
        settings = Settings(
            kafka_bootstrap=kafka_bootstrap,
            database_url=database_url,
            port=port,
            var_dir=Path(tmp_path_factory.mktemp("apps")),
            max_request_bytes=256 * 1024,
        )
        app = create_app(settings)
        async with serving(app, port) as client:
            await eventually(lambda: healthy(client), timeout=60)
            engine = create_engine(database_url)
            try:
                yield Running(client=client, app=app, engine=engine, bootstrap=kafka_bootstrap)
            finally:
                await engine.dispose()


@pytest.fixture(scope="package")
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """A producer standing in for the other services."""
    producer = create_producer(kafka_bootstrap, client_id="applications-tests")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()
