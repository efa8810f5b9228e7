"""The activities against fakes of their dependencies: the desk over a mock HTTP transport."""

from __future__ import annotations

import json

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from contracts.v1.desk import ReviewerRole
from services.kit.auth import Role, TokenService
from services.kit.messaging import Record
from tests.workflows.scenarios import ROSTER
from workflows.activities import CandidateQuery, OutgoingMessage, Publisher, ReviewDesk
from workflows.settings import Settings
from workflows.worker import review_desk, service_token_issuer

QUERY = CandidateQuery(role=ReviewerRole.SECURITY, application_id="app_1")


def desk(handler: httpx.MockTransport | None = None, **kw: object) -> ReviewDesk:
    return ReviewDesk("http://desk.test/", lambda: "tok", transport=handler, **kw)  # type: ignore[arg-type]


async def run(d: ReviewDesk) -> list:  # type: ignore[type-arg]
    return await ActivityEnvironment().run(d.candidate_reviewers, QUERY)


async def test_candidates_call_the_desk_with_a_bearer_token() -> None:
    seen: list[httpx.Request] = []
    security = [p for p in ROSTER if ReviewerRole.SECURITY in p.roles]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[p.model_dump(mode="json") for p in security])

    profiles = await run(desk(httpx.MockTransport(handler)))
    assert profiles == security
    (request,) = seen
    assert str(request.url) == "http://desk.test/internal/v1/candidates?stage=security"
    assert request.headers["authorization"] == "Bearer tok"


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_failing_desk_is_retried(status: int) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(status, text="busy"))
    with pytest.raises(ApplicationError) as error:
        await run(desk(transport))
    assert error.value.type == "DeskUnavailable"
    assert not error.value.non_retryable


async def test_an_unreachable_desk_is_retried() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ApplicationError) as error:
        await run(desk(httpx.MockTransport(refuse)))
    assert error.value.type == "DeskUnavailable"
    assert not error.value.non_retryable


@pytest.mark.parametrize("status", [401, 403, 422])
async def test_a_refusal_is_final(status: int) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(status, json={"title": "no"}))
    with pytest.raises(ApplicationError) as error:
        await run(desk(transport))
    assert error.value.type == "DeskRefused"
    assert error.value.non_retryable


async def test_an_invalid_answer_is_final() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json=[{"reviewer_id": "x"}]))
    with pytest.raises(ApplicationError) as error:
        await run(desk(transport))
    assert error.value.type == "DeskInvalidResponse"
    assert error.value.non_retryable


def test_the_worker_signs_admin_tokens_for_system_workflows() -> None:
    settings = Settings()
    principal = TokenService(settings.jwt_secret).verify(service_token_issuer(settings)())
    assert principal.sub == "system:workflows"
    assert principal.role is Role.ADMIN


def test_the_worker_desk_uses_the_configured_url() -> None:
    settings = Settings(review_url="http://review.internal:9000")  # type: ignore[call-arg]
    assert review_desk(settings).base_url == "http://review.internal:9000"


async def test_publisher_sends_one_record() -> None:
    sent: list[Record] = []

    async def publish(records: object) -> None:
        sent.extend(records)  # type: ignore[call-overload]

    message = OutgoingMessage(
        topic="review.events", key="app_1", value=json.dumps({"a": 1}), headers=[("type", "x")]
    )
    await ActivityEnvironment().run(Publisher(publish).publish_message, message)
    assert sent == [
        Record(topic="review.events", value=b'{"a": 1}', key=b"app_1", headers=[("type", b"x")])
    ]
