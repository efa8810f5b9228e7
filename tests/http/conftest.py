"""In-process services for HTTP tests: the ASGI app with its lifespan, on a SQLite file.

Nothing listens: requests go through httpx's ASGI transport. The broker and Temporal
addresses are free ports nobody serves, so the services start (migrated, serving) while their
background connections keep retrying; no route here needs either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.applications.main import create_app as applications_app
from services.applications.settings import Settings as ApplicationsSettings
from services.kit.logging import configure_logging
from services.review.main import create_app as review_app
from services.review.settings import Settings as ReviewSettings
from tests.openapi_check import ResponseChecker
from tests.support import free_port

#: A small body limit, so a test can pass it cheaply.
MAX_REQUEST_BYTES = 200_000


@dataclass
class InProcess:
    """A running app, a client for it, and a client that checks responses against its OpenAPI."""

    app: FastAPI
    client: httpx.AsyncClient
    checked: ResponseChecker


def _nowhere() -> str:
    return f"127.0.0.1:{free_port()}"


@asynccontextmanager
async def _serve(app: FastAPI) -> AsyncIterator[InProcess]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield InProcess(app, client, ResponseChecker(client, app.openapi()))


@pytest.fixture
async def applications(tmp_path: Path) -> AsyncIterator[InProcess]:
    """The applications API on a SQLite file."""
    configure_logging("applications", "WARNING")
    settings = ApplicationsSettings(
        var_dir=tmp_path, kafka_bootstrap=_nowhere(), max_request_bytes=MAX_REQUEST_BYTES
    )
    async with _serve(applications_app(settings)) as served:
        yield served


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[InProcess]:
    """The review desk on a SQLite file, its registry seeded with the demo reviewers."""
    configure_logging("review", "WARNING")
    settings = ReviewSettings(
        var_dir=tmp_path,
        kafka_bootstrap=_nowhere(),
        temporal_address=_nowhere(),
        seed_demo_reviewers=True,
        max_request_bytes=MAX_REQUEST_BYTES,
    )
    async with _serve(review_app(settings)) as served:
        yield served
