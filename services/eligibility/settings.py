"""Settings of the eligibility service (env prefix ``INCENTIVES_ELIGIBILITY_``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from services.eligibility.rulefiles import SHIPPED_RULES_DIR
from services.kit.settings import ServiceSettings, service_settings_config


class Settings(ServiceSettings):
    """Eligibility service settings.

    Common settings (broker, secrets, var dir) come from ``INCENTIVES_*``.
    """

    model_config = service_settings_config("eligibility")
    service_name: ClassVar[str] = "eligibility"

    port: int = Field(
        default=8006,
        ge=0,
        le=65535,
        description="HTTP port (health, OpenAPI and AsyncAPI docs).",
        examples=[8006],
    )
    rules_dir: Path = Field(
        default=SHIPPED_RULES_DIR,
        description=(
            "Folder of rule-set files (*.toml, one per version), or a single file. Loaded and "
            "validated once at start; an invalid file stops the service. Default: the rule "
            "sets shipped with the service."
        ),
        examples=["/etc/incentives/rulesets"],
    )
