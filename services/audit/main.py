"""Composition root of the audit service: ``create_app`` wires it, ``main`` runs it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from fastapi import FastAPI

from contracts.topics import TOPICS
from services.audit.api import audit_router
from services.audit.consumer import LogConsumer, logged_topics, subscribe_log
from services.audit.keys import load_signer
from services.audit.metrics import register_metrics
from services.audit.settings import Settings
from services.audit.store import LogWriter
from services.kit.asyncapi import Receives
from services.kit.errors import DependencyUnavailable
from services.kit.logging import get_logger
from services.kit.runtime import Service, run_service

MIGRATIONS = Path(__file__).parent / "migrations"

log = get_logger(__name__)


def consumed_topics() -> tuple[str, ...]:
    """Every topic of the registry and its ``.dlq`` twin: the log records all of them."""
    return tuple(logged_topics())


class AuditService(Service):
    """The kit's service plus the log's writer and its checkpoint ticker."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, migrations=MIGRATIONS)
        self.signer = load_signer(settings)
        self.writer = LogWriter(self.engine, self.signer)
        self.log_consumer = LogConsumer(self.writer)
        self.checkpoint_interval_s = settings.checkpoint_interval_s
        self._ticker: asyncio.Task[None] | None = None
        group_id = f"{settings.consumer_group_prefix}{self.name}"
        subscribe_log(self.broker, self.log_consumer, group_id=group_id)
        # The AsyncAPI document: every topic and its .dlq twin read; nothing dead-lettered.
        self.receives.append(
            Receives(
                consumer=self.name,
                group_id=group_id,
                topics=tuple(topic.name for topic in TOPICS),
                description="Appends every record, byte for byte, to the transparency log.",
                dead_letters=False,
                reads_dead_letters=True,
            )
        )
        self.extra_checks["log_writer"] = self._writer_health

    async def _writer_health(self) -> str | None:
        waiting = self.log_consumer.waiting_for
        if waiting is not None:
            raise DependencyUnavailable(f"the log writer waits for the {waiting}")
        return f"tree size {self.writer.size}"

    async def start(self) -> None:
        """Migrate and connect (the kit), then load the tree and start the checkpoint ticker."""
        await super().start()
        await self.writer.load()
        self._ticker = asyncio.create_task(self._tick(), name="audit-checkpoints")

    async def _tick(self) -> None:
        # Every growing batch is signed already; this covers a writer that appended but could
        # not sign (say, its transaction committed and the process then lost its database).
        while True:
            await asyncio.sleep(self.checkpoint_interval_s)
            try:
                await self.writer.sign_if_unsigned()
            except Exception as exc:
                log.warning("periodic checkpoint failed", error=f"{type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        await super().stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; the broker, database, writer and ticker start with its lifespan."""
    service = AuditService(settings or Settings())
    register_metrics(service)
    app = service.create_app(
        title="Audit service",
        description=(
            "Transparency log of every record on every topic: an RFC 9162 Merkle tree with "
            "signed C2SP checkpoints, inclusion and consistency proofs, read only."
        ),
        routers=[audit_router()],
    )
    app.state.audit_verifier = service.signer.verifier
    return app


def main() -> None:
    """Run the service until SIGTERM/SIGINT, configured by environment."""
    run_service(Settings, create_app)


if __name__ == "__main__":
    main()
