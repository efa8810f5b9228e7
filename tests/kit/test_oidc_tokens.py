"""Services accept the OpenID provider's tokens, verified against its JWKS, and refuse forgeries.

The provider is the real one the tests start (oauth2-mock-server, ``tests/oidc_provider.py``);
the service is the applications API in process, outside dev mode, so development tokens of
people are refused and the provider's are the way in.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from pydantic import SecretStr

from services.applications.main import create_app
from services.applications.settings import Settings
from services.cli.embedded import free_port
from services.kit.auth import Principal, ProviderTokens, Role, TokenService
from services.kit.errors import Unauthorized
from tests.inprocess import InProcess, in_process_settings
from tests.oidc_provider import AUDIENCE, Provider

STRONG = "p" * 40
ACME = {"sub": "alice@acme.example", "role": "firm", "firm_id": "ACME", "name": "Alice Martin"}

Start = Callable[[FastAPI], Awaitable[InProcess]]


@pytest.fixture
async def api(oidc_provider: Provider, in_process: Start, tmp_path: Path) -> InProcess:
    settings = in_process_settings(
        Settings,
        tmp_path,
        dev_mode=False,
        jwt_secret=STRONG,
        oidc_issuer=oidc_provider.issuer,
    )
    return await in_process(create_app(settings))


async def _list(api: InProcess, token: str) -> tuple[int, dict[str, object]]:
    response = await api.client.get(
        "/v1/applications", headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code, response.json()


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_a_provider_token_is_accepted(
    oidc_provider: Provider, api: InProcess, alg: str
) -> None:
    status, body = await _list(api, oidc_provider.token(alg=alg, **ACME))
    assert status == 200, body
    assert body["items"] == []


async def test_a_token_signed_with_another_key_under_the_providers_key_id_is_refused(
    oidc_provider: Provider, api: InProcess
) -> None:
    genuine = oidc_provider.token(**ACME)
    claims = jwt.decode(genuine, options={"verify_signature": False})
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        claims, impostor, algorithm="RS256", headers={"kid": Provider.key_id(genuine)}
    )
    status, body = await _list(api, forged)
    assert status == 401
    assert "signature" in str(body["detail"]).lower()


async def test_a_token_of_another_issuer_is_refused(
    oidc_provider: Provider, api: InProcess
) -> None:
    status, body = await _list(api, oidc_provider.token(iss="https://elsewhere.example", **ACME))
    assert status == 401
    assert "issuer" in str(body["detail"]).lower()


async def test_an_expired_token_is_refused(oidc_provider: Provider, api: InProcess) -> None:
    status, body = await _list(api, oidc_provider.token(expires_in=-120, **ACME))
    assert status == 401
    assert body["detail"] == "token expired"


async def test_a_token_for_another_audience_is_refused(
    oidc_provider: Provider, api: InProcess
) -> None:
    status, body = await _list(api, oidc_provider.token(**{**ACME, "aud": "another-api"}))
    assert status == 401
    assert "audience" in str(body["detail"]).lower()


async def test_outside_dev_mode_a_persons_development_token_is_refused(api: InProcess) -> None:
    dev = TokenService(SecretStr(STRONG))
    person = dev.issue(Principal(sub="alice@acme.example", role=Role.FIRM, firm_id="ACME"))
    status, body = await _list(api, person)
    assert status == 401
    assert "dev mode only" in str(body["detail"])
    system = dev.issue(Principal(sub="system:workflows", role=Role.ADMIN))
    status, body = await _list(api, system)
    assert status == 200, body


def test_a_rotated_key_is_fetched_when_a_token_names_it(oidc_provider: Provider) -> None:
    verifier = ProviderTokens(
        oidc_provider.issuer, audience=AUDIENCE, refresh_cooldown=timedelta(0)
    )
    firm = Principal(sub="alice@acme.example", role=Role.FIRM, firm_id="ACME", name="Alice Martin")
    assert verifier.verify(oidc_provider.token(**ACME)) == firm  # the key set is now cached
    new_kid = oidc_provider.rotate("RS256")
    rotated = oidc_provider.token(**ACME)
    assert Provider.key_id(rotated) == new_kid
    assert verifier.verify(rotated) == firm


def test_made_up_key_ids_do_not_refetch_the_key_set_within_the_cooldown(
    oidc_provider: Provider,
) -> None:
    verifier = ProviderTokens(oidc_provider.issuer, audience=AUDIENCE)
    verifier.verify(oidc_provider.token(**ACME))
    claims = {**ACME, "iss": oidc_provider.issuer, "aud": AUDIENCE}
    claims |= {"iat": int(time.time()), "exp": int(time.time()) + 60}
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fetched = oidc_provider.jwks_fetches()
    for n in range(5):
        token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": f"made-up-{n}"})
        with pytest.raises(Unauthorized, match="key the provider does not publish"):
            verifier.verify(token)
    assert oidc_provider.jwks_fetches() == fetched


async def test_while_the_provider_cannot_be_reached_its_tokens_get_a_503_to_retry(
    in_process: Start, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    settings = in_process_settings(
        Settings, tmp_path, dev_mode=False, jwt_secret=STRONG, oidc_issuer=closed
    )
    api = await in_process(create_app(settings))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({**ACME, "iss": closed}, key, algorithm="RS256", headers={"kid": "k1"})
    response = await api.client.get(
        "/v1/applications", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "identity provider" in response.json()["detail"]
    listed = (await api.client.get("/openapi.json")).json()["paths"]["/v1/applications"]["get"]
    assert "503" in listed["responses"]
