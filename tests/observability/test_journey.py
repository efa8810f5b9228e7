"""Metrics and traces after a journey on the real stack: Tansu, the Temporal dev server, PostgreSQL.

The applications API, the eligibility service and the worker (its bridge, Temporal worker and
publish activity) run in this process on free ports, with tracing on and an in-memory span
exporter; the review desk is the candidates stub of the worker's own tests. A firm submits one
application over HTTP:

- its spans form one trace, from the HTTP request through the eligibility consumer, the bridge's
  signal-with-start and the workflow to the workflow's publish activity;
- each service's ``/metrics``, parsed with the Prometheus client's parser, moves as it should;
- neither carries the bearer token or the signing key.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from contracts import catalog
from contracts.envelope import Actor
from contracts.topics import TOPICS
from services.applications.main import create_app as create_applications
from services.applications.settings import Settings as ApplicationsSettings
from services.eligibility.main import create_app as create_eligibility
from services.eligibility.settings import Settings as EligibilitySettings
from services.kit import tracing
from services.kit.auth import Principal, Role, TokenService
from services.kit.logging import configure_logging
from services.kit.messaging import create_producer, ensure_topics
from services.kit.metrics import Samples
from services.kit.metrics import parse_exposition as samples
from services.kit.metrics import sample_total as value
from services.kit.settings import DEV_JWT_SECRET
from services.portal.main import SESSION_COOKIE
from services.portal.main import create_app as create_portal
from services.portal.sessions import session_key
from services.portal.settings import Settings as PortalSettings
from tests.applications.helpers import TOKENS, auth, content, key, new_firm
from tests.kit.helpers import eventually, fresh_database
from tests.support import free_port, healthy, serving
from tests.workflows.test_worker_integration import stub_desk
from workflows.settings import Settings as WorkerSettings
from workflows.worker import create_app as create_worker

pytestmark = pytest.mark.integration

#: The portal's session key in this module.
PORTAL_SECRET = "portal-session-key-of-the-observability-tests"


@dataclass
class Stack:
    """The running services, their HTTP clients and the spans they recorded."""

    applications: httpx.AsyncClient
    eligibility: httpx.AsyncClient
    worker: httpx.AsyncClient
    portal: httpx.AsyncClient
    spans: InMemorySpanExporter
    bootstrap: str
    temporal: str

    async def scrape(self) -> dict[str, Samples]:
        """Every service's samples, by service."""
        out = {}
        for name, client in (
            ("applications", self.applications),
            ("eligibility", self.eligibility),
            ("worker", self.worker),
        ):
            response = await client.get("/metrics")
            assert response.status_code == 200, response.text
            out[name] = samples(response.text)
        return out

    async def texts(self) -> str:
        parts = []
        for client in (self.applications, self.eligibility, self.worker, self.portal):
            parts.append((await client.get("/metrics")).text)
        return "\n".join(parts)


@pytest.fixture(scope="module")
def span_exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the services this module wires, into memory; off again afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_provider(None)
        provider.shutdown()


