"""JWT principals: issue, verify, refuse; the FastAPI dependency answers 401/403 problems."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from pydantic import SecretStr

from contracts.envelope import ActorKind
from services.kit.auth import (
    AUDIENCE,
    ISSUER,
    MAX_TOKEN_LIFETIME,
    ClaimMapping,
    CurrentPrincipal,
    Principal,
    Role,
    TokenService,
    install_token_service,
    principal_from_claims,
    require_roles,
)
from services.kit.errors import Unauthorized
from services.kit.problems import install_problem_handlers
from services.kit.settings import CommonSettings

SECRET = SecretStr("k" * 40)
FIRM = Principal(sub="alice@acme.example", role=Role.FIRM, firm_id="ACME", name="Alice")
REVIEWER = Principal(sub="rev.tanaka", role=Role.REVIEWER)
_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(SECRET)


def _signed(lifetime: timedelta = timedelta(hours=1), **claims: Any) -> str:
    """A token signed with SECRET, issued now and living ``lifetime``; ``None`` drops a claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "bob",
        "role": "reviewer",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + int(lifetime.total_seconds()),
    }
    merged = {k: v for k, v in {**base, **claims}.items() if v is not None}
    return jwt.encode(merged, SECRET.get_secret_value(), algorithm="HS256")


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
    principal = tokens.verify(_signed(role="firm:GLOBEX"))
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
    now = int(time.time())
    claims = {"sub": "eve", "role": "admin", "iss": ISSUER, "aud": AUDIENCE}
    token = jwt.encode({**claims, "iat": now, "exp": now + 60}, key=None, algorithm="none")
    with pytest.raises(Unauthorized):
        tokens.verify(token)


def test_unknown_role_refused_without_validator_internals(tokens: TokenService) -> None:
    with pytest.raises(Unauthorized, match="claims") as caught:
        tokens.verify(_signed(role="root"))
    detail = caught.value.detail
    assert detail.startswith("invalid token claims: role: Input should be 'firm'")
    for internal in ("errors.pydantic.dev", "type=", "input_value", "validation error for"):
        assert internal not in detail


def test_a_firm_token_without_a_firm_names_the_problem_plainly(tokens: TokenService) -> None:
    with pytest.raises(Unauthorized) as caught:
        tokens.verify(_signed(role="firm"))
    assert caught.value.detail == (
        "invalid token claims: firm_id is required for role firm and forbidden otherwise"
    )


def test_a_hundred_year_token_is_refused(tokens: TokenService) -> None:
    with pytest.raises(Unauthorized, match="exceeds the accepted maximum of 30 days"):
        tokens.verify(_signed(lifetime=timedelta(days=36525)))


def test_a_token_up_to_the_maximum_lifetime_is_accepted(tokens: TokenService) -> None:
    assert tokens.verify(_signed(lifetime=MAX_TOKEN_LIFETIME)).sub == "bob"
    with pytest.raises(Unauthorized, match="lifetime"):
        tokens.verify(_signed(lifetime=MAX_TOKEN_LIFETIME + timedelta(seconds=1)))


def test_a_backdated_iat_does_not_stretch_the_lifetime(tokens: TokenService) -> None:
    # exp in 100 years and iat 31 days ago: the lifetime is what counts, not the time left.
    now = int(time.time())
    with pytest.raises(Unauthorized, match="lifetime"):
        tokens.verify(_signed(iat=now - 31 * 86400, exp=now + 100 * 365 * 86400))


def test_an_iat_in_the_future_is_refused(tokens: TokenService) -> None:
    # Otherwise a future iat would make a far-off exp look short-lived.
    later = int(time.time()) + 100 * 365 * 86400
    with pytest.raises(Unauthorized, match="iat"):
        tokens.verify(_signed(iat=later - 3600, exp=later))


@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_exp_and_iat_are_required(tokens: TokenService, claim: str) -> None:
    with pytest.raises(Unauthorized, match=f'"{claim}"'):
        tokens.verify(_signed(**{claim: None}))


