"""The applications API over HTTP, on the real broker and PostgreSQL.

Every bad input gets a clear 4xx RFC 9457 problem (field-level detail for validation) and
leaves nothing written; firms are isolated from each other (404); submissions are idempotent
and atomic; the submitted event reaches the broker through the outbox.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr

from contracts.envelope import utcnow
from contracts.v1.applications import ApplicationContent
from services.applications.commands import EVENTS_TOPIC
from services.kit.auth import Principal, Role, TokenService
from services.kit.problems import PROBLEM_JSON
from services.kit.settings import DEV_JWT_SECRET
from services.kit.uow import UnitOfWork, UnitOfWorkFactory
from tests.applications.conftest import Running
from tests.applications.helpers import auth, content, find_record, key, new_firm
from tests.kit.helpers import scalar

pytestmark = pytest.mark.integration

BASE = "/v1/applications"


@pytest.fixture
def firm() -> str:
    return new_firm()


@pytest.fixture
def headers(firm: str) -> dict[str, str]:
    return auth("firm", firm, sub=f"alice@{firm.lower()}.example")


@pytest.fixture
def client(running: Running) -> httpx.AsyncClient:
    return running.client


async def submit(
    client: httpx.AsyncClient, headers: dict[str, str], body: Any = None, idem: str | None = None
) -> httpx.Response:
    return await client.post(
        f"{BASE}/submissions",
        json=content() if body is None else body,
        headers={**headers, "Idempotency-Key": idem or key()},
    )


async def create_draft(
    client: httpx.AsyncClient, headers: dict[str, str], body: Any = None
) -> dict[str, Any]:
    response = await client.post(BASE, json={} if body is None else body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response's problem document, after checking it is one with ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["type"].startswith("urn:incentives:problem:") or body["type"] == "about:blank"
    return body


def pointers(body: dict[str, Any]) -> dict[str, str]:
    """Field errors by JSON pointer (or header/parameter name) -> error type."""
    return {
        e.get("pointer") or e.get("header") or e.get("parameter"): e["type"] for e in body["errors"]
    }


async def written(running: Running, firm: str) -> tuple[int, int, int]:
    """How many applications, timeline entries and outbox rows exist for ``firm``."""
    apps = await running.count("SELECT count(*) FROM applications WHERE firm_id = :f", f=firm)
    entries = await running.count(
        "SELECT count(*) FROM application_timeline t JOIN applications a "
        "ON a.id = t.application_id WHERE a.firm_id = :f",
        f=firm,
    )
    outbox = await running.count(
        "SELECT count(*) FROM outbox WHERE key IN (SELECT id FROM applications WHERE firm_id = :f)",
        f=firm,
    )
    return apps, entries, outbox


@pytest.fixture
async def nothing_written(running: Running, firm: str) -> AsyncIterator[None]:
    """Fail the test if it left any application, timeline entry or outbox row for its firm."""
    yield
    assert await written(running, firm) == (0, 0, 0)


# --- drafts --------------------------------------------------------------------------------------


async def test_a_draft_is_created_edited_and_submitted(
    running: Running, client: httpx.AsyncClient, headers: dict[str, str], firm: str
) -> None:
    draft = await create_draft(client, headers, {"firm": {"legal_name": "Acme Vision AI GmbH"}})
    assert draft["status"] == "draft"
    assert draft["firm_id"] == firm
    assert draft["allowed_actions"] == ["edit", "submit", "delete"]
    assert "firm.registration_number" in draft["missing_for_submission"]
    assert [e["event"] for e in draft["timeline"]] == ["application.draft_created"]
    url = f"{BASE}/{draft['id']}"

    full = content()
    response = await client.put(url, json={**full, "proposal": None}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["missing_for_submission"] == ["proposal"]

    response = await client.patch(
        url,
        json={"proposal": full["proposal"], "incentives": {"grant": None}},
        headers={**headers, "Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["content"]["incentives"]["grant"] is None  # removed by the patch
    assert patched["content"]["incentives"]["zone_space"]  # kept
    assert patched["missing_for_submission"] == []

    response = await client.post(f"{url}/submit", headers={**headers, "Idempotency-Key": key()})
    assert response.status_code == 200, response.text
    submitted = response.json()
    assert submitted["status"] == "submitted"
    assert submitted["revision"] == 1
    assert submitted["allowed_actions"] == ["withdraw"]
    assert [(e["event"], e["status"]) for e in submitted["timeline"]] == [
        ("application.draft_created", "draft"),
        ("application.submitted", "submitted"),
    ]
    assert submitted["timeline"][1]["actor"] == {
        "kind": "firm",
        "id": f"alice@{firm.lower()}.example",
    }
    assert await written(running, firm) == (1, 2, 1)


async def test_a_draft_can_be_deleted_until_it_is_submitted(
    client: httpx.AsyncClient, headers: dict[str, str], nothing_written: None
) -> None:
    draft = await create_draft(client, headers)
    response = await client.delete(f"{BASE}/{draft['id']}", headers=headers)
    assert response.status_code == 204
    problem(await client.get(f"{BASE}/{draft['id']}", headers=headers), 404)


async def test_submitted_applications_cannot_be_edited_or_deleted(
    running: Running, client: httpx.AsyncClient, headers: dict[str, str], firm: str
) -> None:
    created = (await submit(client, headers)).json()
    url = f"{BASE}/{created['id']}"
    before = await written(running, firm)
    attempts = [
        client.put(url, json=content(), headers=headers),
        client.patch(url, json={"proposal": {"local_jobs": 1}}, headers=headers),
        client.delete(url, headers=headers),
        client.post(f"{url}/submit", headers={**headers, "Idempotency-Key": key()}),
    ]
    for response in await asyncio.gather(*attempts):
        body = problem(response, 409)
        assert body["type"] == "urn:incentives:problem:conflict"
        assert body["current_status"] == "submitted"
        assert body["allowed_actions"] == ["withdraw"]
        assert "submitted" in body["detail"]
    assert await written(running, firm) == before
    stored = (await client.get(url, headers=headers)).json()
    assert stored["content"] == created["content"]


async def test_submitting_an_incomplete_draft_lists_what_is_missing(
    running: Running, client: httpx.AsyncClient, headers: dict[str, str], firm: str
) -> None:
    partial = content()
    del partial["firm"]["registration_number"]
    partial["proposal"] = {"title": "Triage", "sector": "health"}
    partial["incentives"] = {}
    draft = await create_draft(client, headers, partial)
    before = await written(running, firm)
    response = await client.post(
        f"{BASE}/{draft['id']}/submit", headers={**headers, "Idempotency-Key": key()}
    )
    body = problem(response, 422)
    assert pointers(body) == {
        "#/firm/registration_number": "missing",
        "#/proposal/ai_use_case": "missing",
        "#/proposal/investment_commitment": "missing",
        "#/proposal/local_jobs": "missing",
        "#/incentives": "no_incentive_requested",
    }
    assert await written(running, firm) == before
    assert (await client.get(f"{BASE}/{draft['id']}", headers=headers)).json()["status"] == "draft"


# --- bad input -----------------------------------------------------------------------------------

_LONG = "x" * 4001


def _attestation(attested_at: object) -> dict[str, Any]:
    return {"accepted": True, "signatory": "Dr. Jana Weber, CTO", "attested_at": attested_at}


_TOMORROW = (utcnow() + timedelta(days=1)).isoformat()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            content(surprise=1), {"#/surprise": "extra_forbidden"}, id="unknown-top-level-field"
        ),
        pytest.param(
            content(firm__nickname="Acme"),
            {"#/firm/nickname": "extra_forbidden"},
            id="unknown-nested-field",
        ),
        pytest.param(
            content(proposal__local_jobs="many"),
            {"#/proposal/local_jobs": "int_parsing"},
            id="wrong-type-int",
        ),
        pytest.param(
            content(proposal__sector="space_tourism"),
            {"#/proposal/sector": "enum"},
            id="wrong-enum",
        ),
        pytest.param(
            content(firm__foreign_ownership_pct=49.5),
            {"#/firm/foreign_ownership_pct": "value_error"},
            id="float-percentage",
        ),
        pytest.param(
            content(firm=["Acme"]), {"#/firm": "model_attributes_type"}, id="wrong-type-object"
        ),
        pytest.param(
            content(incentives__grant__amount={"amount": "-1.00", "currency": "EUR"}),
            {"#/incentives/grant/amount/amount": "greater_than"},
            id="negative-money",
        ),
        pytest.param(
            content(incentives__grant__amount={"amount": "0", "currency": "EUR"}),
            {"#/incentives/grant/amount/amount": "greater_than"},
            id="zero-money",
        ),
        pytest.param(
            content(incentives__grant__amount={"amount": "-0", "currency": "EUR"}),
            {"#/incentives/grant/amount/amount": "greater_than"},
            id="negative-zero-money",
        ),
        pytest.param(
            content(incentives__grant__amount={"amount": "0.001", "currency": "EUR"}),
            {"#/incentives/grant/amount/amount": "money_precision"},
            id="money-below-the-minor-unit",
        ),
        pytest.param(
            content(proposal__investment_commitment={"amount": "180000000.5", "currency": "JPY"}),
            {"#/proposal/investment_commitment/amount": "money_precision"},
            id="yen-with-decimals",
        ),
        pytest.param(
            content(proposal__investment_commitment={"amount": "5000", "currency": "XAU"}),
            {"#/proposal/investment_commitment/currency": "currency_not_accepted"},
            id="gold-is-not-a-currency",
        ),
        pytest.param(
            content(commitments__data_protection_attestation=_attestation(525)),
            {"#/commitments/data_protection_attestation/attested_at": "date_time_format"},
            id="integer-date-time",
        ),
        pytest.param(
            content(commitments__data_protection_attestation=_attestation(_TOMORROW)),
            {"#/commitments/data_protection_attestation/attested_at": "date_in_future"},
            id="attested-in-the-future",
        ),
        pytest.param(
            content(proposal__investment_commitment={"amount": "100", "currency": "EURO"}),
            {"#/proposal/investment_commitment/currency": "string_pattern_mismatch"},
            id="bad-currency",
        ),
        pytest.param(
            content(firm__foreign_ownership_pct="100.01"),
            {"#/firm/foreign_ownership_pct": "less_than_equal"},
            id="percentage-over-100",
        ),
        pytest.param(
            content(firm__foreign_ownership_pct="-1"),
            {"#/firm/foreign_ownership_pct": "greater_than_equal"},
            id="negative-percentage",
        ),
        pytest.param(
            content(
                firm__parent_companies=[
                    {"legal_name": "A", "country": "DE", "ownership_pct": "70"},
                    {"legal_name": "B", "country": "FR", "ownership_pct": "70"},
                ]
            ),
            {"#/firm/parent_companies": "ownership_exceeds_100"},
            id="parents-own-140-percent",
        ),
        pytest.param(
            content(firm__legal_name="A" * 201),
            {"#/firm/legal_name": "string_too_long"},
            id="oversized-short-text",
        ),
        pytest.param(
            content(proposal__ai_use_case=_LONG),
            {"#/proposal/ai_use_case": "string_too_long"},
            id="oversized-long-text",
        ),
        pytest.param(
            content(documents=[content()["documents"][0]] * 51),
            {"#/documents": "too_long"},
            id="too-many-documents",
        ),
        pytest.param([content()], {"#": "model_attributes_type"}, id="not-an-object"),
    ],
)
async def test_bad_content_is_a_422_problem_with_field_detail(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    nothing_written: None,
    body: Any,
    expected: dict[str, str],
) -> None:
    for response in (
        await submit(client, headers, body),
        await client.post(BASE, json=body, headers=headers),  # drafts keep every limit too
    ):
        problem_body = problem(response, 422)
        assert problem_body["type"] == "urn:incentives:problem:validation_failed"
        assert pointers(problem_body) == expected
        assert all(error["message"] for error in problem_body["errors"])


async def test_malformed_json_is_a_422_problem(
    client: httpx.AsyncClient, headers: dict[str, str], nothing_written: None
) -> None:
    response = await client.post(
        f"{BASE}/submissions",
        content=b'{"firm": {',
        headers={**headers, "Idempotency-Key": key(), "Content-Type": "application/json"},
    )
    assert problem(response, 422)["errors"][0]["type"] == "json_invalid"


async def test_deeply_nested_json_is_refused_not_crashed_on(
    client: httpx.AsyncClient, headers: dict[str, str], nothing_written: None
) -> None:
    response = await client.post(
        BASE,
        content=b"[" * 100_000 + b"]" * 100_000,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_an_oversized_body_is_refused_before_parsing(
    client: httpx.AsyncClient, headers: dict[str, str], nothing_written: None
) -> None:
    huge = json.dumps(content(proposal__ai_use_case="x" * 300_000)).encode()
    response = await client.post(
        f"{BASE}/submissions",
        content=huge,
        headers={**headers, "Idempotency-Key": key(), "Content-Type": "application/json"},
    )
    assert "larger than" in problem(response, 413)["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(huge), 16_384):
            yield huge[start : start + 16_384]

    response = await client.post(
        BASE, content=chunks(), headers={**headers, "Content-Type": "application/json"}
    )
    assert "larger than" in problem(response, 413)["detail"]


async def test_a_submission_without_idempotency_key_is_refused(
    client: httpx.AsyncClient, headers: dict[str, str], nothing_written: None
) -> None:
    response = await client.post(f"{BASE}/submissions", json=content(), headers=headers)
    assert pointers(problem(response, 422)) == {"Idempotency-Key": "missing"}
    response = await client.post(
        f"{BASE}/submissions", json=content(), headers={**headers, "Idempotency-Key": "short"}
    )
    assert pointers(problem(response, 422)) == {"Idempotency-Key": "string_too_short"}


async def test_bad_paging_parameters_are_422(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for query, parameter in (
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("status=pending", "status"),
    ):
        response = await client.get(f"{BASE}?{query}", headers=headers)
        assert list(pointers(problem(response, 422))) == [parameter], query


# --- authentication and isolation ----------------------------------------------------------------


def _forged(claims: dict[str, Any], secret: str = DEV_JWT_SECRET) -> dict[str, str]:
    now = utcnow()
    base = {
        "sub": "mallory",
        "role": "firm",
        "firm_id": "ACME",
        "iss": "incentives",
        "aud": "incentives-api",
        "iat": now,
        "exp": now + timedelta(hours=1),
    }
    base.update(claims)
    token = jwt.encode({k: v for k, v in base.items() if v is not None}, secret, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


_OTHER_KEY = TokenService(SecretStr("another-secret-that-is-long-enough-0123456789"))
_EXPIRED = TokenService(SecretStr(DEV_JWT_SECRET)).issue(
    Principal(sub="alice", role=Role.FIRM, firm_id="ACME"), ttl=timedelta(minutes=-5)
)


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Basic YWxpY2U6c2VjcmV0"}, id="not-bearer"),
        pytest.param({"Authorization": "Bearer"}, id="empty-token"),
        pytest.param({"Authorization": "Bearer not.a.jwt"}, id="garbage"),
        pytest.param(
            {
                "Authorization": "Bearer "
                + _OTHER_KEY.issue(Principal(sub="a", role=Role.FIRM, firm_id="ACME"))
            },
            id="wrong-signature",
        ),
        pytest.param({"Authorization": f"Bearer {_EXPIRED}"}, id="expired"),
        pytest.param(_forged({"role": "firm", "firm_id": None}), id="firm-without-firm-id"),
        pytest.param(_forged({"role": "emperor"}), id="unknown-role"),
        pytest.param(_forged({"aud": "someone-else"}), id="wrong-audience"),
        pytest.param(_forged({"exp": None}), id="no-expiry"),
    ],
)
async def test_missing_or_invalid_tokens_are_401(
    client: httpx.AsyncClient, credentials: dict[str, str]
) -> None:
    for response in (
        await client.get(BASE, headers=credentials),
        await client.post(
            f"{BASE}/submissions",
            json=content(),
            headers={**credentials, "Idempotency-Key": key()},
        ),
        await client.get(f"{BASE}/app_{uuid.uuid4().hex}", headers=credentials),
    ):
        body = problem(response, 401)
        assert body["type"] == "urn:incentives:problem:unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"


async def test_a_firm_never_sees_or_changes_another_firms_application(
    running: Running, client: httpx.AsyncClient, headers: dict[str, str], firm: str
) -> None:
    mine = (await submit(client, headers)).json()
    draft = await create_draft(client, headers, {"firm": {"legal_name": "Acme"}})
    rival_firm = new_firm()
    rival = auth("firm", rival_firm)
    before = await written(running, firm)
    for target in (mine["id"], draft["id"]):
        url = f"{BASE}/{target}"
        for response in await asyncio.gather(
            client.get(url, headers=rival),
            client.put(url, json={}, headers=rival),
            client.patch(url, json={}, headers=rival),
            client.delete(url, headers=rival),
            client.post(f"{url}/submit", headers={**rival, "Idempotency-Key": key()}),
            client.post(f"{url}/withdraw", json={"reason": "mine now"}, headers=rival),
            client.post(f"{url}/amend", json={"content": content(), "reason": "x"}, headers=rival),
        ):
            body = problem(response, 404)
            assert body["detail"] == f"application {target} not found"
    # Exactly the answer for an id that does not exist at all: nothing tells them apart.
    missing = await client.get(f"{BASE}/app_{uuid.uuid4().hex}", headers=rival)
    assert problem(missing, 404)["title"] == "Not found"
    listing = (await client.get(BASE, headers=rival)).json()
    assert listing == {"items": [], "next_cursor": None}
    sneaky = (await client.get(f"{BASE}?firm_id={firm}", headers=rival)).json()
    assert sneaky["items"] == []
    assert await written(running, firm) == before


async def test_staff_read_submitted_applications_and_change_nothing(
    running: Running, client: httpx.AsyncClient, headers: dict[str, str], firm: str
) -> None:
    submitted = (await submit(client, headers)).json()
    draft = await create_draft(client, headers)
    before = await written(running, firm)
    for role in ("reviewer", "supervisor", "auditor", "admin"):
        staff = auth(role, None)
        listing = (await client.get(f"{BASE}?firm_id={firm}", headers=staff)).json()
        assert [item["id"] for item in listing["items"]] == [submitted["id"]]  # drafts are private
        view = await client.get(f"{BASE}/{submitted['id']}", headers=staff)
        assert view.status_code == 200
        assert view.json()["allowed_actions"] == []
        problem(await client.get(f"{BASE}/{draft['id']}", headers=staff), 404)
        for response in await asyncio.gather(
            client.post(BASE, json={}, headers=staff),
            submit(client, staff),
            client.post(f"{BASE}/{submitted['id']}/withdraw", json={"reason": "x"}, headers=staff),
            client.patch(f"{BASE}/{draft['id']}", json={}, headers=staff),
        ):
            assert "read-only" in problem(response, 403)["detail"]
    assert await written(running, firm) == before


# --- idempotency and atomicity -------------------------------------------------------------------


async def test_the_same_key_never_submits_twice(
    running: Running, client: httpx.AsyncClient, headers: dict[str, str], firm: str
) -> None:
    idem = key()
    first = await submit(client, headers, idem=idem)
    assert first.status_code == 201, first.text
    again = await submit(client, headers, idem=idem)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == f"{BASE}/{first.json()['id']}"
    assert await written(running, firm) == (1, 1, 1)


async def test_concurrent_retries_with_one_key_submit_once(
    running: Running, client: httpx.AsyncClient, headers: dict[str, str], firm: str
) -> None:
    idem = key()
    responses = await asyncio.gather(*(submit(client, headers, idem=idem) for _ in range(8)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 7
    assert await written(running, firm) == (1, 1, 1)


async def test_the_same_key_with_another_body_is_refused(
    running: Running, client: httpx.AsyncClient, headers: dict[str, str], firm: str
) -> None:
    idem = key()
    first = await submit(client, headers, idem=idem)
    assert first.status_code == 201
    response = await submit(client, headers, content(proposal__local_jobs=41), idem=idem)
    body = problem(response, 422)
    assert pointers(body) == {"Idempotency-Key": "idempotency_key_reused"}
    draft = await create_draft(client, headers, content())
    response = await client.post(
        f"{BASE}/{draft['id']}/submit", headers={**headers, "Idempotency-Key": idem}
    )
    assert pointers(problem(response, 422)) == {"Idempotency-Key": "idempotency_key_reused"}
    assert (await client.get(f"{BASE}/{draft['id']}", headers=headers)).json()["status"] == "draft"
    assert await written(running, firm) == (2, 2, 1)


async def test_keys_belong_to_their_firm(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    idem = key()
    mine = await submit(client, headers, idem=idem)
    theirs = await submit(client, auth("firm", new_firm()), idem=idem)
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]


async def test_submitting_a_draft_twice_with_one_key_replays(
    running: Running, client: httpx.AsyncClient, headers: dict[str, str], firm: str
) -> None:
    draft = await create_draft(client, headers, content())
    idem = {**headers, "Idempotency-Key": key()}
    first = await client.post(f"{BASE}/{draft['id']}/submit", headers=idem)
    again = await client.post(f"{BASE}/{draft['id']}/submit", headers=idem)
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["timeline"] == first.json()["timeline"]
    assert await written(running, firm) == (1, 2, 1)


class _FailingCommit(UnitOfWork):
    """Writes every row of the unit (outbox included), then fails instead of COMMIT."""

    async def commit(self) -> None:
        session = self.session

        async def fail() -> None:
            await session.flush()  # every row reaches the database...
            raise RuntimeError("injected failure at COMMIT")  # ...and is never committed

        session.commit = fail  # type: ignore[method-assign]
        await super().commit()


class _FailingFactory(UnitOfWorkFactory):
    def __call__(self) -> UnitOfWork:
        return _FailingCommit(self.session_factory)


async def test_a_failure_before_commit_leaves_nothing_and_frees_the_key(
    running: Running, client: httpx.AsyncClient, headers: dict[str, str], firm: str
) -> None:
    service = running.service
    original = service.uow
    service.uow = _FailingFactory(original.session_factory)
    idem = key()
    try:
        failed = await submit(client, headers, idem=idem)
    finally:
        service.uow = original
    body = problem(failed, 500)
    assert "injected" not in json.dumps(body)  # internals stay in the log
    assert await written(running, firm) == (0, 0, 0)
    assert (
        await running.count("SELECT count(*) FROM idempotency_keys WHERE firm_id = :f", f=firm) == 0
    )
    retried = await submit(client, headers, idem=idem)
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    assert await written(running, firm) == (1, 1, 1)


async def test_the_submitted_event_is_in_the_outbox_and_on_the_broker(
    running: Running, client: httpx.AsyncClient, headers: dict[str, str], firm: str
) -> None:
    view = (await submit(client, headers)).json()
    event_id = await _outbox_event_id(running, view["id"])
    envelope = await find_record(running.bootstrap, EVENTS_TOPIC, event_id)
    assert envelope.type == "application.submitted"
    assert envelope.subject == view["id"]
    assert envelope.producer == "applications"
    assert str(envelope.correlation_id) == view["journey_id"]
    assert envelope.actor.kind == "firm"
    assert envelope.actor.firm_id == firm
    assert envelope.actor.id == f"alice@{firm.lower()}.example"
    payload = envelope.payload
    assert payload.firm_id == firm
    assert payload.revision == 1
    assert payload.content == ApplicationContent.model_validate(content())
    # Each application has its own journey.
    other = (await submit(client, headers)).json()
    assert other["journey_id"] != view["journey_id"]


async def _outbox_event_id(running: Running, application_id: str) -> uuid.UUID:
    value = await scalar(
        running.engine, "SELECT event_id FROM outbox WHERE key = :k", k=application_id
    )
    assert value is not None
    return uuid.UUID(str(value))


# --- withdrawing and listing ---------------------------------------------------------------------


async def test_withdrawing_emits_the_event_and_closes_the_application(
    running: Running, client: httpx.AsyncClient, headers: dict[str, str], firm: str
) -> None:
    view = (await submit(client, headers)).json()
    url = f"{BASE}/{view['id']}"
    idem = {**headers, "Idempotency-Key": key()}
    response = await client.post(f"{url}/withdraw", json={"reason": "Moved abroad."}, headers=idem)
    assert response.status_code == 200, response.text
    withdrawn = response.json()
    assert withdrawn["status"] == "withdrawn"
    assert withdrawn["status_reasons"] == ["Moved abroad."]
    assert withdrawn["allowed_actions"] == []
    assert withdrawn["timeline"][-1]["event"] == "application.withdrawn"
    replay = await client.post(f"{url}/withdraw", json={"reason": "Moved abroad."}, headers=idem)
    assert replay.headers["idempotent-replayed"] == "true"
    again = await client.post(f"{url}/withdraw", json={"reason": "Again."}, headers=headers)
    assert problem(again, 409)["status"] == 409
    assert await written(running, firm) == (1, 2, 2)
    types = await running.count(
        "SELECT count(*) FROM outbox WHERE key = :k AND topic = :t", k=view["id"], t=EVENTS_TOPIC
    )
    assert types == 2


async def test_a_draft_cannot_be_withdrawn_or_amended(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    draft = await create_draft(client, headers)
    url = f"{BASE}/{draft['id']}"
    problem(await client.post(f"{url}/withdraw", json={"reason": "x"}, headers=headers), 409)
    response = await client.post(
        f"{url}/amend", json={"content": content(), "reason": "x"}, headers=headers
    )
    assert "submit the draft first" in problem(response, 409)["detail"]


async def test_amending_without_an_information_request_is_409(
    running: Running, client: httpx.AsyncClient, headers: dict[str, str], firm: str
) -> None:
    view = (await submit(client, headers)).json()
    before = await written(running, firm)
    response = await client.post(
        f"{BASE}/{view['id']}/amend",
        json={"content": content(proposal__local_jobs=99), "reason": "More jobs."},
        headers=headers,
    )
    body = problem(response, 409)
    assert "only while information has been requested" in body["detail"]
    assert body["status"] == 409
    assert await written(running, firm) == before


async def test_listing_pages_through_own_applications_newest_first(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    ids = [(await create_draft(client, headers))["id"] for _ in range(5)]
    ids.append((await submit(client, headers)).json()["id"])
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        page = (await client.get(f"{BASE}{query}", headers=headers)).json()
        seen.extend(item["id"] for item in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert pages == 3
    only = (await client.get(f"{BASE}?status=submitted", headers=headers)).json()
    assert [item["id"] for item in only["items"]] == [ids[-1]]
    assert only["items"][0]["title"] == content()["proposal"]["title"]
