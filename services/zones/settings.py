"""Settings of the zones service (env prefix ``INCENTIVES_ZONES_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.kit.settings import ServiceSettings, service_settings_config


class Settings(ServiceSettings):
    """Zones service settings.

    Common settings (broker, secrets, var dir) come from ``INCENTIVES_*``.
    """

    model_config = service_settings_config("zones")
    service_name: ClassVar[str] = "zones"

    port: int = Field(
        default=8004,
        ge=0,
        le=65535,
        description="HTTP port (health, OpenAPI and AsyncAPI docs).",
        examples=[8004],
    )
