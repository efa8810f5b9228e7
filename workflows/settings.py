"""Settings of the workflow worker (env prefix ``INCENTIVES_WORKER_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.kit.settings import ServiceSettings, service_settings_config
from workflows.approval import TASK_QUEUE


class Settings(ServiceSettings):
    """Worker settings. Common settings (broker, Temporal, var dir) come from ``INCENTIVES_*``.

    The worker's own database holds only the bridge's processed-message marks and its outbox.
    """

    model_config = service_settings_config("worker")
    service_name: ClassVar[str] = "worker"

    port: int = Field(
        default=8007,
        ge=0,
        le=65535,
        description="HTTP port (health and AsyncAPI docs).",
        examples=[8007],
    )
    task_queue: str = Field(
        default=TASK_QUEUE,
        description="Temporal task queue polled by the worker and used to start workflows.",
        examples=[TASK_QUEUE],
    )
    temporal_namespace: str = Field(
        default="default", description="Temporal namespace.", examples=["default"]
    )
