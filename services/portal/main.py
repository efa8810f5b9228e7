"""Composition root of the portal: ``create_app`` wires it, ``main`` runs it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.kit import tracing
from services.kit.auth import token_service
from services.kit.metrics import Metrics, observe_app
from services.kit.runtime import run_service
from services.portal import oidc, web
from services.portal.clients import Problem, Unavailable
from services.portal.pages import admin, auditor, firm, review, signin
from services.portal.sessions import EncryptedSessionMiddleware
from services.portal.settings import Settings, SignIn

#: The cookie holding the encrypted session.
SESSION_COOKIE = "incentives_session"


def _static(settings: Settings) -> dict[str, Path]:
    """URL prefix -> folder of the front-end assets ``make install`` put in place."""
    packages = settings.assets_dir / "node_modules"
    govuk = packages / "govuk-frontend" / "dist" / "govuk"
    return {
        "/assets": govuk / "assets",  # the stylesheet refers to /assets/images
        "/static/govuk": govuk,  # its JavaScript
        "/static/build": settings.assets_dir / "build",  # the stylesheet, built by make install
        "/static/htmx": packages / "htmx.org" / "dist",
        "/static/portal": Path(__file__).parent / "static",
    }


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; the API clients open and close with its lifespan."""
    settings = settings or Settings()
    missing = [str(p) for p in _static(settings).values() if not p.is_dir()]
    if missing:
        raise RuntimeError(f"front-end assets missing ({', '.join(missing)}): run `make install`")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(settings.api_timeout)

        def client(base_url: str) -> httpx.AsyncClient:
            # Traced when tracing is on: a page's calls continue the page request's trace.
            return tracing.instrument_client(httpx.AsyncClient(base_url=base_url, timeout=timeout))

        async with (
            client(settings.applications_url) as apps,
            client(settings.review_url) as desk,
            client(settings.zones_url) as zones,
            client(settings.disbursement_url) as money,
            client(settings.audit_url) as audit,
        ):
            app.state.applications_http = apps
            app.state.review_http = desk
            app.state.zones_http = zones
            app.state.disbursement_http = money
            app.state.audit_http = audit
            yield

    app = FastAPI(
        title="Incentives portal",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.tokens = token_service(settings)
    form_action = "'self'"
    if settings.sign_in is SignIn.OIDC:
        app.state.oidc = oidc.client(settings)
        # Signing out posts a form whose answer redirects to the provider's end-session
        # endpoint; form-action holds redirects after a post to the same list.
        issuer = urlsplit(settings.oidc_issuer)
        form_action = f"'self' {issuer.scheme}://{issuer.netloc}"
    app.add_middleware(
        EncryptedSessionMiddleware,
        secret_key=settings.session_secret.get_secret_value(),
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_max_age,
        # The provider sends the browser back from its own site: a strict cookie would not
        # come along, and the sign-in could not be matched to its start. Lax cookies are not
        # sent with cross-site posts, and every form checks its CSRF token anyway.
        same_site="lax" if settings.sign_in is SignIn.OIDC else "strict",
        https_only=settings.cookie_secure,
    )
    for prefix, folder in _static(settings).items():
        app.mount(prefix, StaticFiles(directory=folder), name=prefix.strip("/"))
    app.include_router(signin.router)
    app.include_router(firm.router)
    app.include_router(review.router)
    app.include_router(auditor.router)
    app.include_router(admin.router)

    @app.get("/health", include_in_schema=False)
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "service": "portal"})

    @app.middleware("http")
    async def security_headers(request: Request, call_next: object) -> Response:
        response: Response = await call_next(request)  # type: ignore[operator]
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
            f"form-action {form_action}",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    @app.exception_handler(web.SignInRequired)
    async def to_sign_in(request: Request, exc: web.SignInRequired) -> Response:
        return RedirectResponse("/sign-in", status_code=303)

    @app.exception_handler(firm.NotAFirm)
    @app.exception_handler(review.NotStaff)
    @app.exception_handler(web.WrongRole)
    async def not_yours(request: Request, exc: Exception) -> Response:
        return web.error_page(
            request,
            403,
            "You cannot use this page",
            "This page is for another role. Sign in as someone who may use it.",
        )

    @app.exception_handler(Problem)
    async def refused(request: Request, exc: Problem) -> Response:
        if exc.status == 401:
            web.sign_out(request)
            return RedirectResponse("/sign-in", status_code=303)
        status = exc.status if exc.status in (403, 404) else 502
        title = {404: "Page not found", 403: "You cannot see this"}.get(
            status, "Something went wrong"
        )
        return web.error_page(request, status, title, exc.detail or exc.title)

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable) -> Response:
        return web.error_page(
            request,
            503,
            "Sorry, the service is unavailable",
            "A part of the programme's system did not answer. Please try again shortly.",
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        title = {403: "The form has expired", 404: "Page not found"}.get(
            exc.status_code, "Something went wrong"
        )
        return web.error_page(request, exc.status_code, title, str(exc.detail))

    observe_app(app, Metrics("portal"))
    return app


def main() -> None:
    """Run the portal until SIGTERM/SIGINT, configured by environment."""
    run_service(Settings, create_app)


if __name__ == "__main__":
    main()
