"""The disbursement API, as the portal uses it (admins)."""

from __future__ import annotations

from typing import Any

from services.portal.clients import ApiClient


class DisbursementClient(ApiClient):
    """Budgets and their ledgers."""

    async def budgets(self) -> list[dict[str, Any]]:
        page: dict[str, Any] = await self.request("GET", "/v1/budgets")
        budgets: list[dict[str, Any]] = page["budgets"]
        return budgets

    async def ledger(self, budget_id: str) -> dict[str, Any]:
        ledger: dict[str, Any] = await self.request("GET", f"/v1/budgets/{budget_id}/ledger")
        return ledger
