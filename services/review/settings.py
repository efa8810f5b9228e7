"""Settings of the review service (env prefix ``INCENTIVES_REVIEW_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.kit.settings import ServiceSettings, service_settings_config


class Settings(ServiceSettings):
    """Review desk settings.

    Common settings (broker, secrets, var dir) come from ``INCENTIVES_*``.
    """

    model_config = service_settings_config("review")
    service_name: ClassVar[str] = "review"

    port: int = Field(
        default=8002,
        ge=0,
        le=65535,
        description="HTTP port (health, OpenAPI and AsyncAPI docs).",
        examples=[8002],
    )
