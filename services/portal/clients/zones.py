"""The zones API, as the portal uses it (admins)."""

from __future__ import annotations

from typing import Any

from services.portal.clients import ApiClient

PREFIX = "/v1/zones"


class ZonesClient(ApiClient):
    """The zone catalogue with its occupancy, and resizing a unit type."""

    async def zones(self) -> list[dict[str, Any]]:
        page: dict[str, Any] = await self.request("GET", PREFIX)
        zones: list[dict[str, Any]] = page["zones"]
        return zones

    async def zone(self, zone_id: str) -> dict[str, Any]:
        view: dict[str, Any] = await self.request("GET", f"{PREFIX}/{zone_id}")
        return view

    async def resize(self, zone_id: str, unit_type: str, capacity: int) -> dict[str, Any]:
        view: dict[str, Any] = await self.request(
            "PUT", f"{PREFIX}/{zone_id}/capacity/{unit_type}", json={"capacity": capacity}
        )
        return view
