"""The status projection, fed by real events published on the broker's registry topics.

Each test submits over HTTP, publishes what the downstream services would, and watches the
firm's view change (or, for duplicates and stale facts, not change).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from contracts.envelope import ActorKind, Envelope
from services.applications.commands import EVENTS_TOPIC
from tests.applications.conftest import Running
from tests.applications.helpers import (
    ago,
    assessed,
    auth,
    content,
    event,
    find_record,
    key,
    new_firm,
    publish,
    staff,
)
from tests.kit.helpers import eventually, scalar

pytestmark = pytest.mark.integration

BASE = "/v1/applications"


class Firm:
    """A firm's view of the API, for one test."""

    def __init__(self, running: Running) -> None:
        self.id = new_firm()
        self.headers = auth("firm", self.id, sub=f"cto@{self.id.lower()}.example")
        self.client = running.client
        self.running = running

    async def submit(self, **changes: Any) -> dict[str, Any]:
        response = await self.client.post(
            f"{BASE}/submissions",
            json=content(**changes),
            headers={**self.headers, "Idempotency-Key": key()},
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def view(self, application_id: str, headers: dict[str, str] | None = None) -> Any:
        response = await self.client.get(
            f"{BASE}/{application_id}", headers=headers or self.headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def until(self, application_id: str, status: str) -> dict[str, Any]:
        """Wait until the application has ``status``; return the view."""
        seen: dict[str, Any] = {}

        async def reached() -> bool:
            seen.update(await self.view(application_id))
            return bool(seen["status"] == status)

        try:
            await eventually(reached, timeout=30)
        except AssertionError:
            raise AssertionError(f"status {seen.get('status')!r}, wanted {status!r}") from None
        return seen

    async def until_recorded(self, application_id: str, envelope: Envelope[Any]) -> None:
        """Wait until the projection has processed ``envelope`` (whatever it changed)."""

        async def processed() -> bool:
            count = await scalar(
                self.running.engine,
                "SELECT count(*) FROM processed_messages WHERE event_id = :e",
                e=envelope.event_id,
            )
            return bool(count)

        await eventually(processed, timeout=30)

    async def amend(self, application_id: str, **changes: Any) -> httpx.Response:
        return await self.client.post(
            f"{BASE}/{application_id}/amend",
            json={"content": content(**changes), "reason": "Added what was asked for."},
            headers=self.headers,
        )


@pytest.fixture
def firm(running: Running) -> Firm:
    return Firm(running)


def events_of(view: dict[str, Any]) -> list[str]:
    return [entry["event"] for entry in view["timeline"]]


async def test_an_eligible_assessment_shows_the_rule_set_version(
    firm: Firm, producer: AIOKafkaProducer
) -> None:
    app = await firm.submit()
    await publish(producer, assessed(app["id"], "eligible", version="2026.1"))
    view = await firm.until(app["id"], "eligible")
    assert view["rule_set_version"] == "2026.1"
    assert view["eligibility"]["rule_set_version"] == "2026.1"
    assert view["eligibility"]["rule_set_id"] == "gaip-eligibility"
    assert len(view["eligibility"]["rule_set_sha256"]) == 64
    assert view["eligibility"]["application_revision"] == 1
    assert [r["rule_id"] for r in view["eligibility"]["rule_results"]] == [
        "priority_sector",
        "minimum_investment",
    ]
    last = view["timeline"][-1]
    assert last["event"] == "eligibility.assessed"
    assert last["status"] == "eligible"
    assert last["actor"] == {"kind": "system", "id": "system:eligibility"}
    assert "2026.1" in last["summary"]
    listed = (await firm.client.get(BASE, headers=firm.headers)).json()["items"]
    assert listed[0]["rule_set_version"] == "2026.1"


async def test_an_ineligible_application_shows_the_failed_rules_and_stays_ineligible(
    firm: Firm, producer: AIOKafkaProducer
) -> None:
    app = await firm.submit()
    await publish(producer, assessed(app["id"], "ineligible"))
    view = await firm.until(app["id"], "ineligible")
    reasons = ["The investment commitment is below the EUR 1,000,000 minimum."]
    assert view["status_reasons"] == reasons
    assert view["allowed_actions"] == []

    # The workflow then closes the journey: the firm's view stays clear and says so.
    closure = event("application.rejected", app["id"], reasons=reasons, stage="eligibility")
    await publish(producer, closure)
    await firm.until_recorded(app["id"], closure)
    view = await firm.view(app["id"])
    assert view["status"] == "ineligible"
    assert view["status_reasons"] == reasons
    assert view["timeline"][-1]["event"] == "application.rejected"
    assert view["timeline"][-1]["summary"] == "Application closed: not eligible."


async def test_a_duplicate_event_changes_nothing(firm: Firm, producer: AIOKafkaProducer) -> None:
    app = await firm.submit()
    first = assessed(app["id"], "eligible")
    await publish(producer, first)
    before = await firm.until(app["id"], "eligible")
    await publish(producer, first)  # redelivered, byte for byte
    # A later, *older* fact on the same partition: once it is processed, so is the duplicate.
    marker = assessed(app["id"], "eligible", occurred_at=ago(3600))
    await publish(producer, marker)
    await firm.until_recorded(app["id"], marker)
    after = await firm.view(app["id"])
    assert after["status"] == "eligible"
    assert after["status_changed_at"] == before["status_changed_at"]
    # The timeline is in the order things happened: the marker is an hour old. It is
    # recorded but changed no status; the duplicate left no trace at all.
    assert [(e["event"], e["status"]) for e in after["timeline"]] == [
        ("eligibility.assessed", None),
        ("application.submitted", "submitted"),
        ("eligibility.assessed", "eligible"),
    ]


async def test_out_of_order_facts_from_different_topics_do_not_move_the_status_back(
    firm: Firm, producer: AIOKafkaProducer
) -> None:
    app = await firm.submit()
    approved = event("application.approved", app["id"])
    await publish(producer, approved)
    await firm.until(app["id"], "approved")
    late = event("review.task_assigned", app["id"], occurred_at=ago(60))
    late_assessment = assessed(app["id"], "eligible", occurred_at=ago(120))
    await publish(producer, late)
    await publish(producer, late_assessment)
    await firm.until_recorded(app["id"], late)
    await firm.until_recorded(app["id"], late_assessment)
    view = await firm.view(app["id"])
    assert view["status"] == "approved"
    assert view["eligibility"]["outcome"] == "eligible"  # still shown: which rules judged it
    timeline = {e["event"]: e["status"] for e in view["timeline"]}
    assert timeline["review.task_assigned"] is None

    await publish(producer, event("award.opened", app["id"]))
    view = await firm.until(app["id"], "award_opened")
    assert view["allowed_actions"] == ["withdraw"]


async def test_needs_information_then_amend_then_eligible(
    running: Running, firm: Firm, producer: AIOKafkaProducer
) -> None:
    app = await firm.submit(commitments__data_protection_attestation=None)
    request = assessed(
        app["id"],
        "needs_information",
        missing_fields=["commitments.data_protection_attestation"],
    )
    await publish(producer, request)
    view = await firm.until(app["id"], "information_requested")
    assert view["allowed_actions"] == ["amend", "withdraw"]
    asked = view["information_request"]
    assert asked["source"] == "eligibility"
    assert asked["fields"] == ["commitments.data_protection_attestation"]
    assert "commitments.data_protection_attestation" in view["status_reasons"][0]

    response = await firm.amend(app["id"])  # the example content has the attestation
    assert response.status_code == 200, response.text
    amended = response.json()
    assert amended["status"] == "submitted"
    assert amended["revision"] == 2
    assert amended["information_request"] is None
    assert amended["allowed_actions"] == ["withdraw"]

    event_id = await scalar(
        running.engine,
        "SELECT event_id FROM application_timeline "
        "WHERE application_id = :a AND event_type = 'application.amended'",
        a=app["id"],
    )
    envelope = await find_record(running.bootstrap, EVENTS_TOPIC, event_id)
    payload = envelope.payload
    assert payload.revision == 2
    assert payload.changed_fields == ["commitments.data_protection_attestation"]
    assert payload.in_response_to is None  # eligibility requests have no id to answer
    assert envelope.causation_id == request.event_id
    assert str(envelope.correlation_id) == app["journey_id"]

    # An amendment is not accepted twice for one request.
    again = await firm.amend(app["id"], proposal__local_jobs=77)
    assert again.status_code == 409

    # A late copy of the old revision's verdict must not undo the new revision's.
    await publish(producer, assessed(app["id"], "eligible", revision=2))
    await firm.until(app["id"], "eligible")
    stale = assessed(app["id"], "ineligible", revision=1)
    await publish(producer, stale)
    await firm.until_recorded(app["id"], stale)
    view = await firm.view(app["id"])
    assert view["status"] == "eligible"
    assert view["eligibility"]["application_revision"] == 2


async def test_a_reviewers_request_is_answered_by_id_and_reviewers_stay_anonymous(
    running: Running, firm: Firm, producer: AIOKafkaProducer
) -> None:
    app = await firm.submit()
    await publish(producer, assessed(app["id"], "eligible"))
    reviewer = staff(ActorKind.REVIEWER, "rev.tanaka@gaip.example")
    await publish(producer, event("review.task_assigned", app["id"], actor=reviewer))
    await firm.until(app["id"], "under_review")
    request = event("review.information_requested", app["id"], actor=reviewer)
    await publish(producer, request)
    view = await firm.until(app["id"], "information_requested")
    assert view["information_request"]["request_id"] == "req_5T2W8N"
    assert view["information_request"]["source"] == "technical"
    assert view["status_reasons"] == ["How many local engineers will the residency train per year?"]
    actors = {entry["actor"]["id"] for entry in view["timeline"]}
    assert "rev.tanaka@gaip.example" not in actors
    assert "program reviewer" in actors
    as_staff = await firm.view(app["id"], headers=auth("supervisor", None))
    assert "rev.tanaka@gaip.example" in {entry["actor"]["id"] for entry in as_staff["timeline"]}

    response = await firm.amend(app["id"], commitments__training__engineers_per_year=45)
    assert response.status_code == 200, response.text
    event_id = await scalar(
        running.engine,
        "SELECT event_id FROM application_timeline "
        "WHERE application_id = :a AND event_type = 'application.amended'",
        a=app["id"],
    )
    envelope = await find_record(running.bootstrap, EVENTS_TOPIC, event_id)
    assert envelope.payload.in_response_to == "req_5T2W8N"
    assert envelope.payload.changed_fields == ["commitments.training.engineers_per_year"]
    assert envelope.causation_id == request.event_id


async def test_staff_only_facts_are_hidden_from_the_firm(
    firm: Firm, producer: AIOKafkaProducer
) -> None:
    app = await firm.submit()
    reminder = event("review.reminder_due", app["id"], actor=staff(ActorKind.SUPERVISOR, "sup"))
    allocated = event("zone.allocated", app["id"])
    await publish(producer, reminder)
    await publish(producer, allocated)
    await firm.until_recorded(app["id"], reminder)
    await firm.until_recorded(app["id"], allocated)
    view = await firm.view(app["id"])
    assert "review.reminder_due" not in events_of(view)
    assert "zone.allocated" in events_of(view)
    assert view["status"] == "submitted"  # neither moved the status
    as_staff = await firm.view(app["id"], headers=auth("auditor", None))
    assert "review.reminder_due" in events_of(as_staff)


async def test_a_withdrawal_by_the_workflow_closes_the_application(
    firm: Firm, producer: AIOKafkaProducer
) -> None:
    app = await firm.submit()
    await publish(producer, assessed(app["id"], "needs_information"))
    await firm.until(app["id"], "information_requested")
    timeout = event(
        "application.withdrawn",
        app["id"],
        actor=staff(ActorKind.SYSTEM, "system:workflows"),
        firm_id=firm.id,
        reason_code="information_timeout",
        reason="No amendment within 30 days of the information request.",
    )
    await publish(producer, timeout)
    view = await firm.until(app["id"], "withdrawn")
    assert view["timeline"][-1]["summary"].startswith("Withdrawn: the requested information")
    assert view["allowed_actions"] == []
    response = await firm.amend(app["id"])
    assert response.status_code == 409


async def test_the_firms_own_withdrawal_is_recorded_once(running: Running, firm: Firm) -> None:
    app = await firm.submit()
    response = await firm.client.post(
        f"{BASE}/{app['id']}/withdraw", json={"reason": "Changed plans."}, headers=firm.headers
    )
    assert response.status_code == 200
    event_id = await scalar(
        running.engine,
        "SELECT event_id FROM application_timeline "
        "WHERE application_id = :a AND event_type = 'application.withdrawn'",
        a=app["id"],
    )

    async def came_back() -> bool:  # published by the relay, consumed by the projection
        count = await scalar(
            running.engine,
            "SELECT count(*) FROM processed_messages WHERE event_id = :e",
            e=event_id,
        )
        return bool(count)

    await eventually(came_back, timeout=30)
    view = await firm.view(app["id"])
    assert events_of(view) == ["application.submitted", "application.withdrawn"]
    assert view["status"] == "withdrawn"
    assert view["status_reasons"] == ["Changed plans."]
