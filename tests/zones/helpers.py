"""A migrated zones database with a small catalogue, and ways to look into it."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.envelope import Actor
from contracts.v1.common import Sector, UnitType, ZoneSpaceRequest
from contracts.v1.zones import HoldZoneSpace
from services.kit.db import create_engine, create_session_factory
from services.kit.events import Origin
from services.kit.migrations import upgrade_to_head
from services.kit.uow import UnitOfWorkFactory
from services.zones import commands
from services.zones.domain import Zone
from services.zones.main import MIGRATIONS

GPU = UnitType.GPU_RACK_UNIT
SEAT = UnitType.OFFICE_SEAT
WORKFLOW = Origin(Actor.system("workflow"))

SMALL = [
    Zone("z-a", "Zone A", "Lahore", frozenset({Sector.HEALTH}), {GPU: 4, SEAT: 10}),
    Zone("z-b", "Zone B", "Karachi", frozenset(), {GPU: 2}),
]


@dataclass
class Db:
    engine: AsyncEngine
    uow: UnitOfWorkFactory

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(sa.text(sql), params)).all())

    async def counter(self, zone_id: str, unit: UnitType) -> tuple[int, int, int]:
        (row,) = await self.rows(
            "SELECT capacity, held, allocated FROM zone_capacity "
            "WHERE zone_id = :z AND unit_type = :u",
            z=zone_id,
            u=unit.value,
        )
        return int(row[0]), int(row[1]), int(row[2])

    async def events(self) -> list[tuple[str, dict[str, Any]]]:
        """Every staged event, in order: (type, payload)."""
        out = []
        for (value,) in await self.rows("SELECT value FROM outbox ORDER BY id"):
            envelope = json.loads(bytes(value))
            out.append((envelope["type"], envelope["payload"]))
        return out

    async def states(self) -> dict[str, str]:
        rows = await self.rows("SELECT allocation_id, unit_type, state FROM zone_holds")
        return {f"{r[0]}/{r[1]}": r[2] for r in rows}


@asynccontextmanager
async def zones_db(url: str, zones: list[Zone] | None = None) -> AsyncIterator[Db]:
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine, MIGRATIONS)
        db = Db(engine, UnitOfWorkFactory(create_session_factory(engine)))
        async with db.uow() as uow:
            await commands.seed(uow, zones or SMALL, datetime.now().astimezone())
            await uow.commit()
        yield db
    finally:
        await engine.dispose()


def hold_command(
    allocation_id: str,
    *requests: tuple[UnitType, int, list[str]],
    allow_waitlist: bool = True,
    priority: int = 0,
    hold_seconds: int = 60,
    sector: Sector | None = None,
) -> HoldZoneSpace:
    return HoldZoneSpace(
        allocation_id=allocation_id,
        application_id=f"app-{allocation_id}",
        firm_id="ACME",
        sector=sector,
        requests=[
            ZoneSpaceRequest(unit_type=u, quantity=q, preferred_zones=p) for u, q, p in requests
        ],
        allow_waitlist=allow_waitlist,
        priority=priority,
        hold_seconds=hold_seconds,
    )


def origin() -> Origin:
    return Origin(WORKFLOW.actor, uuid.uuid4(), uuid.uuid4())
