"""Sign-in through OpenID Connect: authorization code with PKCE (S256), with authlib.

The portal is a client of the provider ``INCENTIVES_OIDC_ISSUER`` names, found through its
discovery document. authlib keeps the sign-in's state, nonce and PKCE verifier in the (encrypted)
session between the redirect to the provider and the way back, checks the state, exchanges the
code with the verifier and validates the ID token (signature, issuer, audience, nonce). The
person is then read from the **access token**, verified by the kit exactly as every service
verifies it (:func:`services.kit.auth.token_service`), so the portal and the services agree on
who it is and what they may do; that token is what the portal sends to the services.
"""

from __future__ import annotations

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


async def finish(request: Request) -> tuple[Principal, str]:
    """The person the provider signed in and their access token; :class:`SignInFailed`."""
    try:
        token = await _provider(request).authorize_access_token(request)
    except httpx.HTTPError as exc:
        raise Unavailable(f"the identity provider did not answer: {exc}") from exc
    except AuthlibBaseError as exc:  # a refusal, a mismatching state, a failed code exchange
        raise SignInFailed(exc.description or exc.error or "the provider refused") from exc
    except JoseError as exc:  # the ID token's signature, issuer, audience or nonce
        raise SignInFailed(f"the provider's ID token was not valid: {exc}") from exc
    access = token.get("access_token")
    if not isinstance(access, str):
        raise SignInFailed("the provider sent no access token")
    tokens: TokenService = request.app.state.tokens
    try:
        return await tokens.averify(access), access
    except IncentivesError as exc:
        raise SignInFailed(exc.detail) from exc
