"""The firm's whole journey on the real stack, from an HTTP submission to its second tranche.

Everything real: a Tansu broker of its own, the Temporal dev server, PostgreSQL, the simulated
rail, and the applications, eligibility, review, zones and disbursement services plus the
workflow worker, each under uvicorn on a free port with its own database. An admin funds the
grant budget; the firm submits; the assigned reviewers decide every stage through the desk;
the firm accepts its offer; the space is allocated and the signing tranche paid; the firm
reports a milestone, a reviewer verifies it through the desk, and the second tranche is paid.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from contracts.envelope import utcnow
from services.disbursement.main import create_app as create_disbursement
from services.disbursement.settings import Settings as DisbursementSettings
from services.kit.logging import configure_logging
from services.zones.main import create_app as create_zones
from services.zones.settings import Settings as ZonesSettings
from tests.disbursement.helpers import running_rail
from tests.kit.helpers import eventually
from tests.review.helpers import ADMIN, auth, reviewer
from tests.review.test_full_run import FIRM, platform, status_of, submit, tasks_of

pytestmark = pytest.mark.integration


async def test_submission_to_the_second_tranche_on_the_real_stack(
    pg_url: str, temporal_dev: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    configure_logging("tests", "WARNING")
    async with (
        running_rail(tmp_path / "rail") as rail,
        platform(
            pg_url,
            temporal_dev,
            tmp_path,
            unique_name("award-run"),
            more={
                "zones": lambda kw: create_zones(ZonesSettings(**kw)),
                "disbursement": lambda kw: create_disbursement(
                    DisbursementSettings(
                        rail_url=str(rail.base_url), payout_interval_seconds=0.2, **kw
                    )
                ),
            },
        ) as running,
    ):
        clients = running.clients
        applications, desk = clients["applications"], clients["review"]
        money = clients["disbursement"]
        year = utcnow().year
        funded = await money.post(
            "/v1/budgets",
            json={
                "incentive_type": "grant",
                "fiscal_year": year,
                "amount": {"amount": "1000000.00", "currency": "EUR"},
            },
            headers=ADMIN,
        )
        assert funded.status_code == 201, funded.text
        application_id = await submit(applications)

        async def view() -> dict[str, Any]:
            response = await applications.get(f"/v1/applications/{application_id}", headers=FIRM)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        async def decide_open_tasks(until: Callable[[dict[str, Any]], bool]) -> bool:
            """Decide whatever is open in the reviewers' inboxes; True once ``until`` holds."""
            if until(await view()):
                return True
            for task in await tasks_of(desk, application_id):
                if task["status"] != "open":
                    continue
                who = task["reviewer_id"]
                response = await desk.post(
                    f"/v1/tasks/{task['task_id']}/decision",
                    json={"decision": "approve", "comment": f"{task['stage']}: sound."},
                    headers={**reviewer(who), "Idempotency-Key": str(uuid.uuid4())},
                )
                if response.status_code == 409:
                    assert response.json()["reason"] == "application_closed", response.text
                    continue
                assert response.status_code == 200, response.text
            return False

        await eventually(
            functools.partial(decide_open_tasks, lambda v: v["status"] == "offered"),
            timeout=300,
            interval=0.5,
        )
        offer = (await view())["award"]
        assert offer["offer_state"] == "open"
        assert {(u["unit_type"], u["quantity"]) for u in offer["space_offered"]} == {
            ("gpu_rack_unit", 4),
            ("office_seat", 25),
        }
        assert offer["grant"] == {"amount": "250000.00", "currency": "EUR"}

        accepted = await applications.post(
            f"/v1/applications/{application_id}/offer/accept",
            headers={**FIRM, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert accepted.status_code == 200, accepted.text

        async def signed() -> bool:
            award = (await view())["award"]
            return bool(award["allocated"]) and award["tranches"][0]["state"] == "paid"

        await eventually(signed, timeout=120, interval=0.5)
        award = (await view())["award"]
        assert sum(u["quantity"] for u in award["allocated"]) == 29
        assert [f["item"] for f in award["fast_track"]] == ["sandbox_access"]

        reported = await applications.post(
            f"/v1/applications/{application_id}/milestones",
            json={"sequence": 2, "summary": "The lab opened.", "evidence": ["doc_lab_2027"]},
            headers={**FIRM, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert reported.status_code == 200, reported.text

        def second_paid(v: dict[str, Any]) -> bool:
            return bool(v["award"]) and v["award"]["tranches"][1]["state"] == "paid"

        await eventually(
            functools.partial(decide_open_tasks, second_paid), timeout=180, interval=0.5
        )
        tasks = await tasks_of(desk, application_id)
        (milestone_task,) = [t for t in tasks if t["stage"] == "milestone"]
        assert milestone_task["reviewer_id"] == "rev.weber@gaip.example"
        final = await view()
        assert final["status"] == "offer_accepted"
        assert [t["state"] for t in final["award"]["tranches"]] == ["paid", "paid", "scheduled"]
        assert final["award"]["milestones"][0]["state"] == "verified"
        ledger = await money.get(
            f"/v1/awards/award_{application_id}/ledger", headers=auth("auditor")
        )
        assert ledger.status_code == 200, ledger.text
        assert await status_of(applications, application_id) == "offer_accepted"
