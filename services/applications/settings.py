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
    max_request_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        le=64 * 1_048_576,
        description=(
            "Largest request body accepted, in bytes; larger ones get a 413 problem before they "
            "are parsed. Text fields are capped by the contract, so 1 MiB is far above any real "
            "application."
        ),
        examples=[1_048_576],
    )
