"""The firm's whole journey on the real stack, from an HTTP submission to its second tranche.

Everything real: a Tansu broker of its own, the Temporal dev server, PostgreSQL, the simulated
rail, and the applications, eligibility, review, zones and disbursement services plus the
workflow worker, each under uvicorn on a free port with its own database. An admin funds the
grant budget; the firm submits; the assigned reviewers decide every stage through the desk;
the firm accepts its offer; the space is allocated and the signing tranche paid; the firm
reports a milestone, a reviewer verifies it through the desk, and the second tranche is paid.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from services.kit.logging import configure_logging
from tests.review.award_journey import (
    Journey,
    award_platform,
    fund_grants,
    offered,
    second_paid,
)
from tests.review.helpers import auth
from tests.review.test_full_run import status_of, tasks_of

pytestmark = pytest.mark.integration


async def test_submission_to_the_second_tranche_on_the_real_stack(
    pg_url: str, temporal_dev: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    configure_logging("tests", "WARNING")
    async with award_platform(pg_url, temporal_dev, tmp_path, unique_name("award-run")) as running:
        money = running.clients["disbursement"]
        await fund_grants(money)
        journey = await Journey.submitted(running)
        application_id = journey.application_id

        await journey.decide_until(offered)
        offer = (await journey.view())["award"]
        assert offer["offer_state"] == "open"
        assert {(u["unit_type"], u["quantity"]) for u in offer["space_offered"]} == {
            ("gpu_rack_unit", 4),
            ("office_seat", 25),
        }
        assert offer["grant"] == {"amount": "250000.00", "currency": "EUR"}

        await journey.accept_offer()
        award = (await journey.view())["award"]
        assert sum(u["quantity"] for u in award["allocated"]) == 29
        assert [f["item"] for f in award["fast_track"]] == ["sandbox_access"]

        await journey.report_milestone()
        await journey.decide_until(second_paid, timeout=180)
        tasks = await tasks_of(journey.desk, application_id)
        (milestone_task,) = [t for t in tasks if t["stage"] == "milestone"]
        assert milestone_task["reviewer_id"] == "rev.weber@gaip.example"
        final = await journey.view()
        assert final["status"] == "offer_accepted"
        assert [t["state"] for t in final["award"]["tranches"]] == ["paid", "paid", "scheduled"]
        assert final["award"]["milestones"][0]["state"] == "verified"
        # A decision that came after its stage closed was refused for that one reason.
        assert set(journey.refusals) <= {"application_closed"}, journey.refusals
        ledger = await money.get(
            f"/v1/awards/award_{application_id}/ledger", headers=auth("auditor")
        )
        assert ledger.status_code == 200, ledger.text
        assert await status_of(journey.applications, application_id) == "offer_accepted"
