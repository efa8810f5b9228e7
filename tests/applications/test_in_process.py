"""The applications API in process: ASGI transport, its SQLite default, its consumer fed directly.

No broker or PostgreSQL: the pattern of ``tests.inprocess`` for the firm-facing API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from services.applications.main import create_app
from services.applications.settings import Settings
from services.kit.consumer import Outcome
from tests.applications.helpers import assessed, auth, content, key, new_firm
from tests.inprocess import InProcess, in_process_settings

BASE = "/v1/applications"

StartApp = Callable[..., Awaitable[InProcess]]


@pytest.fixture
async def api(in_process: StartApp, tmp_path: Path) -> InProcess:
    return await in_process(create_app(in_process_settings(Settings, tmp_path)))


async def test_a_submission_commits_its_event_to_the_outbox_and_stays_the_firms(
    api: InProcess,
) -> None:
    firm = auth("firm", new_firm(), sub="alice@acme.example")
    created = await api.client.post(
        f"{BASE}/submissions", json=content(), headers={**firm, "Idempotency-Key": key()}
    )
    assert created.status_code == 201, created.text
    application_id = created.json()["id"]

    (submitted,) = await api.outbox()  # nothing is published: no broker runs
    assert (submitted.type, submitted.subject) == ("application.submitted", application_id)
    assert submitted.actor.id == "alice@acme.example"  # every action records its actor

    other = auth("firm", new_firm())
    assert (await api.client.get(f"{BASE}/{application_id}", headers=other)).status_code == 404
    assert (await api.client.get(f"{BASE}/{application_id}", headers=firm)).status_code == 200


async def test_a_delivered_assessment_updates_the_firms_view_once(api: InProcess) -> None:
    firm = auth("firm", new_firm())
    created = await api.client.post(
        f"{BASE}/submissions", json=content(), headers={**firm, "Idempotency-Key": key()}
    )
    application_id = created.json()["id"]
    decision = assessed(application_id, "eligible")

    assert await api.deliver(decision) is Outcome.PROCESSED
    view = (await api.client.get(f"{BASE}/{application_id}", headers=firm)).json()
    assert view["status"] == "eligible"
    assert await api.deliver(decision) is Outcome.DUPLICATE
    again = (await api.client.get(f"{BASE}/{application_id}", headers=firm)).json()
    assert again["timeline"] == view["timeline"]  # the duplicate changed nothing
