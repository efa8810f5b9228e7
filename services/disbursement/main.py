"""Composition root of the disbursement service: ``create_app`` wires it, ``main`` runs it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from contracts.topics import get_topic
from services.disbursement.handlers import record_receipt
from services.disbursement.settings import Settings
from services.kit.runtime import Service, run_service

MIGRATIONS = Path(__file__).parent / "migrations"


def consumed_topics() -> tuple[str, ...]:
    """The topics this service consumes: ``disbursement.commands``."""
    return (get_topic("disbursement.commands").name,)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; the broker, database and relay start with its lifespan."""
    service = Service(settings or Settings(), migrations=MIGRATIONS)
    service.consume(
        *consumed_topics(),
        handler=record_receipt,
        description="Requests to open or cancel awards and to release tranches.",
    )
    return service.create_app(
        title="Disbursement service",
        description=(
            "Budgets, awards and tranche payouts; never exceeds a budget, never pays twice."
        ),
    )


def main() -> None:
    """Run the service until SIGTERM/SIGINT, configured by environment."""
    run_service(Settings, create_app)


if __name__ == "__main__":
    main()
