"""Settings shared by every process, and the base for each service's own settings.

Common fields are read from ``INCENTIVES_<FIELD>`` whatever the subclass's prefix, so one
environment configures the whole platform; service fields (port, database URL) use the service's
own prefix, e.g. ``INCENTIVES_APPLICATIONS_PORT``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.kit.auth import AUDIENCE, MAX_TOKEN_LIFETIME, ClaimMapping
from services.kit.db import is_sqlite

#: The signing key used when none is configured. Good enough for a laptop, refused elsewhere.
DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me"  # noqa: S105

#: HS256 keys shorter than the hash output weaken the MAC (RFC 7518 section 3.2).
MIN_SECRET_LENGTH = 32

#: Hosts where a plain-http provider URL is acceptable outside dev mode (nothing crosses a
#: network).
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _common(name: str) -> AliasChoices:
    # The alias wins over any subclass env_prefix, so these stay INCENTIVES_<NAME> everywhere,
    # while the field name still works as a constructor keyword.
    return AliasChoices(name, f"INCENTIVES_{name.upper()}")


class InsecureSettingsError(ValueError):
    """Raised when a production-like configuration would run with a development secret."""


class CommonSettings(BaseSettings):
    """Configuration every process of the platform shares (env prefix ``INCENTIVES_``)."""

    model_config = SettingsConfigDict(
        env_prefix="INCENTIVES_",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092",
        validation_alias=_common("kafka_bootstrap"),
        description="Kafka bootstrap servers, `host:port[,host:port...]`.",
        examples=["127.0.0.1:9092", "kafka-1:9092,kafka-2:9092"],
    )
    temporal_address: str = Field(
        default="127.0.0.1:7233",
        validation_alias=_common("temporal_address"),
        description="Temporal frontend address, `host:port`.",
        examples=["127.0.0.1:7233"],
    )
    var_dir: Path = Field(
        default=Path("./var"),
        validation_alias=_common("var_dir"),
        description="State folder for SQLite files, logs, pid files and the Temporal database.",
        examples=["./var", "/var/lib/incentives"],
    )
    dev_mode: bool = Field(
        default=True,
        validation_alias=_common("dev_mode"),
        description=(
            "Development conveniences (a built-in JWT signing key). Must be false in production; "
            "the service then refuses to start with the default or a short key."
        ),
        examples=[True, False],
    )
    jwt_secret: SecretStr = Field(
        default=SecretStr(DEV_JWT_SECRET),
        validation_alias=_common("jwt_secret"),
        description=(
            f"HS256 signing key for bearer tokens, at least {MIN_SECRET_LENGTH} characters "
            "outside dev mode."
        ),
    )
    jwt_max_lifetime: timedelta = Field(
        default=MAX_TOKEN_LIFETIME,
        gt=timedelta(0),
        validation_alias=_common("jwt_max_lifetime"),
        description=(
            "The longest lifetime (from `iat` to `exp`) of a bearer token that is accepted, and "
            "that `incentives token` mints. Seconds or an ISO 8601 duration (`P30D`, `PT8H`)."
        ),
        examples=["P30D", "PT8H", 86400],
    )
    oidc_issuer: str = Field(
        default="",
        validation_alias=_common("oidc_issuer"),
        description=(
            "Issuer URL of the OpenID provider whose access tokens every service accepts "
            "(RS256/ES256, verified against its JWKS). Empty: no provider. HTTPS outside dev "
            "mode, except on the loopback interface."
        ),
        examples=["", "https://login.example.org/realms/incentives"],
    )
    oidc_audience: str = Field(
        default=AUDIENCE,
        min_length=1,
        validation_alias=_common("oidc_audience"),
        description="The `aud` the provider's access tokens must carry.",
        examples=[AUDIENCE],
    )
    oidc_jwks_url: str = Field(
        default="",
        validation_alias=_common("oidc_jwks_url"),
        description="The provider's key set; empty: the `jwks_uri` of its discovery document.",
        examples=["", "https://login.example.org/realms/incentives/protocol/openid-connect/certs"],
    )
    oidc_subject_claim: str = Field(
        default="sub",
        min_length=1,
        validation_alias=_common("oidc_subject_claim"),
        description="The claim of a provider token holding the user id.",
        examples=["sub", "email"],
    )
    oidc_role_claim: str = Field(
        default="role",
        min_length=1,
        validation_alias=_common("oidc_role_claim"),
        description=(
            "The claim holding the role (a string, or a list naming exactly one of the "
            "platform's roles); a dotted path reaches into nested claims."
        ),
        examples=["role", "roles", "realm_access.roles"],
    )
    oidc_firm_claim: str = Field(
        default="firm_id",
        min_length=1,
        validation_alias=_common("oidc_firm_claim"),
        description="The claim holding a firm user's firm id.",
        examples=["firm_id"],
    )
    oidc_name_claim: str = Field(
        default="name",
        min_length=1,
        validation_alias=_common("oidc_name_claim"),
        description="The claim holding the display name.",
        examples=["name"],
    )
    log_level: LogLevel = Field(
        default="INFO",
        validation_alias=_common("log_level"),
        description="Minimum level of emitted log records.",
        examples=["INFO", "DEBUG"],
    )
    consumer_group_prefix: str = Field(
        default="",
        max_length=100,
        validation_alias=_common("consumer_group_prefix"),
        description=(
            "Prefix of every Kafka consumer group, so that several deployments (staging and "
            "production, or isolated test runs) can share one cluster."
        ),
        examples=["", "staging-"],
    )

    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=_common("otlp_endpoint"),
        description=(
            "OpenTelemetry collector to export traces to by OTLP/HTTP (`/v1/traces` is "
            "appended). Unset: no trace is recorded or exported."
        ),
        examples=["http://otel-collector:4318"],
    )

    @property
    def oidc_claims(self) -> ClaimMapping:
        """How the provider's claims name a principal (``services.kit.auth``)."""
        return ClaimMapping(
            subject=self.oidc_subject_claim,
            role=self.oidc_role_claim,
            firm=self.oidc_firm_claim,
            name=self.oidc_name_claim,
        )

    @model_validator(mode="after")
    def _refuse_insecure_secret(self) -> CommonSettings:
        if self.dev_mode:
            return self
        for name in ("oidc_issuer", "oidc_jwks_url"):
            url = getattr(self, name)
            parts = urlsplit(url)
            if url and parts.scheme != "https" and parts.hostname not in _LOOPBACK:
                raise InsecureSettingsError(
                    f"INCENTIVES_{name.upper()} must be an https URL outside dev mode"
                )
        secret = self.jwt_secret.get_secret_value()
        if secret == DEV_JWT_SECRET or len(secret) < MIN_SECRET_LENGTH:
            # Raised as a ValueError so pydantic reports it as a settings validation error,
            # which stops the process before it serves a single request.
            raise InsecureSettingsError(
                "INCENTIVES_JWT_SECRET is unset, the development default, or shorter than "
                f"{MIN_SECRET_LENGTH} characters, and INCENTIVES_DEV_MODE is false: "
                "refusing to start"
            )
        return self


