"""The review desk API, as the portal uses it."""

from __future__ import annotations

import uuid
from typing import Any

from services.portal.clients import ApiClient

#: The reviewer registry.
REGISTRY = "/v1/registry/reviewers"


class ReviewClient(ApiClient):
    """The inbox, task pages, decisions, escalations and the reviewer registry."""

    async def inbox(self, **params: Any) -> dict[str, Any]:
        page: dict[str, Any] = await self.request("GET", "/v1/inbox", params=params)
        return page

    async def task(self, task_id: str) -> dict[str, Any]:
        detail: dict[str, Any] = await self.request("GET", f"/v1/tasks/{task_id}")
        return detail

    async def decide(
        self,
        task_id: str,
        decision: str,
        comment: str,
        requested_fields: list[str],
        fast_track_declined: list[dict[str, str]] | None = None,
        *,
        in_place: bool = False,
    ) -> dict[str, Any]:
        """Decide my task, or (``in_place``, supervisors) an escalated task of another's."""
        body: dict[str, Any] = {"decision": decision, "comment": comment}
        if requested_fields:
            body["requested_fields"] = requested_fields
        if fast_track_declined:
            body["fast_track_declined"] = fast_track_declined
        result: dict[str, Any] = await self.request(
            "POST",
            f"/v1/supervisor/tasks/{task_id}/decision"
            if in_place
            else f"/v1/tasks/{task_id}/decision",
            json=body,
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        return result

    async def escalations(self, **params: Any) -> dict[str, Any]:
        page: dict[str, Any] = await self.request(
            "GET", "/v1/supervisor/escalations", params=params
        )
        return page

    async def reviewers(self) -> list[dict[str, Any]]:
        page: dict[str, Any] = await self.request("GET", REGISTRY)
        items: list[dict[str, Any]] = page["items"]
        return items

    async def reviewer(self, reviewer_id: str) -> dict[str, Any]:
        entry: dict[str, Any] = await self.request("GET", f"{REGISTRY}/{reviewer_id}")
        return entry

    async def add_reviewer(self, entry: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = await self.request("POST", REGISTRY, json=entry)
        return created

    async def replace_reviewer(self, reviewer_id: str, entry: dict[str, Any]) -> dict[str, Any]:
        replaced: dict[str, Any] = await self.request(
            "PUT", f"{REGISTRY}/{reviewer_id}", json=entry
        )
        return replaced

    async def reassign(self, task_id: str, reviewer_id: str, reason: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST",
            f"/v1/supervisor/tasks/{task_id}/reassign",
            json={"reviewer_id": reviewer_id, "reason": reason},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        return result
