"""The demo's firms against a scripted applications API: an act that did not take is tried again."""

from __future__ import annotations

import json
from typing import Any

import httpx

from services.cli.demo.api import Api, Endpoints
from services.cli.demo.load import LoadRun, Tracked

APP = "app_demo_firm"


def view(*, milestone_due: int | None) -> dict[str, Any]:
    """The firm's view: tranches 1 and 2 paid, milestone 2 reported, 3 scheduled."""
    return {
        "id": APP,
        "status": "offer_accepted",
        "updated_at": "2026-12-03T10:00:00Z",
        "award": {
            "tranches": [
                {"sequence": 1, "state": "paid"},
                {"sequence": 2, "state": "paid"},
                {"sequence": 3, "state": "scheduled"},
            ],
            "milestones": [{"sequence": 2, "state": "reported"}],
            "milestone_due": milestone_due,
        },
    }


async def test_a_milestone_refused_with_409_is_reported_again_once_due() -> None:
    answers = iter([409, 200])
    posts: list[dict[str, Any]] = []

    def applications(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posts.append({"key": request.headers["Idempotency-Key"], **json.loads(request.content)})
            status = next(answers)
            body = {"reason": "milestone_not_due"} if status == 409 else view(milestone_due=None)
            return httpx.Response(status, json=body)
        return httpx.Response(200, json=view(milestone_due=3))

    api = Api(Endpoints({"applications": "http://applications.test"}))
    await api.clients["applications"].aclose()
    api.clients["applications"] = httpx.AsyncClient(
        base_url="http://applications.test", transport=httpx.MockTransport(applications)
    )
    async with api:
        run = LoadRun(api, 1, accept_offers=True)
        app = Tracked(number=1, firm_id="FIRM-1", application_id=APP, status="offer_accepted")
        await run.report_due_milestone(app)
        assert app.reported == set(), "the 409 did not report it"
        await run.report_due_milestone(app)
    assert [p["sequence"] for p in posts] == [3, 3]
    assert posts[0]["key"] == posts[1]["key"], "the same act keeps its key"
    assert app.reported == {3}
    assert run.errors == []
