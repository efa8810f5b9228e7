"""Composition root of the zones service: ``create_app`` wires it, ``main`` runs it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from contracts.topics import get_topic
from services.kit.runtime import Service, run_service
from services.zones.handlers import record_receipt
from services.zones.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def consumed_topics() -> tuple[str, ...]:
    """The topics this service consumes: ``zones.commands``."""
    return (get_topic("zones.commands").name,)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; the broker, database and relay start with its lifespan."""
    service = Service(settings or Settings(), migrations=MIGRATIONS)
    service.consume(
        *consumed_topics(),
        handler=record_receipt,
        description="Requests to allocate or release technology-zone space.",
    )
    return service.create_app(
        title="Zones service",
        description=(
            "Technology-zone catalogue, capacities and allocations; never over-allocates."
        ),
    )


def main() -> None:
    """Run the service until SIGTERM/SIGINT, configured by environment."""
    run_service(Settings, create_app)


if __name__ == "__main__":
    main()
