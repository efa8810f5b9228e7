"""Intake end to end on the real broker and PostgreSQL.

A firm submits over HTTP; the applications service publishes through its outbox; the
eligibility service decides with the rule set in force; the firm's status view follows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from services.eligibility.main import create_app as create_eligibility
from services.eligibility.rulefiles import load_catalog
from services.eligibility.settings import Settings as EligibilitySettings
from tests.applications.conftest import Running
from tests.applications.helpers import auth, content, key, new_firm
from tests.kit.helpers import eventually, fresh_database
from tests.support import free_port, healthy, serving

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def eligibility(
    running: Running, pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[None]:
    """The eligibility service on its own database, consuming what applications publishes."""
    async with fresh_database(pg_url, "elig") as database_url:
        port = free_port()
        settings = EligibilitySettings(
            kafka_bootstrap=running.bootstrap,
            database_url=database_url,
            port=port,
            var_dir=Path(tmp_path_factory.mktemp("elig")),
        )
        async with serving(create_eligibility(settings), port) as client:
            await eventually(lambda: healthy(client), timeout=60)
            yield


async def submit(running: Running, firm: str, body: dict[str, Any]) -> str:
    response = await running.client.post(
        "/v1/applications/submissions",
        json=body,
        headers={**auth(firm=firm), "Idempotency-Key": key()},
    )
    assert response.status_code == 201, response.text
    application_id: str = response.json()["id"]
    return application_id


async def status_becomes(running: Running, firm: str, app_id: str, wanted: str) -> dict[str, Any]:
    """Poll the firm's view until the status is ``wanted`` (within seconds)."""
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        response = await running.client.get(f"/v1/applications/{app_id}", headers=auth(firm=firm))
        seen.update(response.json())
        return response.status_code == 200 and seen["status"] == wanted

    await eventually(reached, timeout=20)
    return seen


def _version_in_force(view: dict[str, Any]) -> str:
    """The shipped rule-set version in force when the application was submitted."""
    return load_catalog().in_force(datetime.fromisoformat(view["submitted_at"])).version


@pytest.mark.usefixtures("eligibility")
async def test_a_complete_application_becomes_eligible(running: Running) -> None:
    firm = new_firm()
    app_id = await submit(running, firm, content())

    view = await status_becomes(running, firm, app_id, "eligible")

    assert view["rule_set_version"] == _version_in_force(view)
    decision = view["eligibility"]
    assert decision["outcome"] == "eligible"
    assert decision["rule_set_id"] == "gaip-eligibility"
    assert len(decision["rule_set_sha256"]) == 64
    assert decision["rule_results"], "every rule's outcome is shown"
    assert all(rule["passed"] for rule in decision["rule_results"])
    assert [entry["status"] for entry in view["timeline"]][-2:] == ["submitted", "eligible"]


@pytest.mark.usefixtures("eligibility")
async def test_an_application_outside_the_priority_sectors_is_ineligible_with_reasons(
    running: Running,
) -> None:
    firm = new_firm()
    app_id = await submit(running, firm, content(proposal__sector="other"))

    view = await status_becomes(running, firm, app_id, "ineligible")

    failed = [r for r in view["eligibility"]["rule_results"] if not r["passed"]]
    assert [r["rule_id"] for r in failed] == ["priority_sector"]
    assert view["status_reasons"] == [failed[0]["explanation"]]
    assert view["rule_set_version"] == _version_in_force(view)