@pytest.fixture(scope="module")
async def stack(
    span_exporter: InMemorySpanExporter,
    kafka_bootstrap: str,
    temporal_dev: str,
    pg_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    configure_logging("observability", "WARNING")
    await ensure_topics(
        kafka_bootstrap, [(n, t.partitions) for t in TOPICS for n in (t.name, t.dlq)]
    )
    prefix = f"obs-{uuid.uuid4().hex[:6]}-"  # consumer groups of this module's own
    common: dict[str, Any] = {
        "kafka_bootstrap": kafka_bootstrap,
        "consumer_group_prefix": prefix,
    }
    async with contextlib.AsyncExitStack() as stack:
        desk_url, _callers = await stack.enter_async_context(
            stub_desk(TokenService(SecretStr(DEV_JWT_SECRET)))
        )
        clients: dict[str, httpx.AsyncClient] = {}
        for name, settings_class, create in (
            ("applications", ApplicationsSettings, create_applications),
            ("eligibility", EligibilitySettings, create_eligibility),
            ("worker", WorkerSettings, create_worker),
        ):
            database_url = await stack.enter_async_context(fresh_database(pg_url, f"obs{name[:4]}"))
            extra: dict[str, Any] = {}
            if name == "worker":
                extra = {
                    "temporal_address": temporal_dev,
                    "task_queue": f"obs-{uuid.uuid4().hex[:8]}",
                    "review_url": desk_url,
                }
            port = free_port()
            settings = settings_class(
                **common,
                **extra,
                database_url=database_url,
                port=port,
                var_dir=Path(tmp_path_factory.mktemp(name)),
            )
            app = create(settings)
            client = await stack.enter_async_context(serving(app, port))
            clients[name] = client

        # The portal in front of the applications API (the other services it calls are away).
        away = f"http://127.0.0.1:{free_port()}"
        port = free_port()
        portal = PortalSettings(
            port=port,
            var_dir=Path(tmp_path_factory.mktemp("portal")),
            applications_url=str(clients["applications"].base_url),
            review_url=away,
            zones_url=away,
            disbursement_url=away,
            audit_url=away,
            session_secret=SecretStr(PORTAL_SECRET),
            cookie_secure=False,
        )
        clients["portal"] = await stack.enter_async_context(serving(create_portal(portal), port))
        for client in clients.values():
            await eventually(lambda client=client: healthy(client), timeout=90)
        yield Stack(
            applications=clients["applications"],
            eligibility=clients["eligibility"],
            worker=clients["worker"],
            portal=clients["portal"],
            spans=span_exporter,
            bootstrap=kafka_bootstrap,
            temporal=temporal_dev,
        )


async def submit(stack: Stack, body: dict[str, Any] | None = None) -> tuple[str, str]:
    """One firm's submission over HTTP; returns (application id, the bearer token used)."""
    headers = auth(firm=new_firm())
    response = await stack.applications.post(
        "/v1/applications/submissions",
        json=content() if body is None else body,
        headers={**headers, "Idempotency-Key": key()},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"], headers["Authorization"].removeprefix("Bearer ")


def _spans_of_trace(stack: Stack, trace_id: int) -> list[ReadableSpan]:
    return [
        s
        for s in stack.spans.get_finished_spans()
        if s.context is not None and s.context.trace_id == trace_id
    ]


def _request_span(stack: Stack, application_id: str) -> ReadableSpan:
    """The server span of the submission that created ``application_id``."""
    consumed = [
        s
        for s in stack.spans.get_finished_spans()
        if (s.attributes or {}).get("incentives.subject") == application_id
    ]
    assert consumed, "no consumer span names the application"
    trace_id = consumed[0].context.trace_id  # type: ignore[union-attr]
    servers = [
        s
        for s in _spans_of_trace(stack, trace_id)
        if s.instrumentation_scope is not None
        and s.instrumentation_scope.name.startswith("opentelemetry.instrumentation.")
        and s.parent is None
    ]
    assert len(servers) == 1, [s.name for s in servers]
    return servers[0]


def _consumers(spans: list[ReadableSpan]) -> set[str]:
    return {
        str((s.attributes or {}).get("messaging.consumer.group.name"))
        for s in spans
        if s.instrumentation_scope is not None
        and s.instrumentation_scope.name == tracing.TRACER_NAME
    }


async def test_one_submission_is_one_trace_through_eligibility_the_bridge_and_the_workflow(
    stack: Stack,
) -> None:
    application_id, _token = await submit(stack)

    def covered() -> list[ReadableSpan]:
        spans = [
            s
            for s in stack.spans.get_finished_spans()
            if (s.attributes or {}).get("incentives.subject") == application_id
        ]
        if not spans:
            return []
        return _spans_of_trace(stack, spans[0].context.trace_id)  # type: ignore[union-attr]

    async def reached_the_workflow() -> bool:
        names = {s.name for s in covered()}
        # The workflow's own events, consumed by the status projection, are in the trace too.
        return "review.events process" in names and "worker-bridge-eligibility" in _consumers(
            covered()
        )

    await eventually(reached_the_workflow, timeout=90)

    spans = covered()
    names = {s.name for s in spans}
    request = _request_span(stack, application_id)
    assert request.name == "POST /v1/applications/submissions"
    assert "applications.events process" in names
    assert "eligibility.events process" in names
    assert {"eligibility", "worker-bridge-applications", "worker-bridge-eligibility"} <= _consumers(
        spans
    )
    assert "SignalWithStartWorkflow:IncentiveApproval" in names
    assert "RunWorkflow:IncentiveApproval" in names
    assert "StartActivity:publish_message" in names
    assert "RunActivity:publish_message" in names
    # One trace: every span about the application belongs to the submission's trace.
    about = [
        s
        for s in stack.spans.get_finished_spans()
        if (s.attributes or {}).get("incentives.subject") == application_id
        or (s.attributes or {}).get("temporalWorkflowID") == application_id
    ]
    assert {s.context.trace_id for s in about} == {request.context.trace_id}  # type: ignore[union-attr]
    # The request is the trace's only root.
    roots = [s for s in spans if s.parent is None]
    assert roots == [request]


async def test_metrics_move_after_a_journey(stack: Stack) -> None:
    before = await stack.scrape()
    application_id, _token = await submit(stack)

    # A duplicate and an undecodable record on applications.events, straight to the broker.
    other = f"app_{uuid.uuid4().hex[:12]}"
    duplicate = catalog.make_envelope(
        "application.submitted",
        catalog.example_payloads("application.submitted")[0].model_copy(
            update={"application_id": other}
        ),
        subject=other,
        actor=Actor.system("tests"),
        producer="tests",
        correlation_id=uuid.uuid4(),
    )
    producer = create_producer(stack.bootstrap)
    await producer.start()
    try:
        for raw in (catalog.encode(duplicate), catalog.encode(duplicate), b"not an envelope"):
            await producer.send_and_wait(
                "applications.events",
                raw,
                key=duplicate.subject.encode(),
                headers=duplicate.headers(),
            )
    finally:
        await producer.stop()

    def delta(after: dict[str, Any], service: str, name: str, **labels: str) -> float:
        return value(after[service], name, **labels) - value(before[service], name, **labels)

    after: dict[str, Any] = {}

    async def moved() -> bool:
        after.update(await stack.scrape())
        return (
            delta(after, "eligibility", "incentives_consumer_records_total", outcome="duplicate")
            >= 1
            and delta(
                after, "eligibility", "incentives_consumer_records_total", outcome="dead_lettered"
            )
            >= 1
            and delta(after, "eligibility", "incentives_outbox_published_records_total") >= 2
            and delta(after, "worker", "incentives_workflows_started_total") >= 1
            and delta(
                after, "worker", "incentives_workflow_events_total", type="review.task_assigned"
            )
            >= 1
            # Read from the broker when scraped: the dead letter is held on the twin.
            and value(
                after["eligibility"], "incentives_dlq_records", topic="applications.events.dlq"
            )
            >= 1
        )

    await eventually(moved, timeout=90)

    submissions = {"handler": "/v1/applications/submissions", "method": "POST", "status": "201"}
    assert delta(after, "applications", "http_requests_total", **submissions) == 1
    assert (
        delta(
            after,
            "applications",
            "http_request_duration_seconds_count",
            handler="/v1/applications/submissions",
        )
        == 1
    )
    # The submission left through the outbox, and its relay latency was observed.
    assert delta(after, "applications", "incentives_outbox_relay_latency_seconds_count") >= 1
    processed = {"topic": "applications.events", "outcome": "processed"}
    assert delta(after, "eligibility", "incentives_consumer_records_total", **processed) >= 2
    # FastStream's middleware counts what its subscribers received, too.
    assert value(after["eligibility"], "faststream_received_messages_total") > 0
    # Lag per partition of the consumed topic, and the dead letters held on its twin.
    lag = [
        ls
        for (name, ls) in after["eligibility"]
        if name == "incentives_consumer_lag" and ("topic", "applications.events") in ls
    ]
    assert len(lag) == next(t.partitions for t in TOPICS if t.name == "applications.events")
    # The Temporal SDK's own runtime metrics come with the worker's.
    assert value(after["worker"], "temporal_workflow_task_execution_latency_count") > 0
    assert application_id  # the journey's application


async def test_workflow_runs_completed_and_failed_are_counted(stack: Stack) -> None:
    before = await stack.scrape()
    # Completed: an application of a sector the program does not fund is rejected at
    # eligibility, and its run returns.
    rejected, _token = await submit(stack, content(proposal__sector="other"))
    # Failed: a run Temporal is asked to cancel while it waits for its reviewers.
    cancelled, _token = await submit(stack)
    temporal = await Client.connect(stack.temporal)

    async def status(workflow_id: str) -> WorkflowExecutionStatus | None:
        try:
            return (await temporal.get_workflow_handle(workflow_id).describe()).status
        except RPCError:
            return None  # not started yet

    async def running() -> bool:
        return await status(cancelled) is WorkflowExecutionStatus.RUNNING

    await eventually(running, timeout=60)
    await temporal.get_workflow_handle(cancelled).cancel()

    def delta(after: dict[str, Samples], name: str) -> float:
        return value(after["worker"], name) - value(before["worker"], name)

    after: dict[str, Samples] = {}

    async def ended() -> bool:
        after.update(await stack.scrape())
        return (
            delta(after, "incentives_workflows_completed_total") >= 1
            and delta(after, "incentives_workflows_failed_total") >= 1
        )

    await eventually(ended, timeout=90)
    assert await status(rejected) is WorkflowExecutionStatus.COMPLETED
    assert await status(cancelled) is WorkflowExecutionStatus.CANCELED
    # Only this test's runs ended; the earlier tests' runs still wait for their reviewers.
    assert delta(after, "incentives_workflows_started_total") == 2
    assert delta(after, "incentives_workflows_completed_total") == 1
    # At least once: the SDK's meter counts again when the workflow task that ended a run is
    # retried (its completion not committed), and one full run counted the cancellation twice.
    assert delta(after, "incentives_workflows_failed_total") >= 1
    labelled = value(
        after["worker"], "incentives_workflows_failed_total", workflow_type="IncentiveApproval"
    ) - value(
        before["worker"], "incentives_workflows_failed_total", workflow_type="IncentiveApproval"
    )
    assert labelled == delta(after, "incentives_workflows_failed_total")


async def assert_nowhere(
    stack: Stack, forbidden: Sequence[str], attribute_words: Sequence[str]
) -> None:
    """None of ``forbidden`` in any exposition or span; no span attribute named after a word."""
    exposition = await stack.texts()
    for secret in forbidden:
        assert secret not in exposition, secret[:8]
    for span in stack.spans.get_finished_spans():
        attributes = {**(span.attributes or {}), **span.resource.attributes}
        for event in span.events:
            attributes.update(event.attributes or {})
        text = " ".join(f"{k}={v}" for k, v in attributes.items())
        for secret in forbidden:
            assert secret not in text, (span.name, secret[:8])
        names = [k.lower() for k in attributes]
        assert not any(word in k for k in names for word in attribute_words), span.name


@dataclass
class PortalSession:
    """A firm signed in to the portal: its cookie, CSRF token and bearer token."""

    firm: str
    cookie: str
    csrf: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Cookie": f"{SESSION_COOKIE}={self.cookie}"}


def portal_session() -> PortalSession:
    """A firm's session, sealed as the portal seals it after a sign-in."""
    firm = new_firm()
    principal = Principal(sub=f"dev@{firm}.example", role=Role.FIRM, firm_id=firm)
    token = TOKENS.issue(principal)
    csrf = secrets.token_urlsafe(32)
    session = {"principal": principal.model_dump(mode="json"), "token": token, "csrf": csrf}
    cookie = Fernet(session_key(PORTAL_SECRET)).encrypt(json.dumps(session).encode()).decode()
    return PortalSession(firm, cookie, csrf, token)


def _scope(span: ReadableSpan) -> str:
    return span.instrumentation_scope.name if span.instrumentation_scope is not None else ""


async def test_a_submission_through_the_portal_is_one_trace_from_the_page_request(
    stack: Stack,
) -> None:
    session = portal_session()
    draft = await stack.applications.post(
        "/v1/applications",
        json=content(),
        headers={"Authorization": f"Bearer {session.token}"},
    )
    assert draft.status_code == 201, draft.text
    application_id = draft.json()["id"]

    submitted = await stack.portal.post(
        f"/applications/{application_id}/submit",
        data={"csrf_token": session.csrf},
        headers=session.headers,
    )
    assert submitted.status_code == 303, submitted.text
    assert submitted.headers["location"] == f"/applications/{application_id}"

    def consumed() -> list[ReadableSpan]:
        return [
            s
            for s in stack.spans.get_finished_spans()
            if s.name == "applications.events process"
            and (s.attributes or {}).get("incentives.subject") == application_id
        ]

    async def eligibility_consumed() -> bool:
        return bool(consumed())

    await eventually(eligibility_consumed, timeout=60)
    trace_id = consumed()[0].context.trace_id  # type: ignore[union-attr]
    spans = _spans_of_trace(stack, trace_id)
    by_id = {s.context.span_id: s for s in spans}  # type: ignore[union-attr]
    roots = [s for s in spans if s.parent is None]
    assert [s.name for s in roots] == ["POST /applications/{application_id}/submit"]
    page = roots[0]
    assert _scope(page) == "opentelemetry.instrumentation.fastapi"
    # The page's call to the applications API: a client span under the page request, and the
    # API's server span under it.
    calls = [
        s
        for s in spans
        if _scope(s) == "opentelemetry.instrumentation.httpx"
        and s.parent is not None
        and s.parent.span_id == page.context.span_id  # type: ignore[union-attr]
    ]
    assert len(calls) == 1, [s.name for s in calls]
    api = [
        s
        for s in spans
        if s.name == "POST /v1/applications/{application_id}/submit" and s.parent is not None
    ]
    assert len(api) == 1
    assert api[0].parent.span_id == calls[0].context.span_id  # type: ignore[union-attr]
    # From there on, the journey as from any submission: the consumer continues the trace.
    for span in consumed():
        parent = span.parent
        assert parent is not None
        assert parent.trace_id == trace_id
    assert page.context.span_id in by_id  # type: ignore[union-attr]


async def test_the_portal_puts_no_session_cookie_token_or_code_in_spans_or_metrics(
    stack: Stack,
) -> None:
    session = portal_session()
    page = await stack.portal.get("/applications", headers=session.headers)
    assert page.status_code == 200, page.text  # the page called the applications API
    # An OpenID provider's redirect back, with an authorization code and state in the query.
    code, state = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    await stack.portal.get(
        "/sign-in/callback", params={"code": code, "state": state}, headers=session.headers
    )

    def page_spans() -> list[ReadableSpan]:
        return [
            s
            for s in stack.spans.get_finished_spans()
            if s.name in ("GET /applications", "GET /sign-in/callback")
        ]

    async def recorded() -> bool:
        return {s.name for s in page_spans()} == {"GET /applications", "GET /sign-in/callback"}

    await eventually(recorded, timeout=30)
    forbidden = (session.cookie, session.csrf, session.token, PORTAL_SECRET, code, state)
    callback = next(s for s in page_spans() if s.name == "GET /sign-in/callback")
    # The query's names stay, its values do not.
    assert "code=REDACTED" in str((callback.attributes or {}).get("http.url"))
    await assert_nowhere(stack, forbidden, ("authorization", "cookie"))


async def test_no_token_or_secret_in_metric_labels_or_span_attributes(stack: Stack) -> None:
    application_id, token = await submit(stack)

    async def traced() -> bool:
        return any(
            (s.attributes or {}).get("incentives.subject") == application_id
            for s in stack.spans.get_finished_spans()
        )

    await eventually(traced, timeout=60)
    await assert_nowhere(stack, (token, DEV_JWT_SECRET, "Bearer "), ("authorization",))
