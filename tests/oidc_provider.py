"""The OpenID provider the tests start: npm's oauth2-mock-server (``tools/oidc``), on Node.js.

It listens on a free loopback port, publishes its discovery document and JWKS (an RS256 and an
ES256 key), requires PKCE (S256) on the authorization code flow, and lets a test choose who
signs in next (:meth:`Provider.sign_in_as`), have a token signed with any claims
(:meth:`Provider.token`, for expired or wrong-issuer tokens) and rotate a key
(:meth:`Provider.rotate`). ``make install`` installs it from ``tools/oidc/package-lock.json``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.tiers import refuse_in_unit_tier, starts

TOOLS = Path(__file__).resolve().parents[1] / "tools" / "oidc"
#: The audience the tests' services expect (the kit's default).
AUDIENCE = "incentives-api"


class Provider:
    """A running test provider, steered through its ``/_test/*`` endpoints."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(f"{self.issuer}{path}", json=body, timeout=10)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def sign_in_as(self, **claims: Any) -> None:
        """The person whose claims the next sign-ins' access tokens carry."""
        self._post("/_test/identity", {"claims": {"aud": AUDIENCE, **claims}})

    def token(self, *, alg: str = "RS256", expires_in: int = 3600, **claims: Any) -> str:
        """An access token signed by the provider now; ``claims`` may override iss, aud, exp."""
        body = {"alg": alg, "expires_in": expires_in, "claims": {"aud": AUDIENCE, **claims}}
        token: str = self._post("/_test/token", body)["access_token"]
        return token

    def rotate(self, alg: str = "RS256") -> str:
        """Sign with a new key for ``alg`` from now on; returns its key id."""
        kid: str = self._post("/_test/keys", {"alg": alg})["kid"]
        return kid

    def jwks_fetches(self) -> int:
        """How often the key set has been fetched from the provider."""
        count: int = self._post("/_test/stats", {})["jwks"]
        return count

    def stats(self) -> dict[str, int]:
        """The provider's counters: ``jwks``, ``refreshes``, ``end_sessions``."""
        return self._post("/_test/stats", {})

    def sessions(self, *, access_ttl: int | None = None, refuse_refresh: bool = False) -> None:
        """The lifetime of the access tokens the flows issue from now on (None: the default),
        and whether refresh grants are refused."""
        self._post("/_test/sessions", {"access_ttl": access_ttl, "refuse_refresh": refuse_refresh})

    @staticmethod
    def key_id(token: str) -> str:
        kid: str = jwt.get_unverified_header(token)["kid"]
        return kid


@starts("oidc")
@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[Provider]:
    refuse_in_unit_tier("the test OpenID provider")
    node = shutil.which("node")
    assert node, "Node.js is missing: the test OpenID provider runs on it"
    assert (TOOLS / "node_modules" / "oauth2-mock-server").is_dir(), (
        f"{TOOLS}/node_modules is missing: run `make install`"
    )
    process = subprocess.Popen(
        [node, "provider.mjs", "--port", "0", "--host", "127.0.0.1"],
        cwd=TOOLS,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once it listens; empty if it died
        assert line, f"the test OpenID provider stopped (exit {process.wait(10)})"
        yield Provider(json.loads(line)["issuer"])
    finally:
        process.terminate()
        process.wait(10)
