"""Composition root of the workflow worker: the Temporal worker plus the Kafka→Temporal bridge.

One process runs both, sharing one Temporal client. The worker registers the publish activity
(Kafka) and the review desk's candidates activity (HTTP, authenticated as ``system:workflows``
with a short-lived admin token signed by the shared JWT key). Start-up order matters:

1. the kit's service lifespan migrates the worker database and connects to the broker in the
   background (``/health`` answers 503 until it is up);
2. in the background too, the Temporal client connects, waiting with one log line while the
   server is unreachable, and the worker starts polling the task queue;
3. the bridge's handler waits for that client, so no fact is consumed before it can be
   forwarded (a bounded wait each time, raising ``DependencyUnavailable`` for ``temporal``: the
   consumer retries and its ``/health`` says it waits for Temporal).

On shutdown the worker and the client are closed before the interpreter exits (a live Temporal
core at exit can abort the process, temporalio sdk-python #300).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Final

import httpx
from fastapi import FastAPI
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from contracts import catalog
from contracts.topics import get_topic
from services.kit import tracing
from services.kit.auth import Principal, Role, TokenService
from services.kit.consumer import Incoming
from services.kit.errors import DependencyUnavailable
from services.kit.logging import get_logger
from services.kit.messaging import Record
from services.kit.retry import wait_until_available
from services.kit.runtime import Service, run_service
from services.kit.uow import UnitOfWork
from workflows.activities import Publisher, ReviewDesk
from workflows.approval import PRODUCER, WORKFLOW_ACTOR, IncentiveApproval
from workflows.bridge import (
    APPLICATION_TYPES,
    DISBURSEMENT_COMMAND_TYPES,
    DISBURSEMENT_TYPES,
    ELIGIBILITY_TYPES,
    ZONE_COMMAND_TYPES,
    ZONE_TYPES,
    Bridge,
)
from workflows.settings import Settings
from workflows.telemetry import PublishedEventMetrics, WorkflowRunMetrics

MIGRATIONS = Path(__file__).parent / "migrations"

log = get_logger(__name__)

#: What IncentiveApproval workflows publish through the publish activity, per topic: the
#: worker's AsyncAPI document is built from it, and the recorded histories and the wire test
#: check that nothing else is published. The workflow is the only producer of review.events
#: and approvals.events, so it may publish every type they carry.
PUBLISHED: Final[Mapping[str, tuple[str, ...]]] = {
    "review.events": get_topic("review.events").types,
    "approvals.events": get_topic("approvals.events").types,
    # The firm did not amend within the information period: the workflow withdraws it.
    "applications.events": ("application.withdrawn",),
    # Stages 5-7: hold, confirm and release space; open, pay and cancel the award.
    "zones.commands": ZONE_COMMAND_TYPES,
    "disbursement.commands": DISBURSEMENT_COMMAND_TYPES,
}

#: How long one attempt of a bridge handler waits for the first Temporal connection.
CONNECT_WAIT_SECONDS = 5.0
#: How long the Temporal health check may take before /health reports it down.
HEALTH_TIMEOUT = timedelta(seconds=2)
#: Lifetime of the worker's own tokens: one per desk call, so they can be short.
SERVICE_TOKEN_TTL = timedelta(minutes=5)


def service_token_issuer(settings: Settings) -> Callable[[], str]:
    """Issues the worker's bearer tokens: ``system:workflows`` with the admin role."""
    tokens = TokenService(settings.jwt_secret)
    principal = Principal(sub=f"system:{WORKFLOW_ACTOR}", role=Role.ADMIN, name="Workflow worker")
    return lambda: tokens.issue(principal, ttl=SERVICE_TOKEN_TTL)


def review_desk(settings: Settings) -> ReviewDesk:
    """The candidates activity's dependencies, from settings."""
    return ReviewDesk(
        settings.review_url,
        service_token_issuer(settings),
        timeout=settings.review_timeout_seconds,
    )


