"""``GET /metrics`` of a service, in process: HTTP per route template, the outbox, no secrets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI

from services.applications.main import create_app
from services.applications.settings import Settings
from services.kit.metrics import parse_exposition as samples
from services.kit.metrics import sample_total as value
from services.kit.settings import DEV_JWT_SECRET
from tests.applications.helpers import auth, content, key, new_firm
from tests.inprocess import InProcess, in_process_settings
from tests.support import free_port


async def test_requests_are_counted_per_route_template_and_the_outbox_backlog_shows(
    in_process: Callable[[FastAPI], Awaitable[InProcess]], tmp_path: Path
) -> None:
    service = await in_process(create_app(in_process_settings(Settings, tmp_path)))
    firm = new_firm()
    headers = auth(firm=firm)
    token = headers["Authorization"].removeprefix("Bearer ")

    created = await service.client.post(
        "/v1/applications/submissions",
        json=content(),
        headers={**headers, "Idempotency-Key": key()},
    )
    assert created.status_code == 201, created.text
    application_id = created.json()["id"]
    assert (
        await service.client.get(f"/v1/applications/{application_id}", headers=headers)
    ).status_code == 200
    assert (await service.client.get("/v1/applications/nope")).status_code == 401

    scrape = await service.client.get("/metrics")

    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    text = scrape.text
    found = samples(text)
    by_template = "/v1/applications/{application_id}"
    assert (
        value(found, "http_requests_total", handler="/v1/applications/submissions", status="201")
        == 1
    )
    assert value(found, "http_requests_total", handler=by_template, status="200", method="GET") == 1
    assert value(found, "http_requests_total", handler=by_template, status="401") == 1
    assert value(found, "http_request_duration_seconds_count", handler=by_template) == 2
    # Nothing is published without a broker: the submission waits in the outbox.
    assert value(found, "incentives_outbox_backlog") >= 1
    # Labels name templates, never a path with its id, a token or the signing key.
    assert application_id not in text
    assert token not in text
    assert DEV_JWT_SECRET not in text


async def test_the_portal_exposes_its_requests_too(
    in_process: Callable[[FastAPI], Awaitable[InProcess]], tmp_path: Path
) -> None:
    from services.portal.main import create_app as create_portal
    from services.portal.settings import Settings as PortalSettings

    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = in_process_settings(
        PortalSettings, tmp_path, applications_url=nowhere, review_url=nowhere
    )
    portal = await in_process(create_portal(settings))
    assert (await portal.client.get("/sign-in")).status_code == 200

    found = samples((await portal.client.get("/metrics")).text)

    assert value(found, "http_requests_total", handler="/sign-in", status="200") == 1
