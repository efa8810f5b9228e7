"""Composition root of the zones service: ``create_app`` wires it, ``main`` runs it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI

from contracts.envelope import utcnow
from contracts.topics import get_topic
from services.kit.logging import get_logger
from services.kit.retry import every
from services.kit.runtime import Service, run_service
from services.zones import commands
from services.zones.api import router
from services.zones.commands import PRODUCER
from services.zones.domain import parse_catalogue
from services.zones.handlers import HANDLED, make_handler
from services.zones.metrics import register_metrics
from services.zones.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"

log = get_logger(__name__)


def consumed_topics() -> tuple[str, ...]:
    """The topics this service consumes: ``zones.commands``."""
    return (get_topic("zones.commands").name,)


async def seed_catalogue(service: Service, settings: Settings) -> int:
    """Add the catalogue file's zones that the database does not have yet."""
    zones = parse_catalogue(settings.catalogue.read_text(encoding="utf-8"))
    async with service.uow() as uow:
        added = await commands.seed(uow, zones, utcnow())
        await uow.commit()
    if added:
        log.info("catalogue seeded", zones_added=added, catalogue=str(settings.catalogue))
    return added


async def sweep_once(service: Service) -> int:
    """Expire the holds that are due, in one unit of work; returns how many expired."""
    async with service.uow() as uow:
        expired = await commands.expire_due(uow, utcnow())
        await uow.commit()
    return expired


def _background(service: Service, settings: Settings) -> APIRouter:
    """A router whose lifespan seeds the catalogue and runs the expiry sweep.

    FastAPI runs it inside the service's own lifespan, so the database is migrated first.
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await seed_catalogue(service, settings)
        task = asyncio.create_task(
            every(
                "hold expiry sweep",
                settings.sweep_interval_seconds,
                lambda: sweep_once(service),
            ),
            name="zones-expiry-sweep",
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return APIRouter(lifespan=lifespan)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; the broker, database, relay and sweep start with its lifespan."""
    settings = settings or Settings()
    service = Service(settings, migrations=MIGRATIONS)
    events = get_topic("zones.events")
    service.sends(
        events.name,
        events.types,
        producer=PRODUCER,
        description="Holds, allocations, waitlist entries, expiries and releases.",
    )
    service.consume(
        *consumed_topics(),
        handler=make_handler(default_hold_seconds=settings.default_hold_seconds),
        types=HANDLED,
        description="Requests to hold, confirm, allocate or release technology-zone space.",
    )
    register_metrics(service)
    return service.create_app(
        title="Zones service",
        description=(
            "Technology-zone catalogue, capacities, holds, allocations and waitlists; the "
            "database refuses over-allocation."
        ),
        routers=[router, _background(service, settings)],
    )


def main() -> None:
    """Run the service until SIGTERM/SIGINT, configured by environment."""
    run_service(Settings, create_app)


if __name__ == "__main__":
    main()
