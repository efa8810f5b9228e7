"""Settings of the disbursement service (env prefix ``INCENTIVES_DISBURSEMENT_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from services.disbursement.domain import Share, parse_schedule
from services.kit.settings import ServiceSettings, service_settings_config


class Settings(ServiceSettings):
    """Disbursement service settings.

    Common settings (broker, secrets, var dir) come from ``INCENTIVES_*``.
    """

    model_config = service_settings_config("disbursement")
    service_name: ClassVar[str] = "disbursement"

    port: int = Field(
        default=8005,
        ge=0,
        le=65535,
        description="HTTP port (budgets and ledger API, health, OpenAPI and AsyncAPI docs).",
        examples=[8005],
    )
    rail_url: str = Field(
        default="http://127.0.0.1:8010",
        description="Base URL of the payment rail (the simulated rail in the embedded platform).",
        examples=["http://127.0.0.1:8010"],
    )
    rail_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=120,
        description="How long a rail call may take before it counts "
        "as unanswered (the payment's outcome is then unknown until reconciled).",
    )
    payout_interval_seconds: float = Field(
        default=1.0, gt=0, le=3600, description="How often due payouts are sent to the rail."
    )
    payout_batch_size: int = Field(
        default=200,
        ge=1,
        le=5000,
        description="Due payouts taken per round; their answers are recorded in one transaction.",
    )
    payout_concurrency: int = Field(
        default=16,
        ge=1,
        le=256,
        description="Rail requests of one round in flight at once (50 payments each).",
    )
    reconcile_interval_seconds: float = Field(
        default=30.0,
        gt=0,
        le=86_400,
        description="How often payments with an unknown outcome are settled by asking the rail.",
    )
    tranche_schedule: str = Field(
        default="signing:40,milestone 1:30,milestone 2:30",
        description="Tranche shares of an award, `name:percent` separated by commas; total 100.",
        examples=["signing:40,milestone 1:30,milestone 2:30"],
    )

    @field_validator("tranche_schedule")
    @classmethod
    def _whole_schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value

    def schedule(self) -> tuple[Share, ...]:
        """The tranche shares."""
        return parse_schedule(self.tranche_schedule)
