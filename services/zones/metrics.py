"""The zones service's metrics: occupancy per zone and unit type, read when scraped."""

from __future__ import annotations

import sqlalchemy as sa
from prometheus_client import Gauge

from services.kit.runtime import Service
from services.zones.models import ZoneCapacity


def register_metrics(service: Service) -> None:
    """Declare ``incentives_zone_units{zone,unit_type,state}`` (capacity, held, allocated)."""
    units = Gauge(
        "incentives_zone_units",
        "Technology-zone units per zone and unit type: capacity, held and allocated.",
        ["zone", "unit_type", "state"],
        registry=service.metrics.registry,
    )
    table = ZoneCapacity.__table__  # type: ignore[attr-defined]
    query = sa.select(
        table.c.zone_id, table.c.unit_type, table.c.capacity, table.c.held, table.c.allocated
    )

    async def scrape() -> None:
        async with service.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        for zone, unit_type, capacity, held, allocated in rows:
            units.labels(zone, unit_type, "capacity").set(capacity)
            units.labels(zone, unit_type, "held").set(held)
            units.labels(zone, unit_type, "allocated").set(allocated)

    service.metrics.on_scrape(scrape, name="zones")
