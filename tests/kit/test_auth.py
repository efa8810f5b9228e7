"""JWT principals: issue, verify, refuse; the FastAPI dependency answers 401/403 problems."""

from __future__ import annotations

from datetime import timedelta

import httpx
import jwt
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from contracts.envelope import ActorKind
from services.kit.auth import (
    AUDIENCE,
    ISSUER,
    CurrentPrincipal,
    Principal,
    Role,
    TokenService,
    install_token_service,
    require_roles,
)
from services.kit.errors import Unauthorized
from services.kit.problems import install_problem_handlers

SECRET = SecretStr("k" * 40)
FIRM = Principal(sub="alice@acme.example", role=Role.FIRM, firm_id="ACME", name="Alice")
REVIEWER = Principal(sub="rev.tanaka", role=Role.REVIEWER)


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(SECRET)


def test_round_trip(tokens: TokenService) -> None:
    assert tokens.verify(tokens.issue(FIRM)) == FIRM
    assert tokens.verify(tokens.issue(REVIEWER)) == REVIEWER
    assert FIRM.qualified_role == "firm:ACME"
    assert REVIEWER.qualified_role == "reviewer"


def test_principal_becomes_envelope_actor() -> None:
    actor = FIRM.to_actor()
    assert (actor.kind, actor.id, actor.firm_id) == (ActorKind.FIRM, "alice@acme.example", "ACME")


@pytest.mark.parametrize(
    ("role", "firm_id"), [(Role.FIRM, None), (Role.REVIEWER, "ACME")], ids=["firm", "reviewer"]
)
def test_firm_id_required_exactly_for_firms(role: Role, firm_id: str | None) -> None:
    with pytest.raises(ValueError, match="firm_id"):
        Principal(sub="x", role=role, firm_id=firm_id)


def test_qualified_firm_role_claim_is_accepted(tokens: TokenService) -> None:
    token = jwt.encode(
        {
            "sub": "bob",
            "role": "firm:GLOBEX",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": 0,
            "exp": 2**33,
        },
        SECRET.get_secret_value(),
        algorithm="HS256",
    )
    principal = tokens.verify(token)
    assert (principal.role, principal.firm_id) == (Role.FIRM, "GLOBEX")


def test_expired_token_refused(tokens: TokenService) -> None:
    token = tokens.issue(FIRM, ttl=timedelta(minutes=-5))
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(token)


def test_wrong_key_refused() -> None:
    token = TokenService(SecretStr("o" * 40)).issue(FIRM)
    with pytest.raises(Unauthorized, match="invalid token"):
        TokenService(SECRET).verify(token)


def test_unsigned_token_refused(tokens: TokenService) -> None:
    claims = {"sub": "eve", "role": "admin", "iss": ISSUER, "aud": AUDIENCE, "iat": 0, "exp": 2**33}
    token = jwt.encode(claims, key=None, algorithm="none")
    with pytest.raises(Unauthorized):
        tokens.verify(token)


def test_unknown_role_refused(tokens: TokenService) -> None:
    claims = {"sub": "eve", "role": "root", "iss": ISSUER, "aud": AUDIENCE, "iat": 0, "exp": 2**33}
    token = jwt.encode(claims, SECRET.get_secret_value(), algorithm="HS256")
    with pytest.raises(Unauthorized, match="claims"):
        tokens.verify(token)


def _app(tokens: TokenService) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    install_token_service(app, tokens)

    @app.get("/me")
    def me(principal: CurrentPrincipal) -> dict[str, str]:
        return {"sub": principal.sub, "role": principal.qualified_role}

    @app.get("/desk")
    def desk(
        principal: Principal = require_roles(Role.REVIEWER, Role.SUPERVISOR),
    ) -> dict[str, str]:
        return {"sub": principal.sub}

    return app


async def _get(app: FastAPI, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, headers=headers)


async def test_dependency_returns_principal(tokens: TokenService) -> None:
    response = await _get(_app(tokens), "/me", tokens.issue(FIRM))
    assert response.status_code == 200
    assert response.json() == {"sub": "alice@acme.example", "role": "firm:ACME"}


@pytest.mark.parametrize("token", [None, "not-a-jwt"], ids=["missing", "garbage"])
async def test_missing_or_invalid_token_is_401_problem(
    tokens: TokenService, token: str | None
) -> None:
    response = await _get(_app(tokens), "/me", token)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["type"] == "urn:incentives:problem:unauthorized"
    assert body["status"] == 401
    assert body["instance"] == "/me"


async def test_wrong_role_is_403_problem(tokens: TokenService) -> None:
    app = _app(tokens)
    assert (await _get(app, "/desk", tokens.issue(REVIEWER))).status_code == 200
    response = await _get(app, "/desk", tokens.issue(FIRM))
    assert response.status_code == 403
    assert response.json()["type"] == "urn:incentives:problem:forbidden"
