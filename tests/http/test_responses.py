"""Live responses of a journey match their service's OpenAPI document.

Each response is validated by openapi-core for the status and media type actually sent: the
body against the declared schema, the declared headers against theirs. A status or media type
the document does not declare fails the test, so every refusal on the way is covered too.
"""

from __future__ import annotations

import uuid

from contracts.v1.applications import CONTENT_EXAMPLE
from services.applications.schemas import PARTIAL_CONTENT_EXAMPLE, WITHDRAW_EXAMPLE
from services.kit.runtime import Service
from tests.applications.helpers import auth
from tests.http.conftest import MAX_REQUEST_BYTES, InProcess
from tests.review.helpers import ADMIN, NOVAK, assigned, new_id, record_of, reviewer
from tests.review.helpers import auth as desk_auth

BASE = "/v1/applications"


def key() -> str:
    return str(uuid.uuid4())


async def test_a_firms_journey_answers_as_documented(applications: InProcess) -> None:
    api = applications.checked
    firm = auth("firm", f"F{uuid.uuid4().hex[:8].upper()}")
    staff = auth("reviewer")

    assert (await api.request("POST", BASE, json=PARTIAL_CONTENT_EXAMPLE)).status_code == 401
    draft = await api.request("POST", BASE, json=PARTIAL_CONTENT_EXAMPLE, headers=firm)
    assert draft.status_code == 201
    app_id = draft.json()["id"]
    assert draft.headers["location"] == f"{BASE}/{app_id}"
    assert (await api.request("GET", f"{BASE}/{app_id}", headers=firm)).status_code == 200
    patched = await api.request(
        "PATCH",
        f"{BASE}/{app_id}",
        content=b'{"proposal": {"local_jobs": 40}}',
        headers={**firm, "content-type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200
    replaced = await api.request("PUT", f"{BASE}/{app_id}", json=CONTENT_EXAMPLE, headers=firm)
    assert replaced.status_code == 200
    assert (
        await api.request("PATCH", f"{BASE}/{app_id}", json={}, headers=staff)
    ).status_code == 403
    assert (await api.request("POST", f"{BASE}/{app_id}/submit", headers=firm)).status_code == 422

    keyed = {**firm, "Idempotency-Key": key()}
    submitted = await api.request("POST", f"{BASE}/{app_id}/submit", headers=keyed)
    assert submitted.status_code == 200
    replayed = await api.request("POST", f"{BASE}/{app_id}/submit", headers=keyed)
    assert replayed.status_code == 200
    assert replayed.headers["idempotent-replayed"] == "true"
    reused = await api.request(
        "POST", f"{BASE}/{app_id}/submit", json=CONTENT_EXAMPLE, headers=keyed
    )
    assert reused.status_code == 422
    assert (await api.request("PUT", f"{BASE}/{app_id}", json={}, headers=firm)).status_code == 409

    one_step = {**firm, "Idempotency-Key": key()}
    created = await api.request(
        "POST", f"{BASE}/submissions", json=CONTENT_EXAMPLE, headers=one_step
    )
    assert created.status_code == 201
    again = await api.request("POST", f"{BASE}/submissions", json=CONTENT_EXAMPLE, headers=one_step)
    assert (again.status_code, again.headers["idempotent-replayed"]) == (201, "true")
    assert again.headers["location"] == created.headers["location"]

    assert (await api.request("GET", BASE, headers=firm)).status_code == 200
    assert (await api.request("GET", f"{BASE}?cursor=nonsense", headers=firm)).status_code == 422
    assert (await api.request("GET", f"{BASE}/app_nope", headers=firm)).status_code == 404

    amend = {"content": CONTENT_EXAMPLE, "reason": "More detail."}
    amended = await api.request("POST", f"{BASE}/{app_id}/amend", json=amend, headers=firm)
    assert amended.status_code == 409
    withdraw_key = {**firm, "Idempotency-Key": key()}
    withdrawn = await api.request(
        "POST", f"{BASE}/{app_id}/withdraw", json=WITHDRAW_EXAMPLE, headers=withdraw_key
    )
    assert withdrawn.status_code == 200
    again = await api.request(
        "POST", f"{BASE}/{app_id}/withdraw", json=WITHDRAW_EXAMPLE, headers=withdraw_key
    )
    assert again.headers["idempotent-replayed"] == "true"

    scratch = (await api.request("POST", BASE, json={}, headers=firm)).json()["id"]
    assert (await api.request("DELETE", f"{BASE}/{scratch}", headers=firm)).status_code == 204

    malformed = await api.request(
        "POST", BASE, content=b'{"firm": ', headers={**firm, "content-type": "application/json"}
    )
    assert malformed.status_code == 422
    too_large = await api.request(
        "POST",
        BASE,
        content=b" " * (MAX_REQUEST_BYTES + 1),
        headers={**firm, "content-type": "application/json"},
    )
    assert too_large.status_code == 413
    assert api.statuses() == {200, 201, 204, 401, 403, 404, 409, 413, 422}


async def test_the_desks_registry_and_inbox_answer_as_documented(desk: InProcess) -> None:
    api = desk.checked
    rid = f"rev.{uuid.uuid4().hex[:8]}@gaip.example"
    entry = {"reviewer_id": rid, "name": "Dr. Test", "roles": ["technical"]}
    registry = "/v1/registry/reviewers"

    assert (await api.request("GET", registry)).status_code == 401
    assert (await api.request("GET", registry, headers=ADMIN)).status_code == 200
    assert (await api.request("GET", registry, headers=reviewer(NOVAK))).status_code == 403
    created = await api.request("POST", registry, json=entry, headers=ADMIN)
    assert created.status_code == 201
    assert (await api.request("POST", registry, json=entry, headers=ADMIN)).status_code == 409
    bad = await api.request("POST", registry, json={**entry, "reviewer_id": "a/b"}, headers=ADMIN)
    assert bad.status_code == 422
    assert (await api.request("GET", created.headers["location"], headers=ADMIN)).status_code == 200
    update = {"name": "Dr. Test", "roles": ["technical", "finance"]}
    assert (
        await api.request("PUT", f"{registry}/{rid}", json=update, headers=ADMIN)
    ).status_code == 200
    assert (await api.request("DELETE", f"{registry}/{rid}", headers=ADMIN)).status_code == 204
    assert (await api.request("GET", f"{registry}/{rid}", headers=ADMIN)).status_code == 404

    assert (await api.request("GET", "/v1/inbox", headers=reviewer(NOVAK))).status_code == 200
    assert (
        await api.request("GET", "/v1/inbox?limit=0", headers=reviewer(NOVAK))
    ).status_code == 422
    supervisor = desk_auth("supervisor", "sup.meyer@gaip.example")
    assert (
        await api.request("GET", "/v1/supervisor/escalations", headers=supervisor)
    ).status_code == 200
    assert (
        await api.request("GET", "/v1/tasks/task_nope", headers=reviewer(NOVAK))
    ).status_code == 404
    decision = await api.request(
        "POST",
        "/v1/tasks/task_nope/decision",
        json={"decision": "approve", "comment": "Fine."},
        headers={**reviewer(NOVAK), "Idempotency-Key": key()},
    )
    assert decision.status_code == 404
    candidates = await api.request("GET", "/internal/v1/candidates?stage=technical", headers=ADMIN)
    assert candidates.status_code == 200

    # A task of Novak's, fed straight to the desk's consumer: no broker here, and no Temporal,
    # so its decision is the documented 503.
    app_id, task_id = new_id("app"), new_id("task")
    service: Service = desk.app.state.service
    await service.consumers[0].process(record_of(assigned(app_id, task_id, NOVAK)))
    task = await api.request("GET", f"/v1/tasks/{task_id}", headers=reviewer(NOVAK))
    assert task.status_code == 200
    unavailable = await api.request(
        "POST",
        f"/v1/tasks/{task_id}/decision",
        json={"decision": "approve", "comment": "Fine."},
        headers={**reviewer(NOVAK), "Idempotency-Key": key()},
    )
    assert unavailable.status_code == 503
    assert api.statuses() == {200, 201, 204, 401, 403, 404, 409, 422, 503}
