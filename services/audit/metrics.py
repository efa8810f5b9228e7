"""The audit service's metrics: the log's size and how old its latest signed checkpoint is."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Gauge

from contracts.envelope import utcnow
from services.audit.store import latest_checkpoint

if TYPE_CHECKING:
    from services.audit.main import AuditService


def register_metrics(service: AuditService) -> None:
    """Declare the log size, the latest checkpoint's tree size and its age."""
    registry = service.metrics.registry
    leaves = Gauge(
        "incentives_audit_log_leaves", "Leaves in the transparency log.", registry=registry
    )
    signed = Gauge(
        "incentives_audit_checkpoint_tree_size",
        "Tree size of the latest signed checkpoint.",
        registry=registry,
    )
    age = Gauge(
        "incentives_audit_checkpoint_age_seconds",
        "Seconds since the latest checkpoint was signed.",
        registry=registry,
    )

    async def scrape() -> None:
        leaves.set(service.writer.size)
        async with service.engine.connect() as conn:
            latest = await latest_checkpoint(conn)
        if latest is not None:
            signed.set(latest.checkpoint.size)
            age.set((utcnow() - latest.signed_at).total_seconds())

    service.metrics.on_scrape(scrape, name="audit")
