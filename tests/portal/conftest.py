"""Browser fixtures: Debian's Chromium driven by Playwright, axe-core, failure artifacts.

A failing browser test leaves a screenshot and the page's HTML in
``var/browser-artifacts/<test>/`` (``INCENTIVES_BROWSER_ARTIFACTS`` to put them elsewhere).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.tiers import starts

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("INCENTIVES_CHROMIUM", "/usr/bin/chromium"))
#: The flags every launch uses: headless, no sandbox (root in CI), nothing fetched from outside.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = REPO_ROOT / "services" / "portal" / "assets" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(
    os.environ.get("INCENTIVES_BROWSER_ARTIFACTS", REPO_ROOT / "var" / "browser-artifacts")
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so the page fixture knows the outcome."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@starts("browser")
@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: `make install` installs Chromium"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
        )
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A fresh browser context (no cookies) and page; artifacts saved if the test fails."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    outside: list[str] = []
    context.on(
        "request",
        lambda r: None if urlsplit(r.url).hostname == "127.0.0.1" else outside.append(r.url),
    )
    opened = await context.new_page()
    try:
        yield opened
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            await save_artifacts(opened, request.node.name)
        await context.close()
    # Every page, script, stylesheet, font and image came from the portal itself.
    assert not outside, f"requests left the machine: {outside}"


async def save_artifacts(page: Page, name: str) -> Path:
    """A full-page screenshot and the HTML of ``page``, in a folder named after the test."""
    folder = ARTIFACTS / re.sub(r"[^\w.-]+", "_", name)
    folder.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=folder / "page.png", full_page=True)
    (folder / "page.html").write_text(await page.content(), encoding="utf-8")
    (folder / "url.txt").write_text(page.url, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def axe_source() -> str:
    assert AXE.is_file(), f"{AXE} is missing: run `make install`"
    return AXE.read_text(encoding="utf-8")
