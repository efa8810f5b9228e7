"""Settings of the portal (env prefix ``INCENTIVES_PORTAL_``).

The portal owns no data: it signs people in, keeps their session in an encrypted cookie and
calls the services' HTTP APIs with their token. Common settings (dev mode, the JWT key, the
OpenID provider's issuer and claim mapping) come from ``INCENTIVES_*``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import ClassVar, Self

from pydantic import Field, SecretStr, model_validator

from services.kit.settings import (
    MIN_SECRET_LENGTH,
    InsecureSettingsError,
    ServiceSettings,
    service_settings_config,
)

#: The session-cookie key used when none is configured. Refused outside dev mode.
DEV_SESSION_SECRET = "dev-only-insecure-portal-session-secret"  # noqa: S105

#: Where ``make install`` puts the npm packages (``node_modules/``) and the built CSS
#: (``build/``) the portal serves.
DEFAULT_ASSETS_DIR = Path(__file__).parent / "assets"


class SignIn(StrEnum):
    """How people sign in."""

    #: A page of demo identities; the portal mints development tokens (dev mode only).
    DEV = "dev"
    #: OpenID Connect, authorization code with PKCE (S256), through ``INCENTIVES_OIDC_ISSUER``.
    OIDC = "oidc"
    #: Nobody can sign in: a page says so.
    NONE = "none"


class Settings(ServiceSettings):
    """Portal settings."""

    model_config = service_settings_config("portal")
    service_name: ClassVar[str] = "portal"
    without_data: ClassVar[bool] = True

    port: int = Field(
        default=8000,
        ge=0,
        le=65535,
        description="HTTP port of the web pages.",
        examples=[8000],
    )
    applications_url: str = Field(
        default="http://127.0.0.1:8001",
        description="Base URL of the applications API.",
        examples=["http://127.0.0.1:8001", "http://applications:8001"],
    )
    review_url: str = Field(
        default="http://127.0.0.1:8002",
        description="Base URL of the review desk API.",
        examples=["http://127.0.0.1:8002", "http://review:8002"],
    )
    zones_url: str = Field(
        default="http://127.0.0.1:8004",
        description="Base URL of the zones API (the admins' zone pages).",
        examples=["http://127.0.0.1:8004", "http://zones:8004"],
    )
    disbursement_url: str = Field(
        default="http://127.0.0.1:8005",
        description="Base URL of the disbursement API (the admins' budget pages).",
        examples=["http://127.0.0.1:8005", "http://disbursement:8005"],
    )
    audit_url: str = Field(
        default="http://127.0.0.1:8003",
        description="Base URL of the audit API (the auditors' pages).",
        examples=["http://127.0.0.1:8003", "http://audit:8003"],
    )
    api_timeout: float = Field(
        default=15.0,
        gt=0,
        description="Seconds the portal waits for a service API before showing an error.",
        examples=[15.0],
    )
    sign_in: SignIn = Field(
        default=SignIn.DEV,
        description=(
            "`dev`: a page of demo identities, for dev mode only. `oidc`: OpenID Connect, "
            "authorization code with PKCE, through the provider `INCENTIVES_OIDC_ISSUER` names. "
            "`none`: nobody can sign in."
        ),
        examples=["dev", "oidc", "none"],
    )
    oidc_client_id: str = Field(
        default="",
        max_length=200,
        description="The portal's client id at the OpenID provider (required with `oidc`).",
        examples=["incentives-portal"],
    )
    oidc_client_secret: SecretStr | None = Field(
        default=None,
        description=(
            "The portal's client secret at the provider; unset for a public client (PKCE alone)."
        ),
    )
    oidc_scope: str = Field(
        default="openid profile email",
        description="The scopes the portal asks the provider for; `openid` is required.",
        examples=["openid profile email"],
    )
    oidc_redirect_url: str = Field(
        default="",
        description=(
            "The sign-in callback URL registered at the provider, as the browser reaches it "
            "(`https://portal.example.org/sign-in/callback`). Empty: derived from the request."
        ),
        examples=["", "https://portal.example.org/sign-in/callback"],
    )
    session_secret: SecretStr = Field(
        default=SecretStr(DEV_SESSION_SECRET),
        description=(
            "Key encrypting and authenticating the session cookie, at least "
            f"{MIN_SECRET_LENGTH} characters outside dev mode."
        ),
    )
    session_max_age: int = Field(
        default=8 * 3600,
        ge=60,
        le=7 * 24 * 3600,
        description="Seconds a session lasts after sign-in.",
        examples=[28800],
    )
    cookie_secure: bool = Field(
        default=True,
        description=(
            "Send the session cookie over HTTPS only. Browsers treat http://127.0.0.1 and "
            "http://localhost as secure, so this stays on in development too."
        ),
        examples=[True],
    )
    assets_dir: Path = Field(
        default=DEFAULT_ASSETS_DIR,
        description=(
            "The folder holding the npm packages (`node_modules/`: GOV.UK Frontend, htmx) and "
            "the stylesheet built from them (`build/`), as `make install` leaves them."
        ),
    )

    @model_validator(mode="after")
    def _refuse_insecure_portal(self) -> Self:
        if self.sign_in is SignIn.OIDC:
            if not self.oidc_issuer or not self.oidc_client_id:
                raise ValueError(
                    "INCENTIVES_PORTAL_SIGN_IN=oidc needs INCENTIVES_OIDC_ISSUER and "
                    "INCENTIVES_PORTAL_OIDC_CLIENT_ID"
                )
            if "openid" not in self.oidc_scope.split():
                raise ValueError("INCENTIVES_PORTAL_OIDC_SCOPE must include `openid`")
        if self.dev_mode:
            return self
        if self.sign_in is SignIn.DEV:
            raise InsecureSettingsError(
                "INCENTIVES_PORTAL_SIGN_IN=dev signs anyone in as anyone; it needs dev mode"
            )
        secret = self.session_secret.get_secret_value()
        if secret == DEV_SESSION_SECRET or len(secret) < MIN_SECRET_LENGTH:
            raise InsecureSettingsError(
                "INCENTIVES_PORTAL_SESSION_SECRET is unset, the development default, or shorter "
                f"than {MIN_SECRET_LENGTH} characters, and INCENTIVES_DEV_MODE is false"
            )
        return self
