"""Every role's journey after the reviews, in Chromium, against the real platform.

The award platform (applications, eligibility, review, zones, disbursement on the simulated
rail, the workflow worker) plus the audit log run on a broker of their own with the Temporal
dev server and PostgreSQL, as in tests/review/test_award_run.py; the portal runs in front of
them. Each page visited is checked with axe-core.

- a firm from a draft to its signing tranche paid, then a milestone a reviewer verifies from
  the task page, and the next tranche paid;
- a reviewer's conflict of interest, refused by the workflow, in the reviewer's words;
- an auditor from a search to a verified export;
- an admin resizing a zone, reading the budgets' chart and keeping the reviewer registry.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from contracts.envelope import utcnow
from services.audit.domain.bundle import verify_bundle
from services.audit.main import create_app as create_audit
from services.audit.settings import Settings as AuditSettings
from services.kit.logging import configure_logging
from services.portal.main import create_app
from services.portal.settings import Settings
from tests.applications.helpers import content
from tests.kit.helpers import eventually
from tests.portal.axe import assert_accessible
from tests.portal.conftest import ARTIFACTS
from tests.portal.test_journeys import SELECTS, field, fill_values, sign_in, sign_out
from tests.review.award_journey import Journey, approve, award_platform, fund_grants, offered
from tests.review.helpers import ADMIN, auth, reviewer
from tests.review.test_full_run import FIRM, Platform, submit, tasks_of
from tests.support import free_port, serving

pytestmark = pytest.mark.integration

AUDITOR = auth("auditor")
#: SLA timers of the workflow, fast: a reminder 10 s and an escalation 20 s after assignment.
FAST_SLA = {"sla_reminder_days": 1, "sla_escalation_days": 2, "sla_day_seconds": 10}
SUPERVISOR = "sup.meyer@gaip.example"


class Portal:
    """The running portal and the platform behind it."""

    def __init__(self, url: str, running: Platform) -> None:
        self.url = url
        self.running = running
        self.desk = running.clients["review"]
        self.applications = running.clients["applications"]
        self.audit = running.clients["audit"]


@pytest.fixture(scope="module")
async def portal(
    pg_url: str,
    temporal_dev: str,
    tmp_path_factory: pytest.TempPathFactory,
    unique_name: Callable[[str], str],
) -> AsyncIterator[Portal]:
    configure_logging("tests", "WARNING")
    tmp = tmp_path_factory.mktemp("portal-roles")
    async with AsyncExitStack() as stack:
        running = await stack.enter_async_context(
            award_platform(
                pg_url,
                temporal_dev,
                tmp,
                unique_name("portal-roles"),
                more={"audit": lambda kw: create_audit(AuditSettings(**kw))},
                worker=FAST_SLA,
            )
        )
        await fund_grants(running.clients["disbursement"])
        port = free_port()
        url = {name: str(client.base_url) for name, client in running.clients.items()}
        settings = Settings(
            port=port,
            var_dir=tmp / "portal",
            applications_url=url["applications"],
            review_url=url["review"],
            zones_url=url["zones"],
            disbursement_url=url["disbursement"],
            audit_url=url["audit"],
        )
        await stack.enter_async_context(serving(create_app(settings), port))
        yield Portal(f"http://127.0.0.1:{port}", running)


def shots() -> Any:
    folder = ARTIFACTS / "journey"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def until_shown(page: Page, url: str, selector: str, text: str, timeout: float = 120) -> None:
    """Reload ``url`` until ``selector`` contains ``text`` (the platform works asynchronously)."""

    async def shown() -> bool:
        await page.goto(url)
        found = page.locator(selector)
        return bool(await found.count()) and text in await found.first.inner_text()

    await eventually(shown, timeout=timeout, interval=0.5)


async def test_a_firm_from_its_draft_to_the_signing_tranche_then_a_verified_milestone(
    portal: Portal, page: Page, axe_source: str
) -> None:
    # --- the firm writes and submits its application ------------------------------------------
    await sign_in(page, portal, "firm:ACME", axe_source)
    await page.get_by_role("button", name="Start an application").click()
    for path, value in fill_values().items():
        await field(page, path).fill(value)
    for path, value in SELECTS.items():
        await field(page, path).select_option(value)
    await page.get_by_role("button", name="Save draft").click()
    await expect(page.locator("#where")).to_contain_text("This is a draft")
    application_id = page.url.rsplit("/", 1)[1]
    await page.get_by_role("button", name="Submit the application").click()
    await expect(page.locator("#where")).not_to_contain_text("This is a draft")
    own = f"{portal.url}/applications/{application_id}"

    # --- the reviewers approve every stage (their pages are test_journeys' subject) -----------
    journey = Journey(portal.applications, portal.desk, application_id)
    await journey.decide_until(offered)

    # --- the offer: accepted in the browser ---------------------------------------------------
    await page.goto(own)
    await expect(page.locator("#where")).to_contain_text("We made you an offer")
    await expect(page.locator("#offer")).to_contain_text("4 GPU rack units")
    await expect(page.locator("#offer")).to_contain_text("250,000.00 EUR")
    await expect(page.get_by_role("button", name="Accept the offer")).to_be_visible()
    await assert_accessible(page, axe_source)
    await page.screenshot(path=shots() / "offer.png", full_page=True)
    await page.get_by_role("button", name="Accept the offer").click()
    await expect(page.locator("#where")).to_contain_text("You accepted the offer")

    # The space is allocated and the signing tranche paid, as the firm reads it.
    await until_shown(page, own, "#tranches tbody tr", "Paid")
    await expect(page.locator("#allocated")).to_contain_text("4 GPU rack units")
    first = page.locator("#tranches tbody tr").first
    await expect(first).to_contain_text("On signing")
    await expect(first).to_contain_text("100,000.00 EUR")
    await expect(page.locator("#tranches tbody tr").nth(1)).to_contain_text("Not yet due")
    await page.screenshot(path=shots() / "signing-paid.png", full_page=True)
    await assert_accessible(page, axe_source)

    # --- the firm reports its first milestone, with evidence ----------------------------------
    await page.locator("#milestone-summary").fill("The lab opened and ten engineers were hired.")
    await page.locator("#milestone-evidence").fill("doc_lab_2027, doc_hires_2027")
    await page.get_by_role("button", name="Report the milestone").click()
    milestones = page.locator("#milestones")
    await expect(milestones).to_contain_text("Waiting for verification")
    await expect(milestones).to_contain_text("doc_lab_2027, doc_hires_2027")
    await assert_accessible(page, axe_source)
    await sign_out(page)

    # --- a reviewer verifies it from the task page --------------------------------------------
    async def milestone_task() -> dict[str, Any] | None:
        return next(
            (
                t
                for t in await tasks_of(portal.desk, application_id)
                if t["stage"] == "milestone" and t["status"] == "open"
            ),
            None,
        )

    await eventually(milestone_task, timeout=120, interval=0.5)
    task = await milestone_task()
    assert task is not None
    await sign_in(page, portal, f"staff:{task['reviewer_id']}", axe_source)
    await page.locator(f"a[href='/tasks/{task['task_id']}']").click()
    await expect(page.locator("#milestones")).to_contain_text("The lab opened")
    # A milestone is verified or not: there is no information request on it.
    await expect(page.locator("#decision-request_information")).to_have_count(0)
    await assert_accessible(page, axe_source)
    await page.locator("#decision-approve").check()
    await page.locator("#comment").fill("Site visit confirmed the lab and the hires.")
    await page.get_by_role("button", name="Send the decision").click()
    await expect(page.get_by_text("Your decision was recorded.")).to_be_visible()
    await assert_accessible(page, axe_source)
    await sign_out(page)

    # --- the firm sees the milestone verified and the second tranche paid ---------------------
    await sign_in(page, portal, "firm:ACME", axe_source)
    await until_shown(page, own, "#tranches tbody tr:nth-child(2)", "Paid")
    await expect(milestones).to_contain_text("Verified")
    await page.screenshot(path=shots() / "milestone-paid.png", full_page=True)
    await assert_accessible(page, axe_source)


async def test_the_committee_declines_a_fast_track_item_then_the_firm_declines_its_offer(
    portal: Portal, page: Page, axe_source: str
) -> None:
    application_id = await submit(portal.applications)
    journey = Journey(portal.applications, portal.desk, application_id)
    why = "The sandbox is full until next year."

    async def committee_open() -> list[dict[str, Any]]:
        """Approve the stages before the committee through the desk; the committee's open tasks."""
        tasks = await tasks_of(portal.desk, application_id)
        for task in tasks:
            if task["status"] == "open" and task["stage"] != "committee":
                await portal.desk.post(
                    f"/v1/tasks/{task['task_id']}/decision",
                    json=approve(task),
                    headers={**reviewer(task["reviewer_id"]), "Idempotency-Key": str(uuid.uuid4())},
                )
        return [t for t in tasks if t["stage"] == "committee" and t["status"] == "open"]

    await eventually(committee_open, timeout=180, interval=0.5)
    refused = False

    async def committee_decides_in_the_browser() -> bool:
        nonlocal refused
        if offered(await journey.view()):
            return True
        for task in await committee_open():
            await sign_in(page, portal, f"staff:{task['reviewer_id']}", axe_source)
            await page.goto(f"{portal.url}/tasks/{task['task_id']}")
            if not await page.locator("#decision-approve").count():
                await sign_out(page)  # the quorum was reached meanwhile: cancelled
                continue
            await expect(page.locator("#fast-track")).to_contain_text("Decline sandbox access")
            await page.locator("#decision-approve").check()
            await page.locator("#comment").fill("committee: sound, without the sandbox.")
            await page.locator("#fast-track-decline-sandbox_access").check()
            if not refused:
                # Declined without a reason: the page asks for one and keeps what was typed.
                await page.get_by_role("button", name="Send the decision").click()
                await expect(page.locator("#refusal")).to_have_text(
                    "Say why you do not approve each fast-track item you decline."
                )
                await expect(page.locator("#fast-track-decline-sandbox_access")).to_be_checked()
                await assert_accessible(page, axe_source)
                await page.locator("#decision-approve").check()
                refused = True
            await page.locator("#fast-track-reason-sandbox_access").fill(why)
            await assert_accessible(page, axe_source)
            await page.get_by_role("button", name="Send the decision").click()
            banner = page.get_by_text("Your decision was recorded.")
            await expect(banner.or_(page.locator("#refusal"))).to_be_visible()
            await sign_out(page)
        return False

    await eventually(committee_decides_in_the_browser, timeout=180, interval=0.5)
    assert refused
    view = await journey.view()
    assert [d["item"] for d in view["award"]["fast_track_declined"]] == ["sandbox_access"]
    assert why in view["award"]["fast_track_declined"][0]["reason"]
    assert view["award"]["fast_track_offered"] == []

    # --- the firm reads what was not granted, and declines the offer in the browser ----------
    await sign_in(page, portal, "firm:ACME", axe_source)
    own = f"{portal.url}/applications/{application_id}"
    await page.goto(own)
    await expect(page.locator("#where")).to_contain_text("We made you an offer")
    await expect(page.locator("#fast-track-declined")).to_contain_text(f"Sandbox access: {why}")
    await page.locator("#award details summary").click()
    await page.locator("#decline_reason").fill("We chose a site closer to our customers.")
    await assert_accessible(page, axe_source)
    await page.get_by_role("button", name="Decline the offer").click()
    await expect(page.locator("#where")).to_contain_text("You declined the offer")
    await expect(page.locator("#offer-state")).to_have_text("You declined it.")
    await expect(page.get_by_role("button", name="Accept the offer")).to_have_count(0)
    await assert_accessible(page, axe_source)
    assert (await journey.view())["status"] == "offer_declined"


