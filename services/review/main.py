"""Composition root of the review service: ``create_app`` wires it, ``main`` runs it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from contracts.topics import get_topic
from services.kit.runtime import Service, run_service
from services.review.handlers import record_receipt
from services.review.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def consumed_topics() -> tuple[str, ...]:
    """The topics this service consumes: ``review.events`` and ``approvals.events``."""
    return (get_topic("review.events").name, get_topic("approvals.events").name)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; the broker, database and relay start with its lifespan."""
    service = Service(settings or Settings(), migrations=MIGRATIONS)
    service.consume(
        *consumed_topics(),
        handler=record_receipt,
        description="Review and approval events feeding the reviewer inbox.",
    )
    return service.create_app(
        title="Review desk",
        description=("Reviewer desk: inbox, task detail and decisions on approval workflows."),
    )


def main() -> None:
    """Run the service until SIGTERM/SIGINT, configured by environment."""
    run_service(Settings, create_app)


if __name__ == "__main__":
    main()
