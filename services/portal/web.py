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
from services.portal import language
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


def sign_in(request: Request, principal: Principal, token: str | None = None) -> None:
    """Start a session for ``principal`` with ``token`` (the provider's access token), or, in
    dev mode, a development token the portal mints for it. A fresh session: a new CSRF token."""
    if token is None:
        tokens: TokenService = request.app.state.tokens
        token = tokens.issue(principal)
    request.session.clear()
    request.session[_PRINCIPAL] = principal.model_dump(mode="json")
    request.session[_TOKEN] = token
    csrf_token(request)


def sign_out(request: Request) -> None:
    request.session.clear()


def current(request: Request) -> Principal | None:
    """The signed-in person, if any."""
    data = request.session.get(_PRINCIPAL)
    if not isinstance(data, dict):
        return None
    return Principal.model_validate(data)


def person(request: Request) -> Principal:
    """Dependency: the signed-in person, or a redirect to the sign-in page."""
    principal = current(request)
    if principal is None or not isinstance(request.session.get(_TOKEN), str):
        raise SignInRequired
    return principal


Person = Annotated[Principal, Depends(person)]


def _http(request: Request, name: str) -> httpx.AsyncClient:
    client: httpx.AsyncClient = getattr(request.app.state, name)
    return client


def applications(request: Request) -> ApplicationsClient:
    return ApplicationsClient(_http(request, "applications_http"), request.session[_TOKEN])


def review(request: Request) -> ReviewClient:
    return ReviewClient(_http(request, "review_http"), request.session[_TOKEN])


def zones(request: Request) -> ZonesClient:
    return ZonesClient(_http(request, "zones_http"), request.session[_TOKEN])


def disbursement(request: Request) -> DisbursementClient:
    return DisbursementClient(_http(request, "disbursement_http"), request.session[_TOKEN])


def audit(request: Request) -> AuditClient:
    return AuditClient(_http(request, "audit_http"), request.session[_TOKEN])


def token(request: Request) -> str:
    """The signed-in person's bearer token, for a call the clients above do not make."""
    value: str = request.session[_TOKEN]
    return value


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