async def test_a_reviewer_with_a_declared_interest_is_refused_in_plain_words(
    portal: Portal, page: Page, axe_source: str
) -> None:
    application_id = await submit(portal.applications)

    async def open_technical_task() -> dict[str, Any] | None:
        return next(
            (
                t
                for t in await tasks_of(portal.desk, application_id)
                if t["stage"] == "technical" and t["status"] == "open"
            ),
            None,
        )

    # The technical seat has a second candidate free of the new interest (the security one
    # has not: its other candidate holds the technical seat), so the reviews can resume.
    await eventually(open_technical_task, timeout=120, interval=0.5)
    task = await open_technical_task()
    assert task is not None
    who = task["reviewer_id"]
    entry = (await portal.desk.get(f"/v1/registry/reviewers/{who}", headers=ADMIN)).json()
    interest = (entry["ownership_interests"] or entry["affiliations"])[0]

    # The technical reviewer has the task open twice; from the first tab they ask for more.
    await sign_in(page, portal, f"staff:{who}", axe_source)
    task_url = f"{portal.url}/tasks/{task['task_id']}"
    await page.goto(task_url)
    stale = await page.context.new_page()
    await stale.goto(task_url)
    await page.locator("#decision-request_information").check()
    await page.locator("#comment").fill("Who else owns a share of the firm?")
    await page.get_by_role("button", name="Send the decision").click()
    await expect(page.get_by_text("Your decision was recorded.")).to_be_visible()

    # The firm's amendment names a new parent company: the reviewer's declared interest.
    amended = content()
    amended["firm"]["parent_companies"].append(
        {"legal_name": interest, "country": "DE", "ownership_pct": "10.00"}
    )

    async def information_requested() -> bool:
        view = await portal.applications.get(f"/v1/applications/{application_id}", headers=FIRM)
        return bool(view.json()["status"] == "information_requested")

    await eventually(information_requested, timeout=60, interval=0.5)
    response = await portal.applications.post(
        f"/v1/applications/{application_id}/amend",
        json={"content": amended, "reason": "A new shareholder joined."},
        headers={**FIRM, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 200, response.text

    async def reviews_resumed() -> bool:
        """The workflow took the amendment and its eligibility: the seat went to another."""
        return any(
            t["stage"] == "technical" and t["status"] == "open" and t["reviewer_id"] != who
            for t in await tasks_of(portal.desk, application_id)
        )

    await eventually(reviews_resumed, timeout=120, interval=0.5)

    # The form left open in the second tab: the workflow refuses the reviewer for the interest.
    await stale.locator("#decision-approve").check()
    await stale.locator("#comment").fill("Sound.")
    await stale.get_by_role("button", name="Send the decision").click()
    await expect(stale.locator("#refusal")).to_have_text(
        f"You declared an interest in {interest}, so you cannot review this application."
    )
    await stale.screenshot(path=shots() / "conflict-refusal.png", full_page=True)
    await assert_accessible(stale, axe_source)
    await stale.close()


async def test_an_auditor_from_a_search_to_a_verified_export(
    portal: Portal, page: Page, axe_source: str
) -> None:
    before = utcnow()
    application_id = await submit(portal.applications)

    async def logged() -> bool:
        response = await portal.audit.get(
            f"/v1/applications/{application_id}/history", headers=AUDITOR
        )
        types = {r["envelope"]["type"] for r in response.json().get("records", [])}
        # The audit service reads every topic at once: the decision can be logged first.
        return {"application.submitted", "eligibility.assessed"} <= types

    await eventually(logged, timeout=120, interval=0.5)

    await sign_in(page, portal, "auditor", axe_source)
    await expect(page.get_by_role("heading", name="Find applications")).to_be_visible()
    await assert_accessible(page, axe_source)
    await page.locator("#firm").fill("ACME")
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator("#results")).to_contain_text(application_id)
    await assert_accessible(page, axe_source)
    await page.locator(f"a[href='/audit/applications/{application_id}']").click()

    # One timeline across services, each record with its log index, actor and rules.
    records = page.locator("#records tbody tr")
    await expect(records.first).to_be_visible()
    indexes = [int(i) for i in await records.locator(":scope > :first-child").all_inner_texts()]
    assert indexes == sorted(indexes), indexes  # in the log's order
    await expect(page.locator("#records")).to_contain_text("Application: submitted")
    await expect(page.locator("#records")).to_contain_text("Eligibility: assessed")
    await expect(page.locator("#records")).to_contain_text("Rules version")
    await expect(page.locator("#records")).to_contain_text("alice@acme.example")
    await expect(page.locator("#checkpoint-check")).to_contain_text("Verified")
    await expect(page.locator("#inclusion-check")).to_contain_text("Verified")
    await expect(page.locator("#inclusion-check")).not_to_contain_text("Not verified")
    await page.screenshot(path=shots() / "audit.png", full_page=True)
    await assert_accessible(page, axe_source)

    # The state as of a chosen time: before the submission nothing had happened; now it has.
    await page.locator("#as_of").fill(before.strftime("%Y-%m-%dT%H:%M:%S"))
    await page.get_by_role("button", name="Show the state").click()
    await expect(page.locator("#state")).to_contain_text("Nothing of this application")
    await page.locator("#as_of").fill("")
    await page.get_by_role("button", name="Show the state").click()
    await expect(page.locator("#state-status")).not_to_be_empty()
    await assert_accessible(page, axe_source)

    # The export bundle downloads and verifies offline.
    async with page.expect_download() as download_info:
        await page.locator("#export").click()
    download = await download_info.value
    bundle = json.loads((await download.path()).read_text())
    count, size = verify_bundle(bundle)
    assert bundle["application_id"] == application_id
    assert count >= 2
    assert size >= count

    # And the whole log against its latest checkpoint.
    await page.get_by_role("link", name="Verify the log").first.click()
    await expect(page.locator("#log-check")).to_contain_text("Verified")
    await expect(page.locator("#log-check")).not_to_contain_text("Not verified")
    await assert_accessible(page, axe_source)


async def test_an_admin_resizes_a_zone_reads_the_budgets_and_keeps_the_registry(
    portal: Portal, page: Page, axe_source: str
) -> None:
    zones = portal.running.clients["zones"]
    listed = (await zones.get("/v1/zones", headers=ADMIN)).json()["zones"]
    zone = listed[0]
    unit = zone["occupancy"][0]
    key = f"capacity-{zone['id']}-{unit['unit_type']}"

    await sign_in(page, portal, "admin", axe_source)
    await expect(page.get_by_role("heading", name="Zones", exact=True)).to_be_visible()
    figures = page.locator(f"#{key}-figures")
    await expect(figures).to_contain_text(f"Capacity {unit['capacity']}")
    await expect(
        page.locator(f"#occupancy-{zone['id']}-{unit['unit_type']} svg rect")
    ).not_to_have_count(0)
    await assert_accessible(page, axe_source)

    # Not a number: the error is next to the input.
    await page.locator(f"#{key}").fill("many")
    await (
        page.locator(f"#occupancy-{zone['id']}-{unit['unit_type']}")
        .get_by_role("button", name="Change the capacity")
        .click()
    )
    await expect(page.locator(f"#{key}-error")).to_contain_text("whole number")
    await assert_accessible(page, axe_source)

    bigger = unit["capacity"] + 7
    await page.locator(f"#{key}").fill(str(bigger))
    await (
        page.locator(f"#occupancy-{zone['id']}-{unit['unit_type']}")
        .get_by_role("button", name="Change the capacity")
        .click()
    )
    await expect(page.get_by_text("The capacity was changed.")).to_be_visible()
    await expect(page.locator(f"#{key}-figures")).to_contain_text(f"Capacity {bigger}")
    await page.screenshot(path=shots() / "zones.png", full_page=True)
    after = (await zones.get(f"/v1/zones/{zone['id']}", headers=ADMIN)).json()
    assert {u["unit_type"]: u["capacity"] for u in after["occupancy"]}[unit["unit_type"]] == bigger

    # Budgets: reserved, paid and free, with the chart over time drawn on the server.
    await page.get_by_role("link", name="Budgets").click()
    await expect(page.get_by_role("heading", name="Budgets", exact=True)).to_be_visible()
    await expect(page.locator("svg polyline")).not_to_have_count(0)
    await expect(page.locator("main")).to_contain_text("1,000,000.00 EUR")
    await page.screenshot(path=shots() / "budgets.png", full_page=True)
    await assert_accessible(page, axe_source)

    # The reviewer registry: add, edit the declared interests, deactivate.
    reviewer_id = f"rev.{uuid.uuid4().hex[:8]}@gaip.example"
    await page.get_by_role("link", name="Reviewer registry").click()
    await assert_accessible(page, axe_source)
    await page.locator("#reviewer_id").fill(reviewer_id)
    await page.locator("#name").fill("Dr. Erik Lindqvist")
    await page.locator("#roles-technical").check()
    await page.locator("#affiliations").fill("KTH Royal Institute of Technology")
    await page.get_by_role("button", name="Add the reviewer").click()
    await expect(page.get_by_text(f"{reviewer_id} was added.")).to_be_visible()
    row = page.locator("#reviewers tr").filter(has_text=reviewer_id)
    await expect(row).to_contain_text("Affiliated with KTH Royal Institute of Technology")
    await row.get_by_role("link").click()
    await assert_accessible(page, axe_source)
    await page.locator("#ownership_interests").fill("Nordic Vision AB")
    await page.get_by_role("button", name="Save the changes").click()
    await expect(row).to_contain_text("Owns a stake in Nordic Vision AB")
    await row.get_by_role("link").click()
    await page.get_by_role("button", name="Deactivate the reviewer").click()
    await expect(row).to_contain_text("Deactivated")
    await assert_accessible(page, axe_source)
    stored = (await portal.desk.get(f"/v1/registry/reviewers/{reviewer_id}", headers=ADMIN)).json()
    assert stored["active"] is False
    assert stored["ownership_interests"] == ["Nordic Vision AB"]


async def test_a_supervisor_reassigns_a_really_escalated_task(
    portal: Portal, page: Page, axe_source: str
) -> None:
    application_id = await submit(portal.applications)

    async def escalated() -> list[dict[str, Any]]:
        response = await portal.desk.get(
            "/v1/supervisor/escalations", params={"limit": 200}, headers=ADMIN
        )
        return [
            t
            for t in response.json()["items"]
            if t["application_id"] == application_id and t["stage"] == "technical"
        ]

    # Nobody decides: the workflow's SLA timers remind, then escalate to the supervisor.
    await eventually(escalated, timeout=120, interval=0.5)
    task = (await escalated())[0]
    assert task["escalation"]["supervisor_id"] in (SUPERVISOR, None)
    others = {t["reviewer_id"] for t in await tasks_of(portal.desk, application_id)}
    free = next(r for r in ("rev.weber@gaip.example", "rev.novak@gaip.example") if r not in others)

    await sign_in(page, portal, f"staff:{SUPERVISOR}", axe_source)
    await expect(page.get_by_role("heading", name="Escalated tasks")).to_be_visible()
    row = page.locator("#tasks tbody tr").filter(
        has=page.locator(f"a[href='/tasks/{task['task_id']}']")
    )
    await expect(row).to_contain_text("Escalated")
    await assert_accessible(page, axe_source)
    await row.get_by_role("link").click()
    await expect(page.locator("main")).to_contain_text("Escalation")
    await expect(page.locator("#not-yours")).to_contain_text(task["reviewer_id"])
    await assert_accessible(page, axe_source)

    # Tanaka declared an affiliation with the firm: the workflow refuses, in plain words.
    await page.locator("#reviewer_id").select_option("rev.tanaka@gaip.example")
    await page.locator("#reassign_reason").fill("The reviewer is on leave.")
    await page.get_by_role("button", name="Reassign the task").click()
    await expect(page.locator("#refusal")).to_have_text(
        "rev.tanaka@gaip.example declared an interest in Acme Vision AI GmbH, so they cannot "
        "review this application."
    )
    await page.screenshot(path=shots() / "reassign-refused.png", full_page=True)
    await assert_accessible(page, axe_source)

    await page.locator("#reviewer_id").select_option(free)
    await page.locator("#reassign_reason").fill("The reviewer is on leave.")
    await page.get_by_role("button", name="Reassign the task").click()
    await expect(page.get_by_text(f"The task was given to {free}.")).to_be_visible()
    await assert_accessible(page, axe_source)

    async def moved() -> bool:
        tasks = await tasks_of(portal.desk, application_id)
        old = next(t for t in tasks if t["task_id"] == task["task_id"])
        return old["status"] == "cancelled" and any(
            t["reviewer_id"] == free and t["stage"] == "technical" and t["status"] == "open"
            for t in tasks
        )

    await eventually(moved, timeout=60, interval=0.5)


async def test_a_supervisor_decides_escalated_tasks_in_their_reviewers_place(
    portal: Portal, page: Page, axe_source: str
) -> None:
    application_id = await submit(portal.applications)

    async def escalated() -> dict[str, dict[str, Any]] | None:
        response = await portal.desk.get(
            "/v1/supervisor/escalations", params={"limit": 200}, headers=ADMIN
        )
        found = {
            t["stage"]: t for t in response.json()["items"] if t["application_id"] == application_id
        }
        return found if {"technical", "security"} <= set(found) else None

    # Nobody decides: both parallel stages escalate to the supervisor.
    await eventually(escalated, timeout=120, interval=0.5)
    tasks = await escalated()
    assert tasks is not None
    technical, security = tasks["technical"], tasks["security"]

    await sign_in(page, portal, f"staff:{SUPERVISOR}", axe_source)
    await page.locator(f"a[href='/tasks/{technical['task_id']}']").click()
    await expect(page.locator("#not-yours")).to_contain_text("or decide it yourself")
    await expect(page.get_by_role("heading", name="Decide it yourself")).to_be_visible()
    await assert_accessible(page, axe_source)
    await page.locator("#decision-approve").check()
    await page.locator("#comment").fill("Decided by the supervisor: the reviewer is on leave.")
    await page.get_by_role("button", name="Send the decision").click()
    await expect(page.get_by_text("Your decision was recorded.")).to_be_visible()
    await assert_accessible(page, axe_source)

    # The workflow's rules bind the supervisor like any decider: one person, one stage.
    await page.goto(f"{portal.url}/tasks/{security['task_id']}")
    await page.locator("#decision-approve").check()
    await page.locator("#comment").fill("Security is fine too.")
    await page.get_by_role("button", name="Send the decision").click()
    await expect(page.locator("#refusal")).to_have_text(
        "You have already decided another stage of this application, and one person decides "
        "at most one stage."
    )
    await assert_accessible(page, axe_source)

    async def decided_by_the_supervisor() -> bool:
        rows = await tasks_of(portal.desk, application_id)
        old = next(t for t in rows if t["task_id"] == technical["task_id"])
        return old["status"] == "cancelled" and any(
            t["reviewer_id"] == SUPERVISOR
            and t["stage"] == "technical"
            and t["status"] == "decided"
            and (t.get("decision") or {}).get("decision") == "approve"
            for t in rows
        )

    await eventually(decided_by_the_supervisor, timeout=60, interval=0.5)
    rows = await tasks_of(portal.desk, application_id)
    still = next(t for t in rows if t["task_id"] == security["task_id"])
    assert still["status"] == "open"


async def test_each_role_is_kept_to_its_own_pages(
    portal: Portal, page: Page, axe_source: str
) -> None:
    await sign_in(page, portal, "auditor", axe_source)
    for path in ("/admin/zones", "/applications", "/inbox"):
        await page.goto(f"{portal.url}{path}")
        await expect(page.get_by_role("heading", name="You cannot use this page")).to_be_visible()
    await sign_out(page)
    await sign_in(page, portal, "firm:ACME", axe_source)
    await page.goto(f"{portal.url}/audit")
    await expect(page.get_by_role("heading", name="You cannot use this page")).to_be_visible()
    response = await page.request.post(
        f"{portal.url}/admin/zones/zone-north-tech-park/capacity/gpu_rack_unit",
        form={"capacity": "1", "csrf_token": "forged"},
    )
    assert response.status == 403
    async with httpx.AsyncClient(base_url=portal.url) as anonymous:
        assert (await anonymous.get("/audit")).status_code == 303