def temporal_runtime(metrics_address: str) -> tuple[Runtime, str]:
    """A Temporal runtime serving the SDK's metrics on ``metrics_address`` (empty: a free port).

    Returns the runtime and the address it serves on.
    """
    if not metrics_address:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            metrics_address = f"127.0.0.1:{probe.getsockname()[1]}"
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=metrics_address,
                counters_total_suffix=True,
                durations_as_seconds=True,
            )
        )
    )
    return runtime, metrics_address


async def connect_temporal(
    address: str,
    namespace: str,
    *,
    interval: float = 1.0,
    within: float | None = None,
    runtime: Runtime | None = None,
) -> Client:
    """Connect to Temporal, retrying quietly: one log line while it is unreachable.

    The client traces its calls (and the worker using it, its workflows and activities) when
    tracing is on.
    """
    interceptors = tracing.temporal_interceptors()
    try:
        return await wait_until_available(
            lambda: Client.connect(
                address,
                namespace=namespace,
                data_converter=pydantic_data_converter,
                interceptors=interceptors,
                runtime=runtime,
            ),
            name=f"Temporal {address}",
            interval=interval,
            deadline=within,
        )
    except Exception as exc:
        raise DependencyUnavailable(f"Temporal {address} not reachable") from exc


#: The dedupe scope of the messages the workflow hands to the outbox (``processed_messages``):
#: a retried publish activity stages its message once.
OUTBOX_SCOPE: Final = "workflow-outbox"


def outbox_publisher(service: Service) -> Callable[[Sequence[Record]], Awaitable[None]]:
    """The publish activity's way out: the worker's outbox, one row per event id.

    The broker is a cache of the outboxes: a record it acknowledged and then lost with a
    restart (before anyone consumed it) comes back when the worker republishes its outbox to
    the new broker. The activity returns once the rows are committed; the relay publishes them.
    """

    async def publish(records: Sequence[Record]) -> None:
        async with service.uow() as uow:
            for record in records:
                envelope = catalog.decode(record.value)
                if await uow.mark_processed(OUTBOX_SCOPE, envelope.event_id):
                    uow.add_outbox(envelope, record.topic)
            await uow.commit()

    return publish


