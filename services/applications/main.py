"""Composition root of the applications service: ``create_app`` wires it, ``main`` runs it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from contracts.topics import TOPICS
from services.applications.handlers import record_receipt
from services.applications.settings import Settings
from services.kit.runtime import Service, run_service

MIGRATIONS = Path(__file__).parent / "migrations"


def consumed_topics() -> tuple[str, ...]:
    """The topics this service consumes: every ``*.events`` topic."""
    return tuple(t.name for t in TOPICS if not t.is_command_topic)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; the broker, database and relay start with its lifespan."""
    service = Service(settings or Settings(), migrations=MIGRATIONS)
    service.consume(
        *consumed_topics(),
        handler=record_receipt,
        description="Downstream events feeding the firm-facing status projection.",
    )
    return service.create_app(
        title="Applications API",
        description=("Firm-facing API: drafts, submissions, amendments, withdrawals and status."),
    )


def main() -> None:
    """Run the service until SIGTERM/SIGINT, configured by environment."""
    run_service(Settings, create_app)


if __name__ == "__main__":
    main()
