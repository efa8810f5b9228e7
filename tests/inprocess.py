"""The in-process HTTP tier: a service's real app, with no server, broker or Temporal running.

- HTTP goes through ``httpx.ASGITransport``, straight into the app: no port is bound.
- The database is the service's embedded default, a SQLite file in the test's temp dir, and
  the app's lifespan migrates it as in production.
- Messages are fed to the service's own idempotent consumers with :meth:`InProcess.deliver`,
  and what the service emits is read back from its outbox.
- The broker and Temporal addresses point at closed ports: the service keeps trying them in
  the background (and its ``/health`` says so) while the test drives everything else.

Use the ``in_process`` fixture (``tests/conftest.py``)::

    async def test_x(in_process, tmp_path):
        desk = await in_process(create_app(in_process_settings(Settings, tmp_path)))
        response = await desk.client.get("/v1/inbox", headers=...)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from contracts import catalog
from contracts.envelope import Envelope
from contracts.topics import topic_for_type
from services.cli.embedded import free_port
from services.kit.consumer import ConsumedRecord, Outcome
from services.kit.runtime import Service

_S = TypeVar("_S")


def record_of(env: Envelope[Any], offset: int = 0) -> ConsumedRecord:
    """The Kafka record ``env`` would be, for feeding a consumer without a broker."""
    return ConsumedRecord(
        topic=topic_for_type(env.type).name,
        partition=0,
        offset=offset,
        key=env.subject.encode(),
        value=catalog.encode(env),
        headers=tuple(env.headers()),
    )


def in_process_settings(settings_class: type[_S], var_dir: Path, **overrides: Any) -> _S:
    """A service's settings on its SQLite default in ``var_dir``, with unreachable dependencies."""
    unreachable = f"127.0.0.1:{free_port()}"
    values: dict[str, Any] = {
        "var_dir": var_dir,
        "kafka_bootstrap": unreachable,
        "port": free_port(),
        **overrides,
    }
    if "temporal_address" in getattr(settings_class, "model_fields", {}):
        values.setdefault("temporal_address", unreachable)
    return settings_class(**values)


@dataclass
class InProcess:
    """A service app running in the test's event loop."""

    app: FastAPI
    client: httpx.AsyncClient

    @property
    def service(self) -> Service:
        service: Service = self.app.state.service
        return service

    async def deliver(self, envelope: Envelope[Any], *, consumer: str | None = None) -> Outcome:
        """Hand ``envelope`` to the service's consumer (the only one, or the one named)."""
        consumers = [c for c in self.service.consumers if consumer in (None, c.name)]
        assert len(consumers) == 1, [c.name for c in self.service.consumers]
        return await consumers[0].process(record_of(envelope))

    async def outbox(self) -> list[Envelope[Any]]:
        """Every message the service wrote to its outbox, oldest first."""
        async with self.service.engine.connect() as conn:
            rows = await conn.execute(sa.text("SELECT value FROM outbox ORDER BY id"))
            return [catalog.decode(_bytes(row[0])) for row in rows]


def _bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


@contextlib.asynccontextmanager
async def running_in_process(app: FastAPI) -> AsyncIterator[InProcess]:
    """Run ``app``'s lifespan and yield a client speaking ASGI to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://in-process") as client:
            yield InProcess(app=app, client=client)
