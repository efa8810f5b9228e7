"""Composition root of the eligibility service: ``create_app`` wires it, ``main`` runs it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from contracts.topics import get_topic
from services.eligibility.handlers import record_receipt
from services.eligibility.settings import Settings
from services.kit.runtime import Service, run_service

MIGRATIONS = Path(__file__).parent / "migrations"


def consumed_topics() -> tuple[str, ...]:
    """The topics this service consumes: ``applications.events``."""
    return (get_topic("applications.events").name,)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; the broker, database and relay start with its lifespan."""
    service = Service(settings or Settings(), migrations=MIGRATIONS)
    service.consume(
        *consumed_topics(),
        handler=record_receipt,
        types=("application.submitted", "application.amended"),
        description="Submitted and amended applications, to assess eligibility.",
    )
    return service.create_app(
        title="Eligibility service",
        description=(
            "Evaluates applications against versioned, declarative rule sets (health endpoint"
            " only)."
        ),
    )


def main() -> None:
    """Run the service until SIGTERM/SIGINT, configured by environment."""
    run_service(Settings, create_app)


if __name__ == "__main__":
    main()
