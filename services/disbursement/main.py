"""Composition root of the disbursement service: ``create_app`` wires it, ``main`` runs it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI

from contracts.topics import get_topic
from services.disbursement import payouts
from services.disbursement.api import router
from services.disbursement.commands import PRODUCER
from services.disbursement.handlers import HANDLED, DisbursementCommands
from services.disbursement.metrics import register_metrics
from services.disbursement.rail import RailClient
from services.disbursement.settings import Settings
from services.kit.logging import get_logger
from services.kit.retry import every
from services.kit.runtime import Service, run_service

MIGRATIONS = Path(__file__).parent / "migrations"

log = get_logger(__name__)


def consumed_topics() -> tuple[str, ...]:
    """The topics this service consumes: ``disbursement.commands``."""
    return (get_topic("disbursement.commands").name,)


def _background(service: Service, settings: Settings) -> APIRouter:
    """A router whose lifespan runs the payout worker, reconciliation and the year-end budget
    wake, after migrations."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rail = RailClient(settings.rail_url, timeout=settings.rail_timeout_seconds)
        app.state.rail = rail
        watch = payouts.RailWatch(service.waits)  # /health: degraded, waiting for the rail
        tasks = [
            asyncio.create_task(
                every(
                    "payouts",
                    settings.payout_interval_seconds,
                    lambda: payouts.pay_due(
                        service.uow,
                        rail,
                        watch=watch,
                        limit=settings.payout_batch_size,
                        concurrency=settings.payout_concurrency,
                    ),
                ),
                name="disbursement-payouts",
            ),
            asyncio.create_task(
                every(
                    "reconciliation",
                    settings.reconcile_interval_seconds,
                    lambda: payouts.reconcile(service.uow, rail),
                ),
                name="disbursement-reconcile",
            ),
            asyncio.create_task(
                every(
                    "budget wake",
                    settings.reconcile_interval_seconds,
                    lambda: payouts.wake_for_new_year(service.uow),
                ),
                name="disbursement-budget-wake",
            ),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await rail.aclose()

    return APIRouter(lifespan=lifespan)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; broker, database, relay, payouts and reconciliation start with it."""
    settings = settings or Settings()
    service = Service(settings, migrations=MIGRATIONS)
    events = get_topic("disbursement.events")
    service.sends(
        events.name,
        events.types,
        producer=PRODUCER,
        description="Awards, tranche payments, cancellations and budget shortfalls.",
    )
    service.consume(
        *consumed_topics(),
        handler=DisbursementCommands(),
        types=HANDLED,
        description="Requests to open or cancel awards and release tranches.",
    )
    register_metrics(service)
    app = service.create_app(
        title="Disbursement service",
        description=(
            "Program budgets, a double-entry ledger, award tranche schedules and payouts "
            "through the payment rail; never exceeds a budget and never pays twice."
        ),
        routers=[router, _background(service, settings)],
    )
    app.state.settings = settings
    return app


def main() -> None:
    """Run the service until SIGTERM/SIGINT, configured by environment."""
    run_service(Settings, create_app)


if __name__ == "__main__":
    main()
