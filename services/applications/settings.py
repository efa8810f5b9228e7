"""Settings of the applications service (env prefix ``INCENTIVES_APPLICATIONS_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.kit.settings import ServiceSettings, service_settings_config


class Settings(ServiceSettings):
    """Applications API settings.

    Common settings (broker, secrets, var dir) come from ``INCENTIVES_*``.
    """

    model_config = service_settings_config("applications")
    service_name: ClassVar[str] = "applications"

    port: int = Field(
        default=8001,
        ge=0,
        le=65535,
        description="HTTP port (health, OpenAPI and AsyncAPI docs).",
        examples=[8001],
    )
