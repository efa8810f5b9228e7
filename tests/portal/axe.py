"""Accessibility checks with axe-core, run inside the page."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page

#: The impacts a page may not have.
BLOCKING = frozenset({"serious", "critical"})


async def violations(page: Page, axe_source: str) -> list[dict[str, Any]]:
    """The serious and critical axe violations of the page as it is now.

    axe is evaluated through the DevTools protocol, which the page's Content-Security-Policy
    does not govern, so the portal's policy stays as strict in tests as in production.
    """
    await page.evaluate(axe_source)
    result: dict[str, Any] = await page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    return [v for v in result["violations"] if v.get("impact") in BLOCKING]


async def assert_accessible(page: Page, axe_source: str) -> None:
    found = await violations(page, axe_source)
    described = [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(n["target"]) for n in v["nodes"][:3])
        for v in found
    ]
    assert not found, f"{page.url}: " + "; ".join(described)
