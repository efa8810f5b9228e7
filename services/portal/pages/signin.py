"""Sign-in and sign-out: OpenID Connect (``oidc``), or in dev mode a page of demo identities."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from services.kit.auth import Role
from services.portal import oidc, web
from services.portal.identities import demo_identities
from services.portal.settings import SignIn

router = APIRouter()


def home_of(role: Role) -> str:
    """Where a person lands after signing in."""
    if role is Role.FIRM:
        return "/applications"
    if role is Role.SUPERVISOR:
        return "/supervisor"
    if role is Role.REVIEWER:
        return "/inbox"
    if role is Role.AUDITOR:
        return "/audit"
    if role is Role.ADMIN:
        return "/admin/zones"
    return "/signed-in"


@router.get("/")
async def home(request: Request) -> Response:
    principal = web.current(request)
    if principal is None:
        return RedirectResponse("/sign-in", status_code=303)
    return RedirectResponse(home_of(principal.role), status_code=303)


def _sign_in(request: Request) -> SignIn:
    way: SignIn = request.app.state.settings.sign_in
    return way


def _dev_sign_in(request: Request) -> bool:
    return _sign_in(request) is SignIn.DEV


def _unavailable(request: Request) -> Response:
    return web.error_page(
        request,
        503,
        "Sign-in is not available yet",
        "This portal has no way to sign in configured. Please contact the programme's "
        "administrators.",
    )


@router.get("/sign-in", name="sign_in_page")
async def sign_in_page(request: Request) -> Response:
    if _sign_in(request) is SignIn.OIDC:
        return web.render(request, "sign_in_oidc.html")
    if not _dev_sign_in(request):
        return _unavailable(request)
    identities = await demo_identities(request.app.state.review_http, request.app.state.tokens)
    return web.render(request, "sign_in.html", identities=identities, error=None)


@router.post("/sign-in", dependencies=[web.Csrf])
async def sign_in(request: Request, identity: Annotated[str, Form()] = "") -> Response:
    if not _dev_sign_in(request):
        return _unavailable(request)
    identities = await demo_identities(request.app.state.review_http, request.app.state.tokens)
    chosen = next((i for i in identities if i.key == identity), None)
    if chosen is None:
        return web.render(
            request,
            "sign_in.html",
            status_code=422,
            identities=identities,
            error="Select who you want to sign in as",
        )
    web.sign_in(request, chosen.principal)
    return RedirectResponse(home_of(chosen.principal.role), status_code=303)


@router.get("/sign-in/oidc")
async def sign_in_with_provider(request: Request) -> Response:
    """Off to the provider (a link, not a form: the page's CSP allows forms to post only here,
    and a redirect after a post would be held to it)."""
    if _sign_in(request) is not SignIn.OIDC:
        return _unavailable(request)
    response: Response = await oidc.start(request)
    return response


@router.get("/sign-in/callback", name="oidc_callback")
async def signed_in_by_provider(request: Request) -> Response:
    """The provider sends the browser back here with a code (or an error)."""
    if _sign_in(request) is not SignIn.OIDC:
        return _unavailable(request)
    try:
        principal, tokens = await oidc.finish(request)
    except oidc.SignInFailed as failed:
        return web.error_page(
            request,
            403,
            "You could not be signed in",
            "Your organisation's account did not sign you in to this service "
            f"({failed.reason}). Try again, or ask your administrator for access.",
        )
    web.sign_in(request, principal, tokens)
    return RedirectResponse(home_of(principal.role), status_code=303)


@router.post("/sign-out", dependencies=[web.Csrf])
async def sign_out(request: Request) -> Response:
    """End the portal's session and, signed in through the provider, the provider's too
    (RP-initiated logout, back to the sign-in page)."""
    id_token = web.sign_out(request)
    if _sign_in(request) is SignIn.OIDC:
        url = await oidc.logout_url(request, id_token)
        if url is not None:
            return RedirectResponse(url, status_code=303)
    return RedirectResponse("/sign-in", status_code=303)


@router.get("/signed-in")
async def signed_in(request: Request, person: web.Person) -> Response:
    """Staff pages that are not built yet (audit, zones, budgets) say so."""
    return web.render(request, "signed_in.html")
