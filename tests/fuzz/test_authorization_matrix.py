"""Every (endpoint x caller) pair of the authorization matrix, against the running services.

``services.kit.access.ENDPOINTS`` says who may call each endpoint and on whose data; this walks
every token endpoint of every served service with every caller and checks the answer:

- no token, or a token with a forged signature: 401;
- a role the entry does not grant (an auditor writing, an admin deciding a task, a firm on the
  desk, ...): 403;
- a granted role on its own data: neither 401, 403 nor 404 (what it gets after that, a 200,
  201, 409 or the decision's documented 503 without Temporal, is the endpoint's business);
- firm A on firm B's application: 404; an unassigned reviewer on a task: 404; a supervisor
  outside an escalation: 404, and deciding an escalated task of someone else: 403; a reviewer
  reading another reviewer's registry entry: 403;
- lists a firm or a reviewer may read hold only their own rows.

Public paths answer without a token, and the rail (no tokens by design) answers every caller.
Every entry of a served service needs a request below (:data:`REQUESTS`); one without fails,
so a new endpoint is walked as soon as it is in the table. The portal's pages (a session
cookie, not a token) are declared in the table but not walked here: the portal calls these
APIs with the signed-in person's token, and these rows decide what it may show.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from contracts import catalog
from contracts.envelope import Actor
from services.applications.offers import DECLINE_EXAMPLE, MILESTONE_EXAMPLE, REVOKE_EXAMPLE
from services.applications.schemas import (
    AMEND_EXAMPLE,
    CANCEL_EXAMPLE,
    PARTIAL_CONTENT_EXAMPLE,
    WITHDRAW_EXAMPLE,
)
from services.kit.access import ENDPOINTS, Access, Endpoint, Reach
from services.kit.auth import Principal, Role, TokenService
from tests.applications.helpers import content
from tests.disbursement.helpers import award_command
from tests.fuzz.platform import SERVED, ServedPlatform
from tests.fuzz.tokens import bearer
from tests.inprocess import record_of
from tests.kit.helpers import envelope
from tests.review.helpers import HADDAD, MEYER, NOVAK, SILVA, assigned, escalated, new_id
from tests.review.helpers import at as days_from_now

FIRM_A = Principal(sub="alice@acme.example", role=Role.FIRM, firm_id="ACME")
FIRM_B = Principal(sub="bob@globex.example", role=Role.FIRM, firm_id="GLOBEX")
REVIEWER = Principal(sub=NOVAK, role=Role.REVIEWER)
OTHER_REVIEWER = Principal(sub=SILVA, role=Role.REVIEWER)
ESCALATED_REVIEWER = Principal(sub=HADDAD, role=Role.REVIEWER)
SUPERVISOR = Principal(sub=MEYER, role=Role.SUPERVISOR)
AUDITOR = Principal(sub="auditor@gaip.example", role=Role.AUDITOR)
ADMIN = Principal(sub="admin@gaip.example", role=Role.ADMIN)
#: Whose data a role with reach ``ALL`` (or none) is tried on, when not Novak's.
ALL_OWNER = {Role.FIRM: FIRM_A}
#: One caller per role, for "a role the entry does not grant".
BY_ROLE = {
    Role.FIRM: FIRM_A,
    Role.REVIEWER: REVIEWER,
    Role.SUPERVISOR: SUPERVISOR,
    Role.AUDITOR: AUDITOR,
    Role.ADMIN: ADMIN,
}
FORGED = TokenService(SecretStr("not-the-program-key-" + "x" * 32))


@dataclass
class World:
    """The data the walk acts on, made through the APIs (and the services' own consumers)."""

    served: ServedPlatform
    submitted: dict[str, str] = field(default_factory=dict)  # firm id -> application id
    tasks: dict[str, str] = field(default_factory=dict)  # reviewer id -> their task
    zone_id: str = ""
    unit_type: str = ""
    capacity: int = 0
    award_id: str = ""
    budget_id: str = ""
    audited: str = ""

    def call(
        self, service: str, method: str, path: str, principal: Principal = ADMIN, **kw: Any
    ) -> requests.Response:
        headers = {**bearer(principal), **kw.pop("headers", {})}
        return requests.request(
            method, self.served.urls[service] + path, headers=headers, timeout=30, **kw
        )

    def draft(self, firm: Principal) -> str:
        response = self.call("applications", "POST", "/v1/applications", firm, json={})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def submit(self, firm: Principal) -> str:
        response = self.call(
            "applications",
            "POST",
            "/v1/applications/submissions",
            firm,
            json=content(),
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def reviewer_entry(self) -> str:
        reviewer_id = f"rev.{uuid.uuid4().hex[:10]}@gaip.example"
        body = {"reviewer_id": reviewer_id, "name": "Dr. Matrix", "roles": ["technical"]}
        response = self.call("review", "POST", "/v1/registry/reviewers", json=body)
        assert response.status_code == 201, response.text
        return reviewer_id


@pytest.fixture(scope="module")
def world(served: ServedPlatform) -> World:
    w = World(served)
    for firm in (FIRM_A, FIRM_B):
        assert firm.firm_id is not None
        w.submitted[firm.firm_id] = w.submit(firm)
    application = w.submitted["ACME"]
    # Tasks of Novak, Meyer and Haddad; Haddad's is overdue and escalated to the supervisors.
    for reviewer_id in (NOVAK, MEYER, HADDAD):
        task_id = new_id("task")
        when = days_from_now(-20)
        served.deliver("review", assigned(application, task_id, reviewer_id, assigned_at=when))
        w.tasks[reviewer_id] = task_id
    served.deliver(
        "review",
        escalated(application, w.tasks[HADDAD], HADDAD, escalated_at=days_from_now(-1)),
    )
    zones = w.call("zones", "GET", "/v1/zones").json()["zones"]
    zone = next(z for z in zones if z["occupancy"])
    w.zone_id, w.unit_type = zone["id"], zone["occupancy"][0]["unit_type"]
    w.capacity = zone["occupancy"][0]["capacity"]
    budget = {
        "incentive_type": "grant",
        "fiscal_year": 2027,
        "amount": {"amount": "1000000.00", "currency": "EUR"},
    }
    assert w.call("disbursement", "POST", "/v1/budgets", json=budget).status_code == 201
    w.budget_id, w.award_id = "grant-2027", f"award-{uuid.uuid4().hex[:8]}"
    award = award_command(w.award_id, "250000.00")
    served.deliver(
        "disbursement",
        catalog.make_envelope(
            "award.open",
            award,
            subject=award.application_id,
            actor=Actor.system("workflows"),
            producer="workflows",
            correlation_id=uuid.uuid4(),
        ),
    )
    audit = served.service("audit")
    w.audited = application
    served.run(audit.log_consumer.handle([record_of(envelope(application))]))  # type: ignore[attr-defined]
    return w


@dataclass
class Call:
    """A request: path (with its ids), and optionally a body, a query and headers."""

    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    data: bytes | None = None


#: ``(world, owner) -> Call``: the request on ``owner``'s data.
Recipe = Callable[[World, Principal], Call]


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def _app(w: World, owner: Principal) -> str:
    return w.submitted[owner.firm_id or "ACME"]


def _task(w: World, owner: Principal) -> str:
    return w.tasks.get(owner.sub, w.tasks[NOVAK])


APPS = "/v1/applications"
REGISTRY = "/v1/registry/reviewers"

REQUESTS: dict[tuple[str, str, str], Recipe] = {
    # applications
    ("applications", "GET", APPS): lambda w, o: Call(APPS),
    ("applications", "GET", f"{APPS}/{{application_id}}"): lambda w, o: Call(
        f"{APPS}/{_app(w, o)}"
    ),
    ("applications", "POST", APPS): lambda w, o: Call(APPS, json={}),
    ("applications", "POST", f"{APPS}/submissions"): lambda w, o: Call(
        f"{APPS}/submissions", json=content(), headers=_key()
    ),
    ("applications", "PUT", f"{APPS}/{{application_id}}"): lambda w, o: Call(
        f"{APPS}/{w.draft(o) if o.role is Role.FIRM else _app(w, o)}",
        json=PARTIAL_CONTENT_EXAMPLE,
    ),
    ("applications", "PATCH", f"{APPS}/{{application_id}}"): lambda w, o: Call(
        f"{APPS}/{w.draft(o) if o.role is Role.FIRM else _app(w, o)}",
        data=b'{"proposal": {"local_jobs": 40}}',
        headers={"content-type": "application/merge-patch+json"},
    ),
    ("applications", "DELETE", f"{APPS}/{{application_id}}"): lambda w, o: Call(
        f"{APPS}/{w.draft(o) if o.role is Role.FIRM else _app(w, o)}"
    ),
    ("applications", "POST", f"{APPS}/{{application_id}}/submit"): lambda w, o: Call(
        f"{APPS}/{w.draft(o) if o.role is Role.FIRM else _app(w, o)}/submit", headers=_key()
    ),
    ("applications", "POST", f"{APPS}/{{application_id}}/withdraw"): lambda w, o: Call(
        f"{APPS}/{w.submit(o) if o.role is Role.FIRM else _app(w, o)}/withdraw",
        json=WITHDRAW_EXAMPLE,
        headers=_key(),
    ),
    ("applications", "POST", f"{APPS}/{{application_id}}/amend"): lambda w, o: Call(
        f"{APPS}/{_app(w, o)}/amend", json=AMEND_EXAMPLE, headers=_key()
    ),
    ("applications", "POST", f"{APPS}/{{application_id}}/offer/accept"): lambda w, o: Call(
        f"{APPS}/{_app(w, o)}/offer/accept", headers=_key()
    ),
    ("applications", "POST", f"{APPS}/{{application_id}}/offer/decline"): lambda w, o: Call(
        f"{APPS}/{_app(w, o)}/offer/decline", json=DECLINE_EXAMPLE, headers=_key()
    ),
    ("applications", "POST", f"{APPS}/{{application_id}}/milestones"): lambda w, o: Call(
        f"{APPS}/{_app(w, o)}/milestones", json=MILESTONE_EXAMPLE, headers=_key()
    ),
    ("applications", "POST", f"{APPS}/{{application_id}}/cancel"): lambda w, o: Call(
        f"{APPS}/{_app(w, o)}/cancel", json=CANCEL_EXAMPLE, headers=_key()
    ),
    # Nothing was granted on the walk's applications: an admin gets the 409, others 403.
    ("applications", "POST", f"{APPS}/{{application_id}}/fast-track/{{item}}/revoke"): (
        lambda w, o: Call(
            f"{APPS}/{_app(w, o)}/fast-track/sandbox_access/revoke",
            json=REVOKE_EXAMPLE,
            headers=_key(),
        )
    ),
    # review desk
    ("review", "GET", "/v1/inbox"): lambda w, o: Call("/v1/inbox", params={"limit": 200}),
    ("review", "GET", "/v1/tasks/{task_id}"): lambda w, o: Call(f"/v1/tasks/{_task(w, o)}"),
    ("review", "POST", "/v1/tasks/{task_id}/decision"): lambda w, o: Call(
        f"/v1/tasks/{_task(w, o)}/decision",
        json={"decision": "approve", "comment": "Sound plan."},
        headers=_key(),
    ),
    ("review", "GET", "/v1/supervisor/escalations"): lambda w, o: Call(
        "/v1/supervisor/escalations"
    ),
    # To a reviewer the registry does not hold: a caller the matrix lets through gets the 422,
    # and no task is really moved (the walk's other calls still find theirs).
    ("review", "POST", "/v1/supervisor/tasks/{task_id}/reassign"): lambda w, o: Call(
        f"/v1/supervisor/tasks/{_task(w, o)}/reassign",
        json={"reviewer_id": "rev.nobody@gaip.example", "reason": "On leave."},
        headers=_key(),
    ),
    ("review", "POST", "/v1/supervisor/tasks/{task_id}/decision"): lambda w, o: Call(
        f"/v1/supervisor/tasks/{_task(w, o)}/decision",
        json={"decision": "approve", "comment": "Sound plan."},
        headers=_key(),
    ),
    ("review", "GET", REGISTRY): lambda w, o: Call(REGISTRY),
    ("review", "GET", f"{REGISTRY}/{{reviewer_id}}"): lambda w, o: Call(f"{REGISTRY}/{o.sub}"),
    ("review", "GET", f"{REGISTRY}/{{reviewer_id}}/history"): lambda w, o: Call(
        f"{REGISTRY}/{o.sub}/history"
    ),
    ("review", "POST", REGISTRY): lambda w, o: Call(
        REGISTRY,
        json={
            "reviewer_id": f"rev.{uuid.uuid4().hex[:10]}@gaip.example",
            "name": "Dr. New",
            "roles": ["finance"],
        },
    ),
    ("review", "PUT", f"{REGISTRY}/{{reviewer_id}}"): lambda w, o: Call(
        f"{REGISTRY}/{w.reviewer_entry()}", json={"name": "Dr. Matrix", "roles": ["finance"]}
    ),
    ("review", "DELETE", f"{REGISTRY}/{{reviewer_id}}"): lambda w, o: Call(
        f"{REGISTRY}/{w.reviewer_entry()}"
    ),
    ("review", "GET", "/internal/v1/candidates"): lambda w, o: Call(
        "/internal/v1/candidates", params={"stage": "technical"}
    ),
    # zones
    ("zones", "GET", "/v1/zones"): lambda w, o: Call("/v1/zones"),
    ("zones", "GET", "/v1/zones/{zone_id}"): lambda w, o: Call(f"/v1/zones/{w.zone_id}"),
    ("zones", "POST", "/v1/zones"): lambda w, o: Call(
        "/v1/zones",
        json={
            "id": f"zone-{uuid.uuid4().hex[:8]}",
            "name": "Matrix Park",
            "city": "Ankara",
            "sectors": ["health"],
            "capacity": {"office_seat": 10},
        },
    ),
    ("zones", "PUT", "/v1/zones/{zone_id}/capacity/{unit_type}"): lambda w, o: Call(
        f"/v1/zones/{w.zone_id}/capacity/{w.unit_type}", json={"capacity": w.capacity}
    ),
    ("zones", "POST", "/v1/zones/{zone_id}/deactivate"): lambda w, o: Call(
        f"/v1/zones/{w.zone_id}/deactivate"
    ),
    ("zones", "POST", "/v1/zones/{zone_id}/activate"): lambda w, o: Call(
        f"/v1/zones/{w.zone_id}/activate"
    ),
    # disbursement
    ("disbursement", "POST", "/v1/budgets"): lambda w, o: Call(
        "/v1/budgets",
        json={
            "incentive_type": "training",
            "fiscal_year": 2031,
            "amount": {"amount": "1000.00", "currency": "EUR"},
        },
    ),
    ("disbursement", "POST", "/v1/budgets/{budget_id}/top-ups"): lambda w, o: Call(
        f"/v1/budgets/{w.budget_id}/top-ups", json={"amount": {"amount": "1.00", "currency": "EUR"}}
    ),
    ("disbursement", "GET", "/v1/budgets"): lambda w, o: Call("/v1/budgets"),
    ("disbursement", "GET", "/v1/budgets/{budget_id}/ledger"): lambda w, o: Call(
        f"/v1/budgets/{w.budget_id}/ledger"
    ),
    ("disbursement", "GET", "/v1/awards/{award_id}/ledger"): lambda w, o: Call(
        f"/v1/awards/{w.award_id}/ledger"
    ),
    # audit
    ("audit", "GET", "/v1/log/checkpoint"): lambda w, o: Call("/v1/log/checkpoint"),
    ("audit", "GET", "/v1/log/key"): lambda w, o: Call("/v1/log/key"),
    ("audit", "GET", "/v1/log/entries"): lambda w, o: Call(
        "/v1/log/entries", params={"start": 0, "end": 1}
    ),
    ("audit", "GET", "/v1/log/proof/inclusion"): lambda w, o: Call(
        "/v1/log/proof/inclusion", params={"index": 0, "tree_size": 1}
    ),
    ("audit", "GET", "/v1/log/proof/consistency"): lambda w, o: Call(
        "/v1/log/proof/consistency", params={"first": 1, "second": 1}
    ),
    ("audit", "GET", f"{APPS}/{{application_id}}/history"): lambda w, o: Call(
        f"{APPS}/{w.audited}/history"
    ),
    ("audit", "GET", f"{APPS}/{{application_id}}/state"): lambda w, o: Call(
        f"{APPS}/{w.audited}/state"
    ),
    # the rail (no tokens)
    ("rail", "POST", "/v1/payments"): lambda w, o: Call(
        "/v1/payments",
        json={"amount": "1.00", "currency": "EUR", "beneficiary": "ACME", "reference": "matrix"},
        headers=_key(),
    ),
    ("rail", "POST", "/v1/payment-batches"): lambda w, o: Call(
        "/v1/payment-batches",
        json={
            "payments": [
                {
                    "idempotency_key": f"matrix-{uuid.uuid4().hex}",
                    "amount": "1.00",
                    "currency": "EUR",
                    "beneficiary": "ACME",
                    "reference": "matrix",
                }
            ]
        },
    ),
    ("rail", "GET", "/v1/payments"): lambda w, o: Call(
        "/v1/payments", params={"since": "2026-01-01T00:00:00Z"}
    ),
    ("rail", "GET", "/v1/payments/{idempotency_key}"): lambda w, o: Call("/v1/payments/absent"),
    ("rail", "POST", "/v1/control"): lambda w, o: Call(
        "/v1/control", json={"mode": "normal", "count": 1}
    ),
}


@dataclass
class Case:
    """One caller on one owner's data, and what the matrix says must happen."""

    who: str
    headers: dict[str, str]
    owner: Principal
    expect: str  # "allowed", or a status code as text
    principal: Principal | None = None


def _has_id(entry: Endpoint) -> bool:
    return "{" in entry.path


def cases(entry: Endpoint) -> list[Case]:
    """Every caller the matrix has something to say about, for ``entry``."""
    out = [
        Case("no token", {}, ADMIN, "401"),
        Case("forged signature", {"Authorization": f"Bearer {FORGED.issue(ADMIN)}"}, ADMIN, "401"),
    ]
    for role, principal in BY_ROLE.items():
        reach = entry.reach(role)
        # Reach ALL: tried on a firm's application, Novak's task and Novak's registry entry.
        own = principal if reach not in (None, Reach.ALL) else ALL_OWNER.get(role, REVIEWER)
        if reach is None:
            out.append(Case(f"{role} (not granted)", bearer(principal), own, "403", principal))
            continue
        out.append(Case(f"{role} on own data", bearer(principal), own, "allowed", principal))
        if reach is Reach.OWN_FIRM and _has_id(entry):
            out.append(Case("firm B on firm A's data", bearer(FIRM_B), FIRM_A, "404", FIRM_B))
        if reach is Reach.ASSIGNED and role is Role.REVIEWER and _has_id(entry):
            who = "an unassigned reviewer"
            out.append(Case(who, bearer(OTHER_REVIEWER), REVIEWER, "404", OTHER_REVIEWER))
        supervised = reach in (Reach.ASSIGNED, Reach.ASSIGNED_OR_ESCALATED)
        if role is Role.SUPERVISOR and supervised and _has_id(entry):
            out.append(Case("supervisor outside an escalation", bearer(principal), REVIEWER, "404"))
            expect = "allowed" if reach is Reach.ASSIGNED_OR_ESCALATED else "403"
            out.append(
                Case("supervisor on an escalation", bearer(principal), ESCALATED_REVIEWER, expect)
            )
        if reach is Reach.SELF:
            who = "a reviewer on another's entry"
            out.append(Case(who, bearer(principal), OTHER_REVIEWER, "403", principal))
    return out


def _check_rows(entry: Endpoint, case: Case, response: requests.Response) -> str | None:
    """Lists a firm or a reviewer may read hold only their own rows."""
    principal = case.principal
    if principal is None or response.status_code != 200 or entry.path not in (APPS, "/v1/inbox"):
        return None
    items = response.json()["items"]
    if principal.role is Role.FIRM and entry.path == APPS:
        others = [i["id"] for i in items if i["firm_id"] != principal.firm_id]
    elif principal.role in (Role.REVIEWER, Role.SUPERVISOR) and entry.path == "/v1/inbox":
        others = [i["task_id"] for i in items if i["reviewer_id"] != principal.sub]
    else:
        return None
    return f"rows of others: {others}" if others else None


def _verdict(
    entry: Endpoint, case: Case, response: requests.Response, documented: set[str]
) -> str | None:
    status = response.status_code
    if case.expect == "allowed":
        if status in (401, 403, 404) or (
            status >= 500 and not (status == 503 and "503" in documented)
        ):
            return f"expected to be allowed, got {status}: {response.text[:300]}"
        return _check_rows(entry, case, response)
    if str(status) != case.expect:
        return f"expected {case.expect}, got {status}: {response.text[:300]}"
    return None


def _documented(served: ServedPlatform, entry: Endpoint) -> set[str]:
    document = served.apps[entry.service].openapi()
    return set(document["paths"][entry.path][entry.method.lower()]["responses"])


TOKEN_ENTRIES = [e for e in ENDPOINTS if e.access is Access.TOKEN]


def test_every_token_endpoint_of_a_served_service_has_a_request() -> None:
    missing = [e.key for e in ENDPOINTS if e.service in SERVED and e.key not in REQUESTS]
    assert not missing, f"entries the walk cannot call: {missing}"


@pytest.mark.parametrize("service", sorted({e.service for e in TOKEN_ENTRIES}))
def test_every_endpoint_answers_every_caller_as_the_matrix_says(world: World, service: str) -> None:
    failures: list[str] = []
    walked = 0
    for entry in (e for e in TOKEN_ENTRIES if e.service == service):
        recipe = REQUESTS[entry.key]
        documented = _documented(world.served, entry)
        for case in cases(entry):
            call = recipe(world, case.owner)
            response = requests.request(
                entry.method,
                world.served.urls[service] + call.path,
                json=call.json,
                data=call.data,
                params=call.params,
                headers={**call.headers, **case.headers},
                timeout=30,
            )
            walked += 1
            verdict = _verdict(entry, case, response, documented)
            if verdict is not None:
                failures.append(f"{entry.method} {call.path} as {case.who}: {verdict}")
    assert walked > 0
    if failures:
        pytest.fail(f"{len(failures)} of {walked} calls:\n" + "\n".join(failures), pytrace=False)


def test_public_paths_and_the_rail_answer_without_a_token(world: World) -> None:
    failures = []
    for service in SERVED:
        for path in ("/health", "/openapi.json", "/docs"):
            response = requests.get(world.served.urls[service] + path, timeout=30)
            if response.status_code in (401, 403):
                failures.append(f"{service} {path}: {response.status_code}")
    for entry in (e for e in ENDPOINTS if e.access is Access.NETWORK):
        call = REQUESTS[entry.key](world, ADMIN)
        for headers in ({}, {"Authorization": f"Bearer {FORGED.issue(ADMIN)}"}, bearer(FIRM_A)):
            response = requests.request(
                entry.method,
                world.served.urls[entry.service] + call.path,
                json=call.json,
                params=call.params,
                headers={**call.headers, **headers},
                timeout=30,
            )
            if response.status_code in (401, 403) or response.status_code >= 500:
                failures.append(f"{entry.method} {call.path}: {response.status_code}")
    assert not failures, failures
