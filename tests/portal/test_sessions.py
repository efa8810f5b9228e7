"""The portal's session cookie is encrypted: unreadable without the key, and tamper-evident."""

from __future__ import annotations

import base64
import importlib
import json
import pkgutil
import time

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from itsdangerous import BadSignature

from services.portal import pages, web
from services.portal.sessions import EncryptedSessionMiddleware, _Sealer, session_key

SECRET = "s" * 40
TOKEN = "eyJhbGciOiJSUzI1NiJ9.a-bearer-token.signature"


def _app(secret: str = SECRET) -> FastAPI:
    app = FastAPI()

    @app.post("/put")
    async def put(request: Request) -> JSONResponse:
        request.session["token"] = TOKEN
        return JSONResponse({})

    @app.get("/get")
    async def get(request: Request) -> JSONResponse:
        return JSONResponse({"token": request.session.get("token")})

    app.add_middleware(
        EncryptedSessionMiddleware,
        secret_key=secret,
        session_cookie="s",
        max_age=3600,
        same_site="strict",
        https_only=False,
    )
    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal")


async def test_the_cookie_round_trips_and_does_not_show_the_session() -> None:
    async with _client(_app()) as client:
        response = await client.post("/put")
        cookie = response.cookies["s"]
        assert TOKEN not in cookie
        assert b"token" not in base64.urlsafe_b64decode(cookie + "==")
        opened = Fernet(session_key(SECRET)).decrypt(cookie.encode())  # only with the key
        assert json.loads(opened) == {"token": TOKEN}
        assert len(cookie) < 1.5 * len(opened) + 100  # one base64 layer, not two
        assert (await client.get("/get")).json() == {"token": TOKEN}
        assert "samesite=strict" in response.headers["set-cookie"].lower()
        assert "httponly" in response.headers["set-cookie"].lower()


async def test_a_tampered_cookie_or_another_key_gives_an_empty_session() -> None:
    async with _client(_app()) as client:
        cookie = (await client.post("/put")).cookies["s"]
    tampered = cookie[:-6] + ("A" if cookie[-6] != "A" else "B") + cookie[-5:]
    for app, value in ((_app(), tampered), (_app("o" * 40), cookie)):
        async with _client(app) as other:
            other.cookies.set("s", value)
            assert (await other.get("/get")).json() == {"token": None}


def test_a_cookie_older_than_the_session_lifetime_is_refused() -> None:
    old = Fernet(session_key(SECRET)).encrypt_at_time(b"{}", int(time.time()) - 7200)
    with pytest.raises(BadSignature):
        _Sealer(SECRET).unsign(old, max_age=3600)
    assert base64.b64decode(_Sealer(SECRET).unsign(old, max_age=None)) == b"{}"


def test_every_form_post_of_the_portal_checks_the_csrf_token() -> None:
    """Every POST route of every page module depends on the CSRF check."""
    routes = [
        route
        for module in pkgutil.iter_modules(pages.__path__)
        for route in importlib.import_module(f"{pages.__name__}.{module.name}").router.routes
        if isinstance(route, APIRoute) and "POST" in route.methods
    ]
    assert len(routes) >= 5
    unguarded = [
        route.path
        for route in routes
        if all(d.call is not web.check_csrf for d in route.dependant.dependencies)
    ]
    assert unguarded == []
