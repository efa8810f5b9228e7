"""Settings of the review service (env prefix ``INCENTIVES_REVIEW_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from services.kit.settings import ServiceSettings, service_settings_config


class Settings(ServiceSettings):
    """Review desk settings.

    Common settings (broker, Temporal address, secrets, var dir) come from ``INCENTIVES_*``.
    """

    model_config = service_settings_config("review")
    service_name: ClassVar[str] = "review"

    port: int = Field(
        default=8002,
        ge=0,
        le=65535,
        description="HTTP port (the desk API, health, OpenAPI and AsyncAPI docs).",
        examples=[8002],
    )
    temporal_namespace: str = Field(
        default="default",
        min_length=1,
        description="Temporal namespace of the IncentiveApproval workflows.",
        examples=["default"],
    )
    decision_timeout: float = Field(
        default=15.0,
        gt=0,
        le=300,
        description=(
            "Seconds a decision may wait for the workflow to accept or refuse it before the desk "
            "answers 503 (the reviewer retries with the same Idempotency-Key)."
        ),
        examples=[15.0],
    )
    temporal_retry_interval: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds between attempts to connect to Temporal while it is unreachable.",
        examples=[1.0],
    )
    seed_demo_reviewers: bool | None = Field(
        default=None,
        description=(
            "Fill an empty reviewer registry with the demo reviewers at start-up. "
            "Unset means: only in dev mode (`INCENTIVES_DEV_MODE`)."
        ),
        examples=[True, False, None],
    )

    @model_validator(mode="after")
    def _seed_by_default_in_dev_mode(self) -> Settings:
        if self.seed_demo_reviewers is None:
            self.seed_demo_reviewers = self.dev_mode
        return self
