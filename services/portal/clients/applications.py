"""The applications API, as the portal uses it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from services.portal.clients import ApiClient

PREFIX = "/v1/applications"


class ApplicationsClient(ApiClient):
    """Drafts, submission, amendment, withdrawal and the firm's view of an application."""

    async def list(self, **params: Any) -> dict[str, Any]:
        page: dict[str, Any] = await self.request("GET", PREFIX, params=params)
        return page

    async def get(self, application_id: str) -> dict[str, Any]:
        view: dict[str, Any] = await self.request("GET", f"{PREFIX}/{application_id}")
        return view

    async def create_draft(self, content: dict[str, Any]) -> dict[str, Any]:
        view: dict[str, Any] = await self.request("POST", PREFIX, json=content)
        return view

    async def replace_draft(self, application_id: str, content: dict[str, Any]) -> dict[str, Any]:
        view: dict[str, Any] = await self.request("PUT", f"{PREFIX}/{application_id}", json=content)
        return view

    async def submit(self, application_id: str, key: str | None = None) -> dict[str, Any]:
        view: dict[str, Any] = await self.request(
            "POST",
            f"{PREFIX}/{application_id}/submit",
            headers={"Idempotency-Key": key or str(uuid.uuid4())},
        )
        return view

    async def withdraw(self, application_id: str, reason: str) -> dict[str, Any]:
        view: dict[str, Any] = await self.request(
            "POST",
            f"{PREFIX}/{application_id}/withdraw",
            json={"reason": reason},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        return view

    async def amend(
        self, application_id: str, content: dict[str, Any], reason: str
    ) -> dict[str, Any]:
        view: dict[str, Any] = await self.request(
            "POST",
            f"{PREFIX}/{application_id}/amend",
            json={"content": content, "reason": reason},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        return view

    async def accept_offer(self, application_id: str) -> dict[str, Any]:
        view: dict[str, Any] = await self.request(
            "POST",
            f"{PREFIX}/{application_id}/offer/accept",
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        return view

    async def decline_offer(self, application_id: str, reason: str | None) -> dict[str, Any]:
        view: dict[str, Any] = await self.request(
            "POST",
            f"{PREFIX}/{application_id}/offer/decline",
            json={"reason": reason} if reason else {},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        return view

    async def report_milestone(
        self, application_id: str, sequence: int, summary: str, evidence: Sequence[str]
    ) -> dict[str, Any]:
        view: dict[str, Any] = await self.request(
            "POST",
            f"{PREFIX}/{application_id}/milestones",
            json={"sequence": sequence, "summary": summary, "evidence": [*evidence]},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        return view