class TemporalSide:
    """The worker's Temporal client, its polling worker and the bridge that uses the client."""

    def __init__(self, settings: Settings, service: Service) -> None:
        self.settings = settings
        self.service = service
        self.client: Client | None = None
        self.worker: Worker | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._worker_run: asyncio.Task[None] | None = None
        self.events = PublishedEventMetrics(service.metrics.registry)
        #: Where the Temporal SDK serves its runtime metrics, once connected.
        self.sdk_metrics_url: str | None = None
        service.metrics.append_exposition(self._sdk_metrics)

    async def bridge_handler(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Forward one fact once Temporal is connected (the consumer waits meanwhile)."""
        await self._wait_connected()
        await self._bridge().handle(incoming, uow)

    async def refusal_handler(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Forward one dead-lettered command as a refusal, once Temporal is connected."""
        await self._wait_connected()
        await self._bridge().handle_refusal(incoming, uow)

    async def _wait_connected(self) -> None:
        # Bounded, so the consumer's retry (and /health) know what the handler waits for.
        try:
            async with asyncio.timeout(CONNECT_WAIT_SECONDS):
                await self._connected.wait()
        except TimeoutError:
            raise DependencyUnavailable(
                f"Temporal {self.settings.temporal_address} not connected yet",
                dependency="temporal",
            ) from None

    def _bridge(self) -> Bridge:
        if self.client is None:  # shutting down: leave the record for redelivery
            raise DependencyUnavailable("Temporal client closed", dependency="temporal")
        return Bridge(self.client, self.settings.task_queue, self.settings.approval_policy())

    async def health(self) -> str | None:
        """The Temporal check of ``/health``."""
        if self.client is None or self.worker is None:
            raise DependencyUnavailable(f"Temporal {self.settings.temporal_address} not connected")
        if not await self.client.service_client.check_health(timeout=HEALTH_TIMEOUT):
            raise DependencyUnavailable(f"Temporal {self.settings.temporal_address} not serving")
        return f"polling {self.settings.task_queue}"

    def start(self) -> None:
        """Connect and start polling in the background."""
        self._task = asyncio.create_task(self._run(), name="temporal-connect")

    async def _sdk_metrics(self) -> bytes:
        """The Temporal SDK's exposition (workflow runs, tasks, activities, pollers)."""
        if self.sdk_metrics_url is None:
            return b""
        async with httpx.AsyncClient(timeout=2.0) as http:
            response = await http.get(self.sdk_metrics_url)
            response.raise_for_status()
            return response.content

    async def _run(self) -> None:
        runtime, metrics_address = temporal_runtime(self.settings.temporal_metrics_address)
        self.client = await connect_temporal(
            self.settings.temporal_address, self.settings.temporal_namespace, runtime=runtime
        )
        self.sdk_metrics_url = f"http://{metrics_address}/metrics"
        self.worker = Worker(
            self.client,
            task_queue=self.settings.task_queue,
            workflows=[IncentiveApproval],
            activities=[
                Publisher(
                    outbox_publisher(self.service), on_published=self.events.published
                ).publish_message,
                review_desk(self.settings).candidate_reviewers,
            ],
            interceptors=[WorkflowRunMetrics()],
        )
        self._worker_run = asyncio.create_task(self.worker.run(), name="temporal-worker")
        self._connected.set()
        log.info(
            "temporal worker polling",
            address=self.settings.temporal_address,
            task_queue=self.settings.task_queue,
        )

    async def stop(self) -> None:
        """Stop polling and drop the client before the process exits."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.worker is not None and self._worker_run is not None:
            await self.worker.shutdown()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker_run
        self.worker = None
        self.client = None


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the worker's ASGI app (health and AsyncAPI); everything starts with its lifespan."""
    settings = settings or Settings()
    service = Service(settings, migrations=MIGRATIONS)
    temporal = TemporalSide(settings, service)
    service.consume(
        get_topic("applications.events").name,
        handler=temporal.bridge_handler,
        name="worker-bridge-applications",
        types=APPLICATION_TYPES,
        description=(
            "Submissions, amendments, withdrawals, offer answers and milestone reports, "
            "forwarded to IncentiveApproval workflows."
        ),
    )
    service.consume(
        get_topic("eligibility.events").name,
        handler=temporal.bridge_handler,
        name="worker-bridge-eligibility",
        types=ELIGIBILITY_TYPES,
        description="Eligibility decisions, forwarded to IncentiveApproval workflows.",
    )
    service.consume(
        get_topic("zones.events").name,
        handler=temporal.bridge_handler,
        name="worker-bridge-zones",
        types=ZONE_TYPES,
        description="Holds, waitlist entries, refusals and allocations, forwarded to workflows.",
    )
    service.consume(
        get_topic("disbursement.events").name,
        handler=temporal.bridge_handler,
        name="worker-bridge-disbursement",
        types=DISBURSEMENT_TYPES,
        description="Awards opened, budget shortfalls and tranche payments, for the workflows.",
    )
    service.consume(
        get_topic("zones.commands").name,
        get_topic("disbursement.commands").name,
        handler=temporal.refusal_handler,
        name="worker-bridge-refusals",
        types=(*ZONE_COMMAND_TYPES, *DISBURSEMENT_COMMAND_TYPES),
        dead_letters_of=True,
        description=(
            "The workflows' zone and award commands that their service dead-lettered, forwarded"
            " to the workflow as a refusal: it compensates and tells the firm why."
        ),
    )
    for topic, types in PUBLISHED.items():
        service.sends(
            get_topic(topic).name,
            types,
            producer=PRODUCER,
            description="Published by IncentiveApproval workflows through the publish activity.",
        )
    service.extra_checks["temporal"] = temporal.health
    app = service.create_app(
        title="Workflow worker",
        description=(
            "Runs the IncentiveApproval Temporal workflows and bridges Kafka facts into them"
            " (health and AsyncAPI endpoints only)."
        ),
    )
    service.on_start(temporal.start)
    service.on_stop(temporal.stop)
    app.state.temporal = temporal
    return app


def main() -> None:
    """Run the worker until SIGTERM/SIGINT, configured by environment."""
    run_service(Settings, create_app)


if __name__ == "__main__":
    main()
