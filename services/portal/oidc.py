"""Sign-in through OpenID Connect: authorization code with PKCE (S256), with authlib.

The portal is a client of the provider ``INCENTIVES_OIDC_ISSUER`` names, found through its
discovery document. authlib keeps the sign-in's state, nonce and PKCE verifier in the (encrypted)
session between the redirect to the provider and the way back, checks the state, exchanges the
code with the verifier and validates the ID token (signature, issuer, audience, nonce). The
person is then read from the **access token**, verified by the kit exactly as every service
verifies it (:func:`services.kit.auth.token_service`), so the portal and the services agree on
who it is and what they may do; that token is what the portal sends to the services.

The session keeps the provider's refresh token and ID token too: an access token about to
expire is refreshed (:func:`refresh`) before the portal calls a service with it, and signing
out also ends the session at the provider (RP-initiated logout, :func:`logout_url`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App
from fastapi import Request
from joserfc.errors import JoseError

from services.kit.auth import Principal, TokenService
from services.kit.errors import IncentivesError
from services.portal.clients import Unavailable
from services.portal.settings import Settings

#: The name of the provider in authlib's registry (and in the session's state keys).
PROVIDER = "provider"
#: An access token this close to its expiry is refreshed before it is used (seconds).
REFRESH_LEEWAY_SECONDS = 30


@dataclass(frozen=True)
class Tokens:
    """What the session keeps of the provider's token response."""

    access: str
    refresh: str | None = None
    #: When the access token expires (epoch seconds), if the provider said.
    expires_at: float | None = None
    id_token: str | None = None

    def due(self, now: float | None = None) -> bool:
        """Whether the access token has expired or is about to: time to refresh it."""
        if self.expires_at is None:
            return False
        return self.expires_at - REFRESH_LEEWAY_SECONDS <= (time.time() if now is None else now)


class SignInFailed(Exception):
    """The provider's answer did not sign anyone in; ``reason`` says why, for the person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def client(settings: Settings) -> StarletteOAuth2App:
    """The provider's OAuth client, from settings; nothing is fetched until the first sign-in."""
    configured = settings.oidc_client_secret
    secret = configured if configured is not None and configured.get_secret_value() else None
    kwargs: dict[str, Any] = {
        "scope": settings.oidc_scope,
        "code_challenge_method": "S256",
        "timeout": settings.api_timeout,
    }
    if secret is None:
        kwargs["token_endpoint_auth_method"] = "none"  # noqa: S105 (a public client: PKCE alone)
    registry = OAuth()
    app: StarletteOAuth2App = registry.register(
        PROVIDER,
        client_id=settings.oidc_client_id,
        client_secret=secret.get_secret_value() if secret is not None else None,
        server_metadata_url=settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs=kwargs,
    )
    return app


def _provider(request: Request) -> StarletteOAuth2App:
    app: StarletteOAuth2App = request.app.state.oidc
    return app


async def start(request: Request) -> Any:
    """The redirect to the provider's authorization endpoint."""
    settings: Settings = request.app.state.settings
    callback = settings.oidc_redirect_url or str(request.url_for("oidc_callback"))
    try:
        return await _provider(request).authorize_redirect(request, callback)
    except httpx.HTTPError as exc:  # its discovery document did not come
        raise Unavailable(f"the identity provider did not answer: {exc}") from exc


async def finish(request: Request) -> tuple[Principal, Tokens]:
    """The person the provider signed in and their tokens; :class:`SignInFailed`."""
    try:
        token = await _provider(request).authorize_access_token(request)
    except httpx.HTTPError as exc:
        raise Unavailable(f"the identity provider did not answer: {exc}") from exc
    except AuthlibBaseError as exc:  # a refusal, a mismatching state, a failed code exchange
        raise SignInFailed(exc.description or exc.error or "the provider refused") from exc
    except JoseError as exc:  # the ID token's signature, issuer, audience or nonce
        raise SignInFailed(f"the provider's ID token was not valid: {exc}") from exc
    return await _verified(request, token)


async def _verified(
    request: Request, token: dict[str, Any], earlier: Tokens | None = None
) -> tuple[Principal, Tokens]:
    """The person an access token names, verified as the services verify it; the tokens."""
    access = token.get("access_token")
    if not isinstance(access, str):
        raise SignInFailed("the provider sent no access token")
    verifier: TokenService = request.app.state.tokens
    try:
        principal = await verifier.averify(access)
    except IncentivesError as exc:
        raise SignInFailed(exc.detail) from exc
    refresh_token, expires_at, id_token = (
        token.get("refresh_token"),
        token.get("expires_at"),
        token.get("id_token"),
    )
    return principal, Tokens(
        access=access,
        # A provider may keep the refresh token it gave before: then the earlier one stays.
        refresh=refresh_token
        if isinstance(refresh_token, str)
        else (earlier.refresh if earlier else None),
        expires_at=float(expires_at) if isinstance(expires_at, int | float) else None,
        id_token=id_token if isinstance(id_token, str) else (earlier.id_token if earlier else None),
    )


async def refresh(request: Request, earlier: Tokens) -> tuple[Principal, Tokens] | None:
    """New tokens for an expiring session, from its refresh token; None when the provider does
    not give them (no refresh token, refused, unreachable) and the person must sign in again."""
    if earlier.refresh is None:
        return None
    try:
        token = await _provider(request).fetch_access_token(
            grant_type="refresh_token", refresh_token=earlier.refresh
        )
        return await _verified(request, token, earlier)
    except (httpx.HTTPError, AuthlibBaseError, JoseError, SignInFailed):
        return None


async def logout_url(request: Request, id_token: str | None) -> str | None:
    """Where the browser ends its session at the provider (RP-initiated logout), coming back to
    the sign-in page; None when the provider has no ``end_session_endpoint`` or cannot say."""
    settings: Settings = request.app.state.settings
    provider = _provider(request)
    try:
        metadata = await provider.load_server_metadata()
        if not metadata.get("end_session_endpoint"):
            return None
        result = await provider.create_logout_url(
            post_logout_redirect_uri=str(request.url_for("sign_in_page")),
            id_token_hint=id_token,
            client_id=settings.oidc_client_id,
        )
    except httpx.HTTPError:
        return None
    url: str = result["url"]
    return url
