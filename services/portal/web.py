"""The portal's plumbing: templates, the signed-in person, CSRF tokens and the API clients."""

from __future__ import annotations

import base64
import hmac
import secrets
from pathlib import Path
from typing import Annotated, Any, Final

import httpx
from fastapi import Depends, Form, HTTPException, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from services.kit.auth import Principal, Role, TokenService
from services.portal import language, oidc
from services.portal.clients.applications import ApplicationsClient
from services.portal.clients.audit import AuditClient
from services.portal.clients.disbursement import DisbursementClient
from services.portal.clients.review import ReviewClient
from services.portal.clients.zones import ZonesClient

TEMPLATES: Final = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.globals["words"] = language
TEMPLATES.env.filters["day"] = language.day
TEMPLATES.env.filters["moment"] = language.moment
TEMPLATES.env.filters["b64"] = lambda raw: base64.b64encode(raw).decode()

#: Session keys.
_PRINCIPAL: Final = "principal"
_TOKEN: Final = "token"  # noqa: S105 (a session key, not a secret)
_CSRF: Final = "csrf"
#: The provider's refresh token, access token expiry and ID token (OpenID Connect only).
_REFRESH: Final = "refresh"
_EXPIRES: Final = "expires_at"
_ID_TOKEN: Final = "id_token"  # noqa: S105 (a session key, not a secret)


class SignInRequired(Exception):
    """The page needs a signed-in person; they are sent to the sign-in page."""


def csrf_token(request: Request) -> str:
    """This session's CSRF token, created on first use."""
    token = request.session.get(_CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[_CSRF] = token
    return token


async def check_csrf(request: Request, csrf_token: Annotated[str, Form()] = "") -> None:
    """Refuse a form post whose CSRF token is not this session's (403)."""
    expected = request.session.get(_CSRF)
    if not isinstance(expected, str) or not hmac.compare_digest(expected, csrf_token):
        raise HTTPException(status_code=403, detail="The form has expired. Please try again.")


Csrf = Depends(check_csrf)


def sign_in(request: Request, principal: Principal, tokens: oidc.Tokens | None = None) -> None:
    """Start a session for ``principal`` with ``tokens`` (the provider's), or, in dev mode, a
    development token the portal mints for it. A fresh session: a new CSRF token."""
    if tokens is None:
        issuer: TokenService = request.app.state.tokens
        tokens = oidc.Tokens(access=issuer.issue(principal))
    request.session.clear()
    _keep(request, principal, tokens)
    csrf_token(request)


def _keep(request: Request, principal: Principal, tokens: oidc.Tokens) -> None:
    request.session[_PRINCIPAL] = principal.model_dump(mode="json")
    request.session[_TOKEN] = tokens.access
    for key, value in (
        (_REFRESH, tokens.refresh),
        (_EXPIRES, tokens.expires_at),
        (_ID_TOKEN, tokens.id_token),
    ):
        if value is None:
            request.session.pop(key, None)
        else:
            request.session[key] = value


def _tokens(request: Request) -> oidc.Tokens | None:
    access = request.session.get(_TOKEN)
    if not isinstance(access, str):
        return None
    refresh, expires_at, id_token = (
        request.session.get(_REFRESH),
        request.session.get(_EXPIRES),
        request.session.get(_ID_TOKEN),
    )
    return oidc.Tokens(
        access=access,
        refresh=refresh if isinstance(refresh, str) else None,
        expires_at=float(expires_at) if isinstance(expires_at, int | float) else None,
        id_token=id_token if isinstance(id_token, str) else None,
    )


def sign_out(request: Request) -> str | None:
    """End the session; the provider's ID token it held, for signing out there too."""
    tokens = _tokens(request)
    request.session.clear()
    return tokens.id_token if tokens is not None else None


async def session_token(request: Request) -> str:
    """Dependency: the signed-in person's bearer token, refreshed with the provider's refresh
    token once it is about to expire; :class:`SignInRequired` when there is none, or when the
    provider does not refresh it (the session ends, the person signs in again)."""
    tokens = _tokens(request)
    principal = current(request)
    if tokens is None or principal is None:
        raise SignInRequired
    if not tokens.due():
        return tokens.access
    refreshed = await oidc.refresh(request, tokens)
    if refreshed is None:
        request.session.clear()
        raise SignInRequired
    fresh_principal, fresh = refreshed
    _keep(request, fresh_principal, fresh)
    return fresh.access


Token = Annotated[str, Depends(session_token)]


def current(request: Request) -> Principal | None:
    """The signed-in person, if any."""
    data = request.session.get(_PRINCIPAL)
    if not isinstance(data, dict):
        return None
    return Principal.model_validate(data)


def person(request: Request, token: Token) -> Principal:
    """Dependency: the signed-in person (with a fresh token), or a redirect to sign in."""
    principal = current(request)
    if principal is None:
        raise SignInRequired
    return principal


Person = Annotated[Principal, Depends(person)]


def _http(request: Request, name: str) -> httpx.AsyncClient:
    client: httpx.AsyncClient = getattr(request.app.state, name)
    return client


def applications(request: Request, token: Token) -> ApplicationsClient:
    return ApplicationsClient(_http(request, "applications_http"), token)


def review(request: Request, token: Token) -> ReviewClient:
    return ReviewClient(_http(request, "review_http"), token)


def zones(request: Request, token: Token) -> ZonesClient:
    return ZonesClient(_http(request, "zones_http"), token)


def disbursement(request: Request, token: Token) -> DisbursementClient:
    return DisbursementClient(_http(request, "disbursement_http"), token)


def audit(request: Request, token: Token) -> AuditClient:
    return AuditClient(_http(request, "audit_http"), token)


class WrongRole(Exception):
    """The signed-in person's role may not use the page."""


def role_of(*roles: Role) -> Any:
    """Dependency: the signed-in person if they hold one of ``roles``, else :class:`WrongRole`."""

    def check(principal: Person) -> Principal:
        if principal.role not in roles:
            raise WrongRole
        return principal

    return Depends(check)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """A page, with what every page needs (the person, the CSRF token)."""
    principal = current(request)
    response: Response = TEMPLATES.TemplateResponse(
        request,
        template,
        {"person": principal, "csrf": csrf_token(request), "Role": Role, **context},
        status_code=status_code,
    )
    return response


def error_page(request: Request, status_code: int, title: str, message: str) -> Response:
    """The page of an error: its title and what to do, with the status it is."""
    return render(request, "error.html", status_code=status_code, title=title, message=message)
