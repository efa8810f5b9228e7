"""Signing in through OpenID Connect in Chromium, outside dev mode, against a real provider.

The provider is the one the tests start (oauth2-mock-server: authorization code, PKCE with S256
required, RS256 tokens); the portal and the applications API run outside dev mode, so the
provider's access token is the only way in. The firm's draft, created with that same kind of
token, shows on its applications page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.async_api import Page, expect

from services.applications.main import create_app as applications_app
from services.applications.settings import Settings as ApplicationsSettings
from services.kit.logging import configure_logging
from services.portal import oidc
from services.portal.main import SESSION_COOKIE
from services.portal.main import create_app as portal_app
from services.portal.settings import Settings as PortalSettings
from tests.applications.helpers import content
from tests.inprocess import in_process_settings
from tests.oidc_provider import Provider
from tests.portal.axe import assert_accessible
from tests.support import free_port, serving

STRONG = "o" * 40
ALICE = {"sub": "alice@acme.example", "role": "firm", "firm_id": "ACME", "name": "Alice Martin"}


@dataclass
class Running:
    portal: str
    applications: httpx.AsyncClient


@pytest.fixture(scope="module")
async def running(
    oidc_provider: Provider, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    configure_logging("tests", "WARNING")
    tmp: Path = tmp_path_factory.mktemp("oidc")
    production = {"dev_mode": False, "jwt_secret": STRONG, "oidc_issuer": oidc_provider.issuer}
    async with AsyncExitStack() as stack:
        apps_settings = in_process_settings(
            ApplicationsSettings, tmp / "applications", **production
        )
        apps = await stack.enter_async_context(
            serving(applications_app(apps_settings), apps_settings.port)
        )
        port = free_port()
        settings = PortalSettings(
            port=port,
            var_dir=tmp / "portal",
            applications_url=str(apps.base_url),
            review_url=f"http://127.0.0.1:{free_port()}",
            sign_in="oidc",
            session_secret=STRONG,
            oidc_client_id="incentives-portal",
            **production,
        )
        await stack.enter_async_context(serving(portal_app(settings), port))
        yield Running(f"http://127.0.0.1:{port}", apps)


async def test_a_firm_signs_in_through_the_provider_and_sees_its_applications(
    page: Page, running: Running, oidc_provider: Provider, axe_source: str
) -> None:
    draft = await running.applications.post(
        "/v1/applications",
        json=content(proposal__title="Karachi vision lab"),
        headers={"Authorization": f"Bearer {oidc_provider.token(**ALICE)}"},
    )
    assert draft.status_code == 201, draft.text
    oidc_provider.sign_in_as(**ALICE)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/authorize" in r.url else None)

    await page.goto(f"{running.portal}/applications")
    await expect(page).to_have_url(f"{running.portal}/sign-in")
    await assert_accessible(page, axe_source)
    await page.get_by_role("button", name="Sign in with your organisation's account").click()

    await expect(page).to_have_url(f"{running.portal}/applications")
    await expect(page.get_by_role("heading", name="Your applications")).to_be_visible()
    await expect(page.get_by_role("link", name="Karachi vision lab")).to_be_visible()
    await expect(page.get_by_text("Signed in as Alice Martin")).to_be_visible()
    (authorize,) = asked
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["response_type"] == ["code"]
    assert "openid" in query["scope"][0].split()
    assert query["state"]
    assert query["nonce"]
    await assert_accessible(page, axe_source)
    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies[SESSION_COOKIE]
    assert session["httpOnly"]
    assert session["sameSite"] == "Lax"
    assert "alice" not in session["value"].lower()  # encrypted, not merely signed

    # Signing out ends the session at the provider too (RP-initiated logout), then comes back.
    ended = oidc_provider.stats()["end_sessions"]
    logouts: list[str] = []
    page.on("request", lambda r: logouts.append(r.url) if "/endsession" in r.url else None)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert urlsplit(page.url).path == "/sign-in"
    (logout,) = logouts
    asked_to = parse_qs(urlsplit(logout).query)
    assert asked_to["post_logout_redirect_uri"] == [f"{running.portal}/sign-in"]
    assert asked_to["id_token_hint"][0].count(".") == 2  # the ID token the sign-in got
    assert oidc_provider.stats()["end_sessions"] == ended + 1
    await page.goto(f"{running.portal}/applications")
    await expect(page).to_have_url(f"{running.portal}/sign-in")


async def test_an_expiring_token_is_refreshed_and_a_refused_refresh_signs_out(
    page: Page, running: Running, oidc_provider: Provider, axe_source: str
) -> None:
    oidc_provider.sign_in_as(**ALICE)
    # Access tokens live 20 s, within the portal's refresh leeway: each page refreshes first.
    assert oidc.REFRESH_LEEWAY_SECONDS > 20
    oidc_provider.sessions(access_ttl=20)
    try:
        await page.goto(f"{running.portal}/sign-in")
        await page.get_by_role("button", name="Sign in with your organisation's account").click()
        await expect(page).to_have_url(f"{running.portal}/applications")
        refreshed = oidc_provider.stats()["refreshes"]
        assert refreshed >= 1

        await page.goto(f"{running.portal}/applications")
        await expect(page.get_by_role("heading", name="Your applications")).to_be_visible()
        assert oidc_provider.stats()["refreshes"] == refreshed + 1
        await assert_accessible(page, axe_source)

        # The provider no longer refreshes: the session ends and the person signs in again.
        oidc_provider.sessions(access_ttl=20, refuse_refresh=True)
        await page.goto(f"{running.portal}/applications")
        await expect(page).to_have_url(f"{running.portal}/sign-in")
        assert oidc_provider.stats()["refreshes"] == refreshed + 2
        oidc_provider.sessions(access_ttl=20)
        await page.goto(f"{running.portal}/applications")
        await expect(page).to_have_url(f"{running.portal}/sign-in")
        assert oidc_provider.stats()["refreshes"] == refreshed + 2, "the session was ended"
    finally:
        oidc_provider.sessions()


async def test_an_account_without_a_role_of_the_programme_is_told_so(
    page: Page, running: Running, oidc_provider: Provider, axe_source: str
) -> None:
    oidc_provider.sign_in_as(sub="visitor@elsewhere.example", role=["offline_access"])
    await page.goto(f"{running.portal}/sign-in")
    await page.get_by_role("button", name="Sign in with your organisation's account").click()
    await expect(page.get_by_role("heading", name="You could not be signed in")).to_be_visible()
    await expect(page.get_by_text("none of the listed roles")).to_be_visible()
    await assert_accessible(page, axe_source)
    await page.goto(f"{running.portal}/applications")
    await expect(page).to_have_url(f"{running.portal}/sign-in")


async def test_a_callback_that_did_not_start_here_signs_nobody_in(
    page: Page, running: Running
) -> None:
    response = await page.goto(f"{running.portal}/sign-in/callback?code=stolen&state=forged")
    assert response is not None
    assert response.status == 403
    await expect(page.get_by_role("heading", name="You could not be signed in")).to_be_visible()
