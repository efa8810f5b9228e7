"""People's journeys through the portal in Chromium, against the real platform.

The applications, eligibility and review services and the workflow worker run on a broker of
their own with the Temporal dev server and PostgreSQL (as in tests/review/test_full_run.py);
the portal runs in front of them. Each page visited is checked with axe-core.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from services.kit.logging import configure_logging
from services.portal.main import SESSION_COOKIE, create_app
from services.portal.settings import Settings
from tests.applications.helpers import content
from tests.kit.helpers import eventually
from tests.portal.axe import assert_accessible
from tests.portal.conftest import ARTIFACTS
from tests.review.helpers import ADMIN
from tests.review.test_full_run import FIRM, Platform, platform
from tests.support import free_port, serving

pytestmark = pytest.mark.integration

STAGES = ("technical", "security", "finance", "committee")
#: GOV.UK Frontend's focus colour (#ffdd00), as computed styles give it.
FOCUS_COLOUR = "rgb(255, 221, 0)"


class Portal:
    """The running portal and the platform behind it."""

    def __init__(self, url: str, running: Platform) -> None:
        self.url = url
        self.desk = running.clients["review"]
        self.applications = running.clients["applications"]


@pytest.fixture(scope="module")
async def portal(
    pg_url: str,
    temporal_dev: str,
    tmp_path_factory: pytest.TempPathFactory,
    unique_name: Callable[[str], str],
) -> AsyncIterator[Portal]:
    configure_logging("tests", "WARNING")
    tmp = tmp_path_factory.mktemp("portal")
    async with AsyncExitStack() as stack:
        running = await stack.enter_async_context(
            platform(pg_url, temporal_dev, tmp, unique_name("portal"))
        )
        port = free_port()
        settings = Settings(
            port=port,
            var_dir=tmp / "portal",
            applications_url=str(running.clients["applications"].base_url),
            review_url=str(running.clients["review"].base_url),
        )
        await stack.enter_async_context(serving(create_app(settings), port))
        yield Portal(f"http://127.0.0.1:{port}", running)


async def sign_in(page: Page, portal: Portal, identity: str, axe_source: str) -> None:
    await page.goto(f"{portal.url}/sign-in")
    await assert_accessible(page, axe_source)
    await page.locator(f"input[name=identity][value='{identity}']").check()
    await page.get_by_role("button", name="Sign in").click()


async def sign_out(page: Page) -> None:
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in as a demo person")).to_be_visible()


def fill_values() -> dict[str, str]:
    """A complete application, as a firm types it."""
    return {
        "firm.legal_name": "Acme Vision AI GmbH",
        "firm.country_of_incorporation": "DE",
        "firm.registration_number": "HRB 123456",
        "firm.foreign_ownership_pct": "100",
        "firm.parent_companies.0.legal_name": "Acme Holdings SE",
        "firm.parent_companies.0.country": "DE",
        "firm.parent_companies.0.ownership_pct": "60.00",
        "proposal.title": "Radiology triage assistant for regional hospitals",
        "proposal.ai_use_case": "Computer-vision triage of chest X-rays.",
        "proposal.investment_commitment.amount": "5000000.00",
        "proposal.investment_commitment.currency": "EUR",
        "proposal.local_jobs": "40",
        "incentives.grant.amount.amount": "250000.00",
        "incentives.grant.amount.currency": "EUR",
        "incentives.grant.description": "Adapting diagnostic imaging models to local data.",
        "incentives.zone_space.0.quantity": "4",
        "incentives.fast_track.0.justification": "Pilot the assistant in two public hospitals.",
        "commitments.training.engineers_per_year": "30",
        "commitments.training.description": "Twelve-week applied machine-learning residency.",
        "commitments.university_partnerships.0.university": "National University of Technology",
        "commitments.university_partnerships.0.scope": "Joint research chair on medical imaging.",
        "commitments.data_protection_attestation.signatory": "Dr. Jana Weber, CTO",
        "commitments.responsible_ai_attestation.signatory": "Dr. Jana Weber, CTO",
        "documents.0.document_id": "doc_7K2M9P",
        "documents.0.title": "Commercial register extract",
        "documents.0.sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    }


SELECTS = {
    "proposal.sector": "health",
    "incentives.grant.purpose": "research_and_development",
    "incentives.zone_space.0.unit_type": "gpu_rack_unit",
    "incentives.fast_track.0.item": "sandbox_access",
    "documents.0.kind": "business_registration",
}


def field(page: Page, path: str) -> Any:
    return page.locator(f"[name='{path}']")


async def test_a_firm_fixes_a_validation_error_submits_and_reviewers_approve(
    portal: Portal, page: Page, axe_source: str
) -> None:
    shots = ARTIFACTS / "journey"  # screenshots of the pages, to look at
    shots.mkdir(parents=True, exist_ok=True)
    # --- the firm: a draft with an error, shown next to its field -----------------------------
    await sign_in(page, portal, "firm:ACME", axe_source)
    await expect(page.get_by_role("heading", name="Your applications")).to_be_visible()
    await assert_accessible(page, axe_source)
    cookie = next(c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE)
    assert cookie["httpOnly"]
    assert cookie["secure"]
    assert cookie["sameSite"] == "Strict"

    await page.get_by_role("button", name="Start an application").click()
    await expect(field(page, "proposal.title")).to_be_visible()
    await assert_accessible(page, axe_source)
    await field(page, "proposal.title").fill(fill_values()["proposal.title"])
    await field(page, "firm.foreign_ownership_pct").fill("150")
    await page.get_by_role("button", name="Save draft").click()

    summary = page.locator(".govuk-error-summary")
    await expect(summary).to_be_visible()
    await expect(summary.get_by_role("link", name=re.compile("Foreign ownership"))).to_be_visible()
    inline = page.locator("#firm-foreign_ownership_pct-error")
    await expect(inline).to_be_visible()
    await page.screenshot(path=shots / "validation-error.png", full_page=True)
    await assert_accessible(page, axe_source)

    for path, value in fill_values().items():
        await field(page, path).fill(value)
    for path, value in SELECTS.items():
        await field(page, path).select_option(value)
    await page.get_by_role("button", name="Save draft").click()
    await expect(page.locator("#where")).to_contain_text("This is a draft")
    await assert_accessible(page, axe_source)
    application_id = page.url.rsplit("/", 1)[1]

    await page.get_by_role("button", name="Submit the application").click()
    # The submission answers with a redirect back to the application: wait for that page to land
    # before reloading it, or the reload races the redirect and finds no page attached.
    await expect(page.locator("#where")).not_to_contain_text("This is a draft")

    async def eligible_or_later() -> bool:
        await page.reload()
        text = await page.locator("#where").inner_text()
        return "Eligibility is being checked" not in text

    await eventually(eligible_or_later, timeout=90, interval=0.5)
    await expect(page.locator("#rules li").first).to_be_visible()
    await expect(page.locator("#rules")).not_to_contain_text("Not met")
    await page.screenshot(path=shots / "submitted.png", full_page=True)
    await assert_accessible(page, axe_source)
    await sign_out(page)

    # --- the reviewers: every stage, through their inbox, in the browser ---------------------
    decided: list[tuple[str, str]] = []
    refused = False

    async def tasks_of() -> list[dict[str, Any]]:
        response = await portal.desk.get("/v1/inbox", params={"limit": 200}, headers=ADMIN)
        return [t for t in response.json()["items"] if t["application_id"] == application_id]

    async def approved() -> bool:
        view = await portal.applications.get(
            f"/v1/applications/{application_id}",
            headers={"Authorization": ADMIN["Authorization"]},
        )
        return bool(view.json()["status"] in ("approved", "award_opened"))

    async def decide_open_tasks() -> bool:
        nonlocal refused
        if await approved():
            return True
        for task in await tasks_of():
            if task["status"] != "open":
                continue
            who = task["reviewer_id"]
            await sign_in(page, portal, f"staff:{who}", axe_source)
            await expect(page.get_by_role("heading", name="Your tasks")).to_be_visible()
            await assert_accessible(page, axe_source)
            await page.locator(f"a[href='/tasks/{task['task_id']}']").click()
            await expect(page.locator("#task-status")).to_be_visible()
            await assert_accessible(page, axe_source)
            if not await page.locator("#decision-approve").count():
                # The committee reached its quorum meanwhile: this task was cancelled.
                await expect(page.locator("#task-status")).to_have_text("Cancelled")
                await sign_out(page)
                continue
            stale = None
            if not refused:
                # A second tab with the same form: sent after the first, the workflow refuses it.
                stale = await page.context.new_page()
                await stale.goto(page.url)
            await page.locator("#decision-approve").check()
            await page.locator("#comment").fill(f"{task['stage']} review: sound.")
            await page.get_by_role("button", name="Send the decision").click()
            banner = page.get_by_text("Your decision was recorded.")
            closed = page.get_by_text("This application has ended")
            await expect(banner.or_(closed)).to_be_visible()
            if await banner.is_visible():
                decided.append((task["stage"], who))
            if stale is not None and await banner.is_visible():
                await stale.locator("#decision-reject").check()
                await stale.locator("#comment").fill("Second thoughts.")
                await stale.get_by_role("button", name="Send the decision").click()
                await expect(stale.locator("#refusal")).to_have_text(
                    "You have already decided this stage."
                )
                await stale.screenshot(path=shots / "refusal.png", full_page=True)
                await assert_accessible(stale, axe_source)
                refused = True
            if stale is not None:
                await stale.close()
            await sign_out(page)
        return False

    await eventually(decide_open_tasks, timeout=240, interval=0.5)
    assert refused
    assert [s for s, _ in decided].count("committee") >= 2
    assert {s for s, _ in decided} == set(STAGES)
    people = [who for _, who in decided]
    assert len(people) == len(set(people))

    # --- the firm sees the outcome in plain words --------------------------------------------
    await sign_in(page, portal, "firm:ACME", axe_source)
    await page.goto(f"{portal.url}/applications/{application_id}")
    await expect(page.locator("#where")).to_contain_text("approved")
    await expect(page.locator("#timeline")).to_contain_text("Application approved.")
    await page.screenshot(path=shots / "approved.png", full_page=True)
    await assert_accessible(page, axe_source)


async def test_forms_without_the_sessions_csrf_token_are_refused(
    portal: Portal, page: Page, axe_source: str
) -> None:
    await sign_in(page, portal, "firm:ACME", axe_source)
    response = await page.request.post(
        f"{portal.url}/applications/new", form={"proposal.title": "Forged", "csrf_token": "x"}
    )
    assert response.status == 403
    async with httpx.AsyncClient(base_url=portal.url) as anonymous:
        signed_out = await anonymous.get("/applications")
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/sign-in"


async def test_a_supervisor_sees_the_escalated_tasks_page(
    portal: Portal, page: Page, axe_source: str
) -> None:
    await sign_in(page, portal, "staff:sup.meyer@gaip.example", axe_source)
    await expect(page.get_by_role("heading", name="Escalated tasks")).to_be_visible()
    await assert_accessible(page, axe_source)
    # A reviewer's page is not theirs to see at the supervisor's address, and the other way.
    await page.goto(f"{portal.url}/applications")
    await expect(page.get_by_role("heading", name="You cannot use this page")).to_be_visible()
    await assert_accessible(page, axe_source)


async def test_information_requested_is_answered_by_an_amendment_then_withdrawn(
    portal: Portal, page: Page, axe_source: str
) -> None:
    shots = ARTIFACTS / "journey"
    shots.mkdir(parents=True, exist_ok=True)
    submitted = await portal.applications.post(
        "/v1/applications/submissions",
        json=content(),
        headers={**FIRM, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert submitted.status_code == 201, submitted.text
    application_id = submitted.json()["id"]

    async def technical_task() -> bool:
        response = await portal.desk.get("/v1/inbox", params={"limit": 200}, headers=ADMIN)
        return any(
            t["application_id"] == application_id
            and t["stage"] == "technical"
            and t["status"] == "open"
            for t in response.json()["items"]
        )

    await eventually(technical_task, timeout=90, interval=0.5)
    response = await portal.desk.get("/v1/inbox", params={"limit": 200}, headers=ADMIN)
    task = next(
        t
        for t in response.json()["items"]
        if t["application_id"] == application_id and t["stage"] == "technical"
    )

    # The technical reviewer asks for more, from the task page.
    await sign_in(page, portal, f"staff:{task['reviewer_id']}", axe_source)
    # Choosing a stage filters at once (htmx); the Filter button does the same without it.
    await page.locator("#stage").select_option("technical")
    await expect(page).to_have_url(re.compile(r"/inbox\?stage=technical$"))
    rows = page.locator("#tasks tbody tr")
    await expect(rows.first).to_contain_text("Technical")
    await expect(rows.first).to_contain_text("On time")
    await assert_accessible(page, axe_source)
    await page.goto(f"{portal.url}/tasks/{task['task_id']}")
    await page.locator("#decision-request_information").check()
    await page.locator("#comment").fill("How many local engineers will you train each year?")
    await page.locator("#requested_fields").fill("commitments.training")
    await page.get_by_role("button", name="Send the decision").click()
    await expect(page.get_by_text("Your decision was recorded.")).to_be_visible()
    await sign_out(page)

    # The firm reads the question and answers it with an amendment.
    await sign_in(page, portal, "firm:ACME", axe_source)
    where = page.locator("#where")

    async def asked() -> bool:
        await page.goto(f"{portal.url}/applications/{application_id}")
        return "We asked you for more information" in await where.inner_text()

    await eventually(asked, timeout=60, interval=0.5)
    await expect(page.get_by_role("heading", name="Information requested")).to_be_visible()
    await expect(page.locator("main")).to_contain_text("How many local engineers")
    await assert_accessible(page, axe_source)
    await page.get_by_role("button", name="Amend the application").click()
    await expect(page.locator("#amend_reason")).to_be_visible()
    await assert_accessible(page, axe_source)
    await field(page, "commitments.training.engineers_per_year").fill("45")
    await page.locator("#amend_reason").fill("We will train 45 engineers a year.")
    await page.get_by_role("button", name="Send the amendment").click()
    await expect(where).not_to_contain_text("We asked you for more information")
    await expect(page.locator("#timeline")).to_contain_text("asks for more information")
    # Only what the firm changed is amended: nothing the form does not show is lost.
    amended = page.locator("#timeline li").filter(has_text="Application amended")
    await expect(amended).to_contain_text("(revision 2): commitments.training.engineers_per_year.")
    await page.screenshot(path=shots / "amended.png", full_page=True)

    # And withdraws it, with a reason.
    await page.get_by_text("Withdraw this application").click()
    await page.locator("#reason").fill("We chose another programme.")
    await page.get_by_role("button", name="Withdraw the application").click()
    await expect(where).to_contain_text("Your application was withdrawn")
    await assert_accessible(page, axe_source)


async def test_sign_in_by_keyboard_alone_with_a_visible_focus(
    portal: Portal, page: Page, axe_source: str
) -> None:
    await page.goto(f"{portal.url}/sign-in")
    await page.keyboard.press("Tab")
    skip = page.get_by_text("Skip to main content")
    await expect(skip).to_be_focused()
    # GOV.UK Frontend's focus state: the focus colour, yellow, behind the focused link.
    background = await skip.evaluate("e => getComputedStyle(e).backgroundColor")
    assert background == FOCUS_COLOUR
    first = page.locator("input[name=identity]").first
    while not await first.evaluate("e => e === document.activeElement"):
        await page.keyboard.press("Tab")
    await page.keyboard.press("Space")
    await expect(first).to_be_checked()
    ring = await first.evaluate("e => getComputedStyle(e.nextElementSibling, '::before').boxShadow")
    assert FOCUS_COLOUR in ring  # the focused radio has a yellow ring
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Your applications")).to_be_visible()
