"""Point-in-time state on the real stack: the log's answer for a past instant is what the firm saw.

A Tansu broker of its own, the Temporal dev server, PostgreSQL, and the applications,
eligibility, review and audit services plus the workflow worker. The firm's application goes
under review, is asked for information, is amended, goes under review again and is approved. At
each of those moments (each one waiting on a person, so nothing else is in flight) the test
records the firm's own view and the time; afterwards the audit API's state as of each recorded
time must give the same status, revision and reasons, and the CLI's table must show it. Then
`incentives audit prove` proves every decision of the run, and fails both assessments once the
rule-set file they recorded has been edited.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from services.audit.main import create_app as create_audit
from services.audit.settings import Settings as AuditSettings
from services.cli.main import app as cli
from services.eligibility.rulefiles import SHIPPED_RULES_DIR
from services.kit.logging import configure_logging
from tests.applications.helpers import content
from tests.audit.helpers import AUDITOR, auth
from tests.kit.helpers import eventually
from tests.review.helpers import reviewer
from tests.review.test_full_run import FIRM, platform, status_of, submit, tasks_of

pytestmark = pytest.mark.integration


async def firm_view(applications: httpx.AsyncClient, application_id: str) -> dict[str, Any]:
    response = await applications.get(f"/v1/applications/{application_id}", headers=FIRM)
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


async def decide(desk: httpx.AsyncClient, task: dict[str, Any], decision: str, **body: Any) -> int:
    response = await desk.post(
        f"/v1/tasks/{task['task_id']}/decision",
        json={"decision": decision, "comment": f"{task['stage']}: {decision}", **body},
        headers={**reviewer(task["reviewer_id"]), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code in (200, 409), response.text
    return response.status_code


async def test_state_as_of_each_moment_is_what_the_firm_saw(
    pg_url: str, temporal_dev: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    configure_logging("tests", "WARNING")
    more = {"audit": lambda kw: create_audit(AuditSettings(**kw))}
    async with platform(pg_url, temporal_dev, tmp_path, unique_name("state"), more) as running:
        applications, desk = running.clients["applications"], running.clients["review"]
        audit = running.clients["audit"]
        before = datetime.now(UTC)
        application_id = await submit(applications)
        moments: list[tuple[datetime, dict[str, Any]]] = []

        async def settled(status: str, open_tasks: int = 0) -> list[dict[str, Any]]:
            """Wait for ``status`` (and that many open tasks); record the firm's view then."""

            async def there() -> bool:
                if await status_of(applications, application_id) != status:
                    return False
                tasks = await tasks_of(desk, application_id)
                return sum(1 for t in tasks if t["status"] == "open") >= open_tasks

            await eventually(there, timeout=120, interval=0.3)
            view = await firm_view(applications, application_id)
            moments.append((datetime.now(UTC), view))
            assert view["status"] == status
            return [t for t in await tasks_of(desk, application_id) if t["status"] == "open"]

        # Technical and security reviews open together.
        open_tasks = await settled("under_review", open_tasks=2)
        technical = next(t for t in open_tasks if t["stage"] == "technical")
        await decide(
            desk, technical, "request_information", requested_fields=["commitments.training"]
        )
        await settled("information_requested")
        amended = await applications.post(
            f"/v1/applications/{application_id}/amend",
            json={
                "content": content(commitments__training__engineers_per_year=45),
                "reason": "More engineers trained each year.",
            },
            headers={**FIRM, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert amended.status_code == 200, amended.text
        await settled("under_review", open_tasks=2)

        async def approve_open_tasks() -> bool:
            if await status_of(applications, application_id) == "approved":
                return True
            for task in await tasks_of(desk, application_id):
                if task["status"] == "open":
                    await decide(desk, task, "approve")
            return False

        await eventually(approve_open_tasks, timeout=240, interval=0.5)
        await settled("approved")
        assert [view["revision"] for _, view in moments] == [1, 1, 2, 2]

        async def state(as_of: datetime) -> httpx.Response:
            return await audit.get(
                f"/v1/applications/{application_id}/state",
                params={"as_of": as_of.isoformat()},
                headers=AUDITOR,
            )

        # The log catches up with the end of the journey. Its topics are consumed apart, so the
        # approval can be logged before the last task assignments: wait for those too.
        async def logged_approval() -> bool:
            response = await state(datetime.now(UTC))
            if response.status_code != 200 or response.json()["status"] != "approved":
                return False
            logged = {a["task_id"] for a in response.json()["assignments"]}
            return {t["task_id"] for t in await tasks_of(desk, application_id)} <= logged

        await eventually(logged_approval, timeout=60)

        for at, view in moments:
            response = await state(at)
            assert response.status_code == 200, response.text
            rebuilt = response.json()
            assert (rebuilt["status"], rebuilt["revision"], rebuilt["reasons"]) == (
                view["status"],
                view["revision"],
                view["status_reasons"],
            ), at
            assert rebuilt["firm_id"] == "ACME"

        final = (await state(moments[-1][0])).json()
        stages = [(d["stage"], d["outcome"]) for d in final["decisions"]]
        assert stages[0] == ("eligibility", "eligible")
        assert ("technical", "request_information") in stages
        # Log order across topics: the last committee vote may be logged after the approval.
        assert [s for s in stages if s[0] == "final"] == [("final", "approved")]
        assert [d["outcome"] for d in final["decisions"] if d["stage"] == "eligibility"] == [
            "eligible",
            "eligible",
        ]
        reviewers = {d["reviewer_id"] for d in final["decisions"] if d["reviewer_id"]}
        assert reviewers <= {a["reviewer_id"] for a in final["assignments"]}

        # Before the submission the log knows nothing of the application.
        early = await state(before - timedelta(seconds=1))
        assert early.status_code == 404, early.text
        assert early.headers["content-type"].startswith("application/problem+json")
        naive = await audit.get(
            f"/v1/applications/{application_id}/state",
            params={"as_of": "2026-12-01T10:00:00"},
            headers=AUDITOR,
        )
        assert naive.status_code == 422, naive.text
        assert naive.json()["errors"][0]["parameter"] == "as_of"
        firm = await audit.get(f"/v1/applications/{application_id}/state", headers=auth("firm"))
        assert firm.status_code == 403, firm.text

        def audit_cli(*args: str) -> Result:
            token = AUDITOR["Authorization"].removeprefix("Bearer ")
            return CliRunner().invoke(
                cli, ["audit", "--url", str(audit.base_url), "--token", token, *args]
            )

        # The CLI shows the state at the moment the firm was asked for information.
        asked_at = moments[1][0].isoformat()
        result = await asyncio.to_thread(audit_cli, "state", application_id, "--as-of", asked_at)
        assert result.exit_code == 0, result.output
        assert "information_requested" in result.output
        assert "request_information" in result.output

        # Every decision of the run proves: both assessments, every review decision.
        def prove(*extra: str) -> Result:
            return audit_cli("prove", application_id, "--review-url", str(desk.base_url), *extra)

        reviews = sum(d["stage"] not in ("eligibility", "final") for d in final["decisions"])
        proven = await asyncio.to_thread(prove)
        assert proven.exit_code == 0, proven.output
        assert proven.output.count("PROVEN") == 2 + reviews, proven.output
        assert "FAILED" not in proven.output
        assert "UNPROVEN" not in proven.output

        # A rule-set file edited after the decision no longer proves it.
        version = final["decisions"][0]["rule_set_version"]
        rules = tmp_path / "rules"
        shutil.copytree(SHIPPED_RULES_DIR, rules)
        edited = next(rules.glob(f"*{version}.toml"))
        edited.write_text(edited.read_text() + "\n# tightened later\n")
        failed = await asyncio.to_thread(prove, "--rules", str(rules))
        assert failed.exit_code == 1, failed.output
        assert failed.output.count("FAILED") == 2, failed.output
        assert "edited after the decision" in failed.output
