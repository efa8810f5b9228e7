"""Sign-in and sign-out. In dev mode: a page of demo identities."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from services.kit.auth import Role
from services.portal import web
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


def _dev_sign_in(request: Request) -> bool:
    return request.app.state.settings.sign_in is SignIn.DEV


def _unavailable(request: Request) -> Response:
    return web.error_page(
        request,
        503,
        "Sign-in is not available yet",
        "Signing in with your organisation's account (OpenID Connect) is planned.",
    )


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
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


@router.post("/sign-out", dependencies=[web.Csrf])
async def sign_out(request: Request) -> Response:
    web.sign_out(request)
    return RedirectResponse("/sign-in", status_code=303)


@router.get("/signed-in")
async def signed_in(request: Request, person: web.Person) -> Response:
    """Staff pages that are not built yet (audit, zones, budgets) say so."""
    return web.render(request, "signed_in.html")
