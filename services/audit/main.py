"""Composition root of the audit service: ``create_app`` wires it, ``main`` runs it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from contracts.topics import TOPICS
from services.audit.handlers import append_to_ledger
from services.audit.settings import Settings
from services.kit.runtime import Service, run_service

MIGRATIONS = Path(__file__).parent / "migrations"


def consumed_topics() -> tuple[str, ...]:
    """Every primary topic of the registry (the ``.dlq`` twins carry no envelopes)."""
    return tuple(topic.name for topic in TOPICS)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; the broker, database and relay start with its lifespan."""
    service = Service(settings or Settings(), migrations=MIGRATIONS)
    service.consume(
        *consumed_topics(),
        handler=append_to_ledger,
        description="Appends every message to the audit ledger, once.",
    )
    return service.create_app(
        title="Audit service",
        description="Append-only ledger of every event, for replay and verification.",
    )


def main() -> None:
    """Run the service until SIGTERM/SIGINT, configured by environment."""
    run_service(Settings, create_app)


if __name__ == "__main__":
    main()