def test_the_maximum_lifetime_is_a_setting(
    monkeypatch: pytest.MonkeyPatch, tokens: TokenService
) -> None:
    assert CommonSettings().jwt_max_lifetime == MAX_TOKEN_LIFETIME
    monkeypatch.setenv("INCENTIVES_JWT_MAX_LIFETIME", "PT8H")
    settings = CommonSettings()
    assert settings.jwt_max_lifetime == timedelta(hours=8)
    strict = TokenService(SECRET, max_lifetime=settings.jwt_max_lifetime)
    day_long = tokens.issue(FIRM, ttl=timedelta(days=1))
    assert tokens.verify(day_long) == FIRM
    with pytest.raises(Unauthorized, match="accepted maximum of 8:00:00"):
        strict.verify(day_long)


def test_issuing_a_token_longer_than_the_maximum_is_refused() -> None:
    short = TokenService(SECRET, max_lifetime=timedelta(hours=1))
    with pytest.raises(ValueError, match="at most 1:00:00"):
        short.issue(FIRM, ttl=timedelta(hours=2))
    assert short.ttl == timedelta(hours=1)  # the default lifetime never exceeds the maximum
    assert short.verify(short.issue(FIRM)) == FIRM


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


async def test_a_long_lived_token_is_a_401_problem_with_a_plain_detail(
    tokens: TokenService,
) -> None:
    response = await _get(_app(tokens), "/me", _signed(lifetime=timedelta(days=36525)))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    detail = response.json()["detail"]
    assert detail == (
        "invalid token: its lifetime (36525 days from iat to exp) exceeds the accepted "
        "maximum of 30 days"
    )


async def test_wrong_role_is_403_problem(tokens: TokenService) -> None:
    app = _app(tokens)
    assert (await _get(app, "/desk", tokens.issue(REVIEWER))).status_code == 200
    response = await _get(app, "/desk", tokens.issue(FIRM))
    assert response.status_code == 403
    assert response.json()["type"] == "urn:incentives:problem:forbidden"


# --- the claim mapping: one definition of how claims name a principal ------------------------


def test_claims_map_to_a_principal_through_nested_and_renamed_claims() -> None:
    mapping = ClaimMapping(subject="email", role="realm_access.roles", firm="org", name="name")
    claims = {
        "sub": "3f2a",
        "email": "alice@acme.example",
        "realm_access": {"roles": ["offline_access", "firm", "uma_authorization"]},
        "org": "ACME",
        "name": "Alice",
    }
    assert principal_from_claims(claims, mapping) == FIRM


def test_a_url_named_claim_keeps_its_dots() -> None:
    mapping = ClaimMapping(role="https://incentives.example/role")
    claims = {"sub": "rev.tanaka", "https://incentives.example/role": "reviewer"}
    assert principal_from_claims(claims, mapping) == REVIEWER


def test_a_qualified_firm_role_in_a_list_names_the_firm() -> None:
    claims = {"sub": "alice@acme.example", "role": ["firm:ACME"], "name": "Alice"}
    assert principal_from_claims(claims) == FIRM


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        (["offline_access"], "none of the listed roles"),
        (["reviewer", "admin"], "several of the platform's roles"),
        (42, "a string or a list"),
    ],
)
def test_a_role_claim_must_name_exactly_one_role(roles: object, message: str) -> None:
    with pytest.raises(Unauthorized, match=message):
        principal_from_claims({"sub": "bob", "role": roles})


def test_a_missing_role_claim_is_named() -> None:
    with pytest.raises(Unauthorized, match="roles: field required"):
        principal_from_claims({"sub": "bob"}, ClaimMapping(role="roles"))


def test_outside_dev_mode_only_system_subjects_may_use_development_tokens() -> None:
    strict = TokenService(SECRET, dev_tokens=False)
    with pytest.raises(Unauthorized, match="dev mode only"):
        strict.verify(strict.issue(FIRM))
    system = Principal(sub="system:workflows", role=Role.ADMIN)
    assert strict.verify(strict.issue(system)) == system


def test_an_asymmetric_token_without_a_provider_is_refused(tokens: TokenService) -> None:
    with pytest.raises(Unauthorized, match="algorithm 'RS256' is not accepted"):
        tokens.verify(jwt.encode({"sub": "bob"}, _RSA_KEY, algorithm="RS256"))
