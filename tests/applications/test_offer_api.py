"""The firm after the committee, over HTTP on the real broker: answering the offer, reporting
milestones, and the offer, award, tranches, milestones and compensations in the view.

Each test submits, publishes what the workflow and the services would, and acts as the firm.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from contracts.envelope import Actor, utcnow
from services.applications.commands import EVENTS_TOPIC
from tests.applications.conftest import Running
from tests.applications.helpers import auth, event, find_record, key, publish
from tests.applications.test_projection import BASE, Firm
from tests.kit.helpers import scalar

pytestmark = pytest.mark.integration

WORKFLOW = Actor.system("workflows")


@pytest.fixture
def firm(running: Running) -> Firm:
    return Firm(running)


async def offered(
    firm: Firm, producer: AIOKafkaProducer, *, expires_in: timedelta = timedelta(days=14)
) -> str:
    """A submitted application, approved and offered; returns its id."""
    app_id = str((await firm.submit())["id"])
    await publish(producer, event("application.approved", app_id, actor=WORKFLOW, firm_id=firm.id))
    now = utcnow()
    offer = event(
        "application.offer_made",
        app_id,
        actor=WORKFLOW,
        firm_id=firm.id,
        offer_id=f"offer_{app_id}",
        award_id=f"award_{app_id}",
        offered_at=(now - timedelta(days=1)).isoformat(),
        expires_at=(now + expires_in).isoformat(),
    )
    await publish(producer, offer)
    await firm.until_recorded(app_id, offer)
    return app_id


async def post(firm: Firm, path: str, body: Any = None, **headers: str) -> Any:
    return await firm.client.post(
        f"{BASE}/{path}",
        json=body,
        headers={**firm.headers, "Idempotency-Key": headers.get("idem", key())},
    )


async def test_the_firm_sees_its_offer_and_accepts_it_once(
    running: Running, firm: Firm, producer: AIOKafkaProducer
) -> None:
    app_id = await offered(firm, producer)
    view = await firm.view(app_id)
    assert view["status"] == "offered"
    assert set(view["allowed_actions"]) == {"accept_offer", "decline_offer", "withdraw"}
    award = view["award"]
    assert award["offer_state"] == "open"
    assert [t["state"] for t in award["tranches"]] == ["scheduled"] * 3
    offer_entry = next(e for e in view["timeline"] if e["event"] == "application.offer_made")
    assert offer_entry["summary"].startswith("Offer made; answer by ")
    assert "grant of" in offer_entry["reasons"][0]

    idem = key()
    first = await post(firm, f"{app_id}/offer/accept", idem=idem)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "offer_accepted"
    assert first.json()["award"]["offer_state"] == "accepted"
    again = await post(firm, f"{app_id}/offer/accept", idem=idem)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    accepted = [e for e in again.json()["timeline"] if e["event"] == "application.offer_accepted"]
    assert len(accepted) == 1
    event_id = await scalar(
        running.engine,
        "SELECT event_id FROM application_timeline WHERE application_id = :a AND event_type = :t",
        a=app_id,
        t="application.offer_accepted",
    )
    published = await find_record(running.bootstrap, EVENTS_TOPIC, uuid.UUID(str(event_id)))
    assert published.payload.offer_id == f"offer_{app_id}"
    assert published.actor.firm_id == firm.id

    declined = await post(firm, f"{app_id}/offer/decline", {"reason": "Changed our mind."})
    assert declined.status_code == 409
    assert declined.headers["content-type"].startswith("application/problem+json")


async def test_a_lapsed_or_declined_offer_cannot_be_accepted(
    firm: Firm, producer: AIOKafkaProducer
) -> None:
    late = await offered(firm, producer, expires_in=timedelta(seconds=-1))
    response = await post(firm, f"{late}/offer/accept")
    assert response.status_code == 409, response.text
    assert response.json()["reason"] == "offer_lapsed"

    app_id = await offered(firm, producer)
    response = await post(firm, f"{app_id}/offer/decline", {"reason": "We settled elsewhere."})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "offer_declined"
    response = await post(firm, f"{app_id}/offer/accept")
    assert response.status_code == 409
    assert response.json()["reason"] == "offer_declined"


async def test_another_firms_offer_is_not_found(firm: Firm, producer: AIOKafkaProducer) -> None:
    app_id = await offered(firm, producer)
    other = {**auth("firm", "OTHER-FIRM"), "Idempotency-Key": key()}
    response = await firm.client.post(f"{BASE}/{app_id}/offer/accept", headers=other)
    assert response.status_code == 404
    response = await firm.client.post(f"{BASE}/{app_id}/offer/accept", headers=firm.headers)
    assert response.status_code == 422, "the Idempotency-Key is required"
    assert "Idempotency-Key" in response.text


async def test_milestones_tranches_and_compensation_in_plain_language(
    firm: Firm, producer: AIOKafkaProducer
) -> None:
    app_id = await offered(firm, producer)
    assert (await post(firm, f"{app_id}/offer/accept")).status_code == 200
    paid = event(
        "tranche.paid",
        app_id,
        actor=Actor.system("disbursement"),
        award_id=f"award_{app_id}",
        sequence=1,
    )
    await publish(producer, paid)
    await firm.until_recorded(app_id, paid)
    assert (await firm.view(app_id))["award"]["milestone_due"] == 2

    bad = await post(firm, f"{app_id}/milestones", {"sequence": 2, "summary": "x", "evidence": []})
    assert bad.status_code == 422
    assert any(e["field"] == "evidence" for e in bad.json()["errors"])
    wrong = await post(
        firm, f"{app_id}/milestones", {"sequence": 3, "summary": "Too early.", "evidence": ["d1"]}
    )
    assert wrong.status_code == 409
    assert wrong.json()["reason"] == "milestone_not_due"
    body = {"sequence": 2, "summary": "The lab opened.", "evidence": ["doc_lab"]}
    reported = await post(firm, f"{app_id}/milestones", body)
    assert reported.status_code == 200, reported.text
    (milestone,) = reported.json()["award"]["milestones"]
    assert milestone["state"] == "reported"
    assert reported.json()["award"]["milestone_due"] is None, "it waits for its verification"

    verdict = event(
        "application.milestone_verified",
        app_id,
        actor=Actor(kind="reviewer", id="rev.weber@gaip.example"),  # type: ignore[arg-type]
        report_id=milestone["report_id"],
        sequence=2,
        verified=False,
        comment="The lease is not signed yet.",
    )
    await publish(producer, verdict)
    await firm.until_recorded(app_id, verdict)
    view = await firm.view(app_id)
    assert view["award"]["tranches"][0]["state"] == "paid"
    assert view["award"]["milestones"][0]["state"] == "rejected"
    assert view["award"]["milestones"][0]["reason"] == "The lease is not signed yet."
    assert view["award"]["milestone_due"] == 2, "a rejected milestone is reported again"
    entry = next(e for e in view["timeline"] if e["event"] == "application.milestone_verified")
    assert entry["summary"] == "Milestone for tranche 2 not verified; please report it again."
    assert entry["actor"]["id"] == "program reviewer", "reviewers stay anonymous to firms"

    cancelled = event(
        "application.compensated",
        app_id,
        actor=Actor(kind="admin", id="admin@gaip.example"),  # type: ignore[arg-type]
        firm_id=firm.id,
        reason_code="administrative",
        reason="An administrator cancelled the application: audit finding.",
        space_released=True,
        award_cancelled=True,
        outcome="cancelled",
        waitlisted_for_budget=False,
    )
    await publish(producer, cancelled)
    view = await firm.until(app_id, "cancelled")
    (line,) = view["award"]["compensations"]
    assert line["summary"] == (
        "The zone space was released; the award was cancelled and its unpaid amount returned "
        "to the budget."
    )
    late = await post(firm, f"{app_id}/milestones", body)
    assert late.status_code == 409
    assert late.json()["reason"] == "award_cancelled"


async def test_an_administrator_cancels_once_and_others_may_not(
    running: Running, firm: Firm, producer: AIOKafkaProducer
) -> None:
    app_id = await offered(firm, producer)
    admin = auth("admin", sub="admin@gaip.example")
    url = f"{BASE}/{app_id}/cancel"
    body = {"reason": "The firm's licence was revoked by the regulator."}

    for headers in (firm.headers, auth("auditor"), auth("reviewer")):
        refused = await firm.client.post(
            url, json=body, headers={**headers, "Idempotency-Key": key()}
        )
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
    no_key = await firm.client.post(url, json=body, headers=admin)
    assert no_key.status_code == 422
    assert "Idempotency-Key" in no_key.text
    empty = await firm.client.post(
        url, json={"reason": ""}, headers={**admin, "Idempotency-Key": key()}
    )
    assert empty.status_code == 422
    assert any(e["field"] == "reason" for e in empty.json()["errors"])
    missing = await firm.client.post(
        f"{BASE}/app_nosuchthing/cancel", json=body, headers={**admin, "Idempotency-Key": key()}
    )
    assert missing.status_code == 404

    idem = key()
    first = await firm.client.post(url, json=body, headers={**admin, "Idempotency-Key": idem})
    assert first.status_code == 200, first.text
    again = await firm.client.post(url, json=body, headers={**admin, "Idempotency-Key": idem})
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    entries = [e for e in again.json()["timeline"] if e["event"] == "application.cancelled"]
    assert len(entries) == 1
    event_id = await scalar(
        running.engine,
        "SELECT event_id FROM application_timeline WHERE application_id = :a AND event_type = :t",
        a=app_id,
        t="application.cancelled",
    )
    published = await find_record(running.bootstrap, EVENTS_TOPIC, uuid.UUID(str(event_id)))
    assert published.actor.id == "admin@gaip.example"
    assert published.actor.kind.value == "admin"
    assert published.payload.reason == body["reason"]
    assert published.payload.firm_id == firm.id

    # The workflow's compensation closes it; a second cancellation is refused.
    compensated = event(
        "application.compensated",
        app_id,
        actor=Actor(kind="admin", id="admin@gaip.example"),  # type: ignore[arg-type]
        firm_id=firm.id,
        reason_code="administrative",
        reason=f"An administrator cancelled the application: {body['reason']}",
        space_released=True,
        award_cancelled=True,
        outcome="cancelled",
        waitlisted_for_budget=False,
    )
    await publish(producer, compensated)
    await firm.until(app_id, "cancelled")
    late = await firm.client.post(url, json=body, headers={**admin, "Idempotency-Key": key()})
    assert late.status_code == 409
    assert late.json()["current_status"] == "cancelled"


async def test_cancelling_before_approval_is_refused(firm: Firm) -> None:
    app_id = str((await firm.submit())["id"])
    response = await firm.client.post(
        f"{BASE}/{app_id}/cancel",
        json={"reason": "Too early."},
        headers={**auth("admin"), "Idempotency-Key": key()},
    )
    assert response.status_code == 409
    assert response.json()["current_status"] == "submitted"


async def test_declined_fast_track_items_and_a_revocation_are_shown_to_the_firm(
    running: Running, firm: Firm, producer: AIOKafkaProducer
) -> None:
    app_id = str((await firm.submit())["id"])
    now = utcnow()
    offer = event(
        "application.offer_made",
        app_id,
        actor=WORKFLOW,
        firm_id=firm.id,
        offer_id=f"offer_{app_id}",
        award_id=f"award_{app_id}",
        fast_track=["sandbox_access"],
        fast_track_declined=[
            {"item": "expedited_permit", "reason": "The sites are not named in the proposal."}
        ],
        offered_at=now.isoformat(),
        expires_at=(now + timedelta(days=14)).isoformat(),
    )
    await publish(producer, offer)
    await firm.until_recorded(app_id, offer)
    view = await firm.view(app_id)
    assert view["award"]["fast_track_declined"] == [
        {"item": "expedited_permit", "reason": "The sites are not named in the proposal."}
    ]
    offer_entry = next(e for e in view["timeline"] if e["event"] == "application.offer_made")
    assert (
        "fast-track not approved: expedited permit (The sites are not named in the proposal)"
        in offer_entry["reasons"][0]
    )
    granted = event(
        "application.fast_track_granted",
        app_id,
        actor=WORKFLOW,
        firm_id=firm.id,
        item="sandbox_access",
        valid_from=now.isoformat(),
        valid_until=(now + timedelta(days=365)).isoformat(),
    )
    await publish(producer, granted)
    await firm.until_recorded(app_id, granted)

    admin = auth("admin", sub="admin@gaip.example")
    url = f"{BASE}/{app_id}/fast-track/sandbox_access/revoke"
    body = {"reason": "Live patient data was used in the sandbox."}
    for headers in (firm.headers, auth("auditor"), auth("reviewer")):
        refused = await firm.client.post(
            url, json=body, headers={**headers, "Idempotency-Key": key()}
        )
        assert refused.status_code == 403, refused.text
    not_granted = await firm.client.post(
        f"{BASE}/{app_id}/fast-track/expedited_permit/revoke",
        json=body,
        headers={**admin, "Idempotency-Key": key()},
    )
    assert not_granted.status_code == 409, not_granted.text
    assert not_granted.json()["reason"] == "not_granted"
    unknown = await firm.client.post(
        f"{BASE}/{app_id}/fast-track/free_lunch/revoke",
        json=body,
        headers={**admin, "Idempotency-Key": key()},
    )
    assert unknown.status_code == 422
    empty = await firm.client.post(
        url, json={"reason": ""}, headers={**admin, "Idempotency-Key": key()}
    )
    assert empty.status_code == 422
    assert any(e["field"] == "reason" for e in empty.json()["errors"])

    idem = key()
    first = await firm.client.post(url, json=body, headers={**admin, "Idempotency-Key": idem})
    assert first.status_code == 200, first.text
    again = await firm.client.post(url, json=body, headers={**admin, "Idempotency-Key": idem})
    assert again.headers["Idempotent-Replayed"] == "true"
    twice = await firm.client.post(url, json=body, headers={**admin, "Idempotency-Key": key()})
    assert twice.status_code == 409
    assert twice.json()["reason"] == "already_revoked"

    seen = await firm.view(app_id)
    (line,) = seen["award"]["fast_track"]
    assert line["state"] == "revoked"
    assert line["revoked_reason"] == body["reason"]
    entries = [e for e in seen["timeline"] if e["event"] == "application.fast_track_revoked"]
    assert len(entries) == 1
    assert body["reason"] in entries[0]["summary"]
    event_id = await scalar(
        running.engine,
        "SELECT event_id FROM application_timeline WHERE application_id = :a AND event_type = :t",
        a=app_id,
        t="application.fast_track_revoked",
    )
    published = await find_record(running.bootstrap, EVENTS_TOPIC, uuid.UUID(str(event_id)))
    assert published.actor.id == "admin@gaip.example"
    assert published.payload.item == "sandbox_access"
