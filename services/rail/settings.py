"""Settings of the simulated rail (env prefix ``INCENTIVES_RAIL_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.kit.settings import ServiceSettings, service_settings_config


class Settings(ServiceSettings):
    """Simulated rail settings; common ones (var dir, dev mode) come from ``INCENTIVES_*``."""

    model_config = service_settings_config("rail")
    service_name: ClassVar[str] = "rail"

    port: int = Field(
        default=8010, ge=0, le=65535, description="HTTP port of the rail.", examples=[8010]
    )
