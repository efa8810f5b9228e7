"""Settings of the audit service (env prefix ``INCENTIVES_AUDIT_``)."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import Field, SecretStr, model_validator

from services.kit.settings import InsecureSettingsError, ServiceSettings, service_settings_config

#: The log's name (checkpoint origin and key name) unless a signing key names another.
DEFAULT_ORIGIN = "incentives.example/audit"


class Settings(ServiceSettings):
    """Audit settings; common ones (broker, secrets, var dir) come from ``INCENTIVES_*``."""

    model_config = service_settings_config("audit")
    service_name: ClassVar[str] = "audit"

    port: int = Field(
        default=8003,
        ge=0,
        le=65535,
        description="HTTP port (audit API, health, OpenAPI and AsyncAPI docs).",
        examples=[8003],
    )
    origin: str = Field(
        default=DEFAULT_ORIGIN,
        min_length=1,
        max_length=200,
        pattern=r"^[^\s+]+$",
        description=(
            "The log's origin line in checkpoints and its key name, when the key is generated "
            "(a configured signing key carries its own name)."
        ),
        examples=[DEFAULT_ORIGIN],
    )
    signing_key: SecretStr | None = Field(
        default=None,
        description=(
            "Ed25519 checkpoint signing key, `PRIVATE+KEY+<name>+<key id hex>+<base64>`. "
            "Required outside dev mode; in dev mode a key is generated under the var dir on "
            "first start (`<var_dir>/audit/signing.key`)."
        ),
    )
    checkpoint_interval_s: float = Field(
        default=60.0,
        gt=0,
        le=60.0,
        description=(
            "While the log grows, the longest time between checkpoints (one is also signed "
            "after every batch that grew the log)."
        ),
        examples=[60.0],
    )

    @model_validator(mode="after")
    def _require_signing_key(self) -> Self:
        if not self.dev_mode and self.signing_key is None:
            raise InsecureSettingsError(
                "INCENTIVES_AUDIT_SIGNING_KEY is unset and INCENTIVES_DEV_MODE is false: the "
                "audit log will not sign checkpoints with a generated key; refusing to start"
            )
        return self
