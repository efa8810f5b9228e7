"""The award journey's parts, shared by the full-stack award run and the wire test.

``award_platform`` runs the review journey's processes plus zones and disbursement (paying
through the simulated rail), and ``more`` services; :class:`Journey` drives one application
through the desk and the firm's offer and milestone routes, as the people involved would.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from contracts.envelope import utcnow
from services.disbursement.main import create_app as create_disbursement
from services.disbursement.settings import Settings as DisbursementSettings
from services.zones.main import create_app as create_zones
from services.zones.settings import Settings as ZonesSettings
from tests.disbursement.helpers import running_rail
from tests.kit.helpers import eventually
from tests.review.helpers import ADMIN, reviewer
from tests.review.test_full_run import FIRM, Platform, platform, submit, tasks_of

#: How a reviewer decides an open task: the decision body for it.
Decider = Callable[[dict[str, Any]], dict[str, Any]]


def approve(task: dict[str, Any]) -> dict[str, Any]:
    """Approve the task's stage."""
    return {"decision": "approve", "comment": f"{task['stage']}: sound."}


@asynccontextmanager
async def award_platform(
    pg_url: str,
    temporal_dev: str,
    tmp_path: Path,
    task_queue: str,
    more: dict[str, Callable[[dict[str, Any]], FastAPI]] | None = None,
    worker: dict[str, Any] | None = None,
) -> AsyncIterator[Platform]:
    """The review journey's processes, zones, disbursement on the rail, and ``more``.

    ``worker`` adds settings of the workflow worker.
    """
    async with (
        running_rail(tmp_path / "rail") as rail,
        platform(
            pg_url,
            temporal_dev,
            tmp_path,
            task_queue,
            more={
                "zones": lambda kw: create_zones(ZonesSettings(**kw)),
                "disbursement": lambda kw: create_disbursement(
                    DisbursementSettings(
                        rail_url=str(rail.base_url), payout_interval_seconds=0.2, **kw
                    )
                ),
                **(more or {}),
            },
            worker=worker,
        ) as running,
    ):
        yield running


async def fund_grants(money: httpx.AsyncClient) -> None:
    """An admin funds this year's grant budget."""
    funded = await money.post(
        "/v1/budgets",
        json={
            "incentive_type": "grant",
            "fiscal_year": utcnow().year,
            "amount": {"amount": "1000000.00", "currency": "EUR"},
        },
        headers=ADMIN,
    )
    assert funded.status_code == 201, funded.text


def signed(view: dict[str, Any]) -> bool:
    """The space is allocated and the signing tranche paid."""
    award = view["award"]
    return bool(award) and bool(award["allocated"]) and award["tranches"][0]["state"] == "paid"


def second_paid(view: dict[str, Any]) -> bool:
    """The second tranche (the first milestone's) is paid."""
    return bool(view["award"]) and view["award"]["tranches"][1]["state"] == "paid"


def offered(view: dict[str, Any]) -> bool:
    """The offer is out."""
    return bool(view["status"] == "offered")


@dataclass
class Journey:
    """One firm's application, driven through the firm's routes and the reviewers' desk."""

    applications: httpx.AsyncClient
    desk: httpx.AsyncClient
    application_id: str
    #: The ``reason`` of every 409 a decision got (the stage closed a moment before).
    refusals: list[str] = field(default_factory=list)
    #: Tasks this journey's reviewers decided (200): a reviewer does not decide one twice,
    #: though the desk may list it as open until the workflow's answer reaches it.
    decided: set[str] = field(default_factory=set)

    @classmethod
    async def submitted(cls, running: Platform) -> Journey:
        """The firm submits an application."""
        applications = running.clients["applications"]
        return cls(applications, running.clients["review"], await submit(applications))

    async def view(self) -> dict[str, Any]:
        """The application as the firm sees it."""
        response = await self.applications.get(
            f"/v1/applications/{self.application_id}", headers=FIRM
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def decide_open_tasks(
        self, until: Callable[[dict[str, Any]], bool], decide: Decider = approve
    ) -> bool:
        """Decide whatever is open in the reviewers' inboxes; True once ``until`` holds."""
        if until(await self.view()):
            return True
        for task in await tasks_of(self.desk, self.application_id):
            if task["status"] != "open" or task["task_id"] in self.decided:
                continue
            response = await self.desk.post(
                f"/v1/tasks/{task['task_id']}/decision",
                json=decide(task),
                headers={**reviewer(task["reviewer_id"]), "Idempotency-Key": str(uuid.uuid4())},
            )
            if response.status_code == 409:
                self.refusals.append(response.json()["reason"])
                continue
            assert response.status_code == 200, response.text
            self.decided.add(task["task_id"])
        return False

    async def decide_until(
        self,
        until: Callable[[dict[str, Any]], bool],
        decide: Decider = approve,
        *,
        timeout: float = 300,
    ) -> None:
        """Keep deciding open tasks until ``until`` holds of the firm's view."""

        async def done() -> bool:
            return await self.decide_open_tasks(until, decide)

        await eventually(done, timeout=timeout, interval=0.5)

    async def firm_posts(self, path: str, body: dict[str, Any] | None = None) -> None:
        """The firm acts on its application: ``POST /v1/applications/{id}/<path>``."""
        response = await self.applications.post(
            f"/v1/applications/{self.application_id}/{path}",
            json=body,
            headers={**FIRM, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert response.status_code == 200, response.text

    async def accept_offer(self) -> None:
        """The firm accepts its offer; returns once the space is allocated and tranche 1 paid."""
        await self.firm_posts("offer/accept")

        async def done() -> bool:
            return signed(await self.view())

        await eventually(done, timeout=120, interval=0.5)

    async def report_milestone(self) -> None:
        """The firm reports its first milestone (the award's second tranche)."""
        await self.firm_posts(
            "milestones",
            {"sequence": 2, "summary": "The lab opened.", "evidence": ["doc_lab_2027"]},
        )
