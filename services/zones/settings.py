"""Settings of the zones service (env prefix ``INCENTIVES_ZONES_``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from services.kit.settings import ServiceSettings, service_settings_config

#: The catalogue shipped with the project.
DEFAULT_CATALOGUE = Path(__file__).parent / "catalogue.toml"


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
        description="HTTP port (admin API, health, OpenAPI and AsyncAPI docs).",
        examples=[8004],
    )
    catalogue: Path = Field(
        default=DEFAULT_CATALOGUE,
        description="TOML catalogue of zones, seeded on start (zones already stored are kept).",
        examples=[str(DEFAULT_CATALOGUE)],
    )
    default_hold_seconds: int = Field(
        default=14 * 24 * 3600,
        ge=1,
        description="How long a hold lasts when the command does not say (the offer period).",
        examples=[1_209_600],
    )
    sweep_interval_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="How often expired holds are swept (freeing capacity, waking the waitlist).",
        examples=[5.0],
    )
