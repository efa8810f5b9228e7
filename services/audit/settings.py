"""Settings of the audit service (env prefix ``INCENTIVES_AUDIT_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.kit.settings import ServiceSettings, service_settings_config


class Settings(ServiceSettings):
    """Audit settings; common ones (broker, secrets, var dir) come from ``INCENTIVES_*``."""

    model_config = service_settings_config("audit")
    service_name: ClassVar[str] = "audit"

    port: int = Field(
        default=8003,
        ge=0,
        le=65535,
        description="HTTP port (health, OpenAPI and AsyncAPI docs).",
        examples=[8003],
    )
