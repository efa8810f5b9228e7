"""The audit API, as the portal uses it (auditors)."""

from __future__ import annotations

from typing import Any

from services.portal.clients import ApiClient


class AuditClient(ApiClient):
    """An application's records with their proofs, its state at an instant, and the log."""

    async def history(self, application_id: str) -> dict[str, Any]:
        body: dict[str, Any] = await self.request(
            "GET", f"/v1/applications/{application_id}/history"
        )
        return body

    async def state(self, application_id: str, as_of: str | None = None) -> dict[str, Any]:
        params = {"as_of": as_of} if as_of else None
        body: dict[str, Any] = await self.request(
            "GET", f"/v1/applications/{application_id}/state", params=params
        )
        return body

    async def text(self, path: str) -> str:
        """A plain-text answer (the checkpoint, the verifier key)."""
        answer: str = await self.request("GET", path, text=True)
        return answer

    async def entries(self, start: int, end: int) -> list[dict[str, Any]]:
        body: dict[str, Any] = await self.request(
            "GET", "/v1/log/entries", params={"start": start, "end": end}
        )
        entries: list[dict[str, Any]] = body["entries"]
        return entries

    async def proof(self, path: str, **params: int) -> list[str]:
        body: dict[str, Any] = await self.request("GET", path, params=params)
        proof: list[str] = body["proof"]
        return proof