class ServiceSettings(CommonSettings):
    """Base for one service's settings; subclasses set ``service_name`` and ``model_config``.

    Example::

        class Settings(ServiceSettings):
            model_config = service_settings_config("audit")
            service_name: ClassVar[str] = "audit"
            port: int = Field(default=8003, description="HTTP port.")
    """

    service_name: ClassVar[str] = "service"
    #: True for a process that uses no database and no broker (the portal): nothing about
    #: them is logged or created.
    without_data: ClassVar[bool] = False

    host: str = Field(
        default="127.0.0.1",
        description="Interface the HTTP server binds to; `0.0.0.0` inside a container.",
        examples=["127.0.0.1", "0.0.0.0"],
    )
    port: int = Field(
        default=8000,
        ge=0,
        le=65535,
        description="HTTP port of the service (health, API, OpenAPI and AsyncAPI docs).",
        examples=[8001],
    )
    max_request_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        le=64 * 1_048_576,
        description=(
            "Largest request body accepted, in bytes; a larger one gets a 413 problem before it "
            "is read. Text fields are capped by the contracts, so 1 MiB is far above any real "
            "request."
        ),
        examples=[1_048_576],
    )
    database_url: str = Field(
        default="",
        description=(
            "SQLAlchemy async URL of the service database. Empty means a SQLite file "
            "`<var_dir>/<service>.db`. PostgreSQL: `postgresql+asyncpg://user@host/db`."
        ),
        examples=[
            "sqlite+aiosqlite:///./var/applications.db",
            "postgresql+asyncpg://postgres@127.0.0.1:5432/applications",
        ],
    )

    workers: int = Field(
        default=1,
        ge=1,
        le=32,
        description=(
            "HTTP worker processes sharing the port, each a full replica of the service (its "
            "own pool, consumers and relay, as several replicas would run). More than one "
            "needs PostgreSQL: a SQLite file takes one writer at a time."
        ),
        examples=[1, 2],
    )

    @model_validator(mode="after")
    def _default_database(self) -> ServiceSettings:
        if not self.database_url:
            path = (self.var_dir / f"{self.service_name}.db").resolve()
            self.database_url = f"sqlite+aiosqlite:///{path}"
        if self.workers > 1 and is_sqlite(self.database_url):
            raise ValueError("workers > 1 needs PostgreSQL: a SQLite file has one writer")
        return self


def service_settings_config(service_name: str, **overrides: Any) -> SettingsConfigDict:
    """The settings config for a service: env prefix ``INCENTIVES_<SERVICE>_``."""
    config = SettingsConfigDict(
        env_prefix=f"INCENTIVES_{service_name.upper()}_",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )
    config.update(overrides)  # type: ignore[typeddict-item]
    return config
