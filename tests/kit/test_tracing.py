"""Tracing is off unless configured; when on, trace context goes into outbox headers, and a
republished row carries the same."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta

import pytest
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import catalog
from contracts.envelope import Actor, utcnow
from contracts.headers import MessageHeaders
from services.kit import tracing
from services.kit.db import create_session_factory
from services.kit.messaging import Record
from services.kit.outbox import OutboxRelay
from services.kit.uow import UnitOfWork, UnitOfWorkFactory


@pytest.fixture
def tracing_off_afterwards() -> Iterator[None]:
    yield
    tracing.use_provider(None)


def _envelope() -> object:
    payload = catalog.example_payloads("application.submitted")[0]
    return catalog.make_envelope(
        "application.submitted",
        payload,
        subject=payload.application_id,
        actor=Actor.system("tests"),
        producer="tests",
        correlation_id=uuid.uuid4(),
    )


def test_without_an_endpoint_nothing_is_traced() -> None:
    assert tracing.configure_tracing("incentives-test", None) is None
    assert not tracing.enabled()
    assert tracing.broker_middlewares() == []
    assert tracing.temporal_interceptors() == []
    row = UnitOfWork._outbox_row(_envelope(), "applications.events")  # type: ignore[arg-type]
    assert [name for name, _value in row["headers"]] == [
        name
        for name, _value in _envelope().headers()  # type: ignore[attr-defined]
    ]


@pytest.mark.usefixtures("tracing_off_afterwards")
def test_an_endpoint_turns_tracing_on_for_the_service() -> None:
    provider = tracing.configure_tracing("incentives-test", "http://127.0.0.1:9/")
    try:
        assert isinstance(provider, TracerProvider)
        assert tracing.enabled()
        assert provider.resource.attributes["service.name"] == "incentives-test"
    finally:
        assert provider is not None
        provider.shutdown()


@pytest.mark.usefixtures("tracing_off_afterwards")
def test_an_outbox_row_carries_the_writers_span_context() -> None:
    provider = TracerProvider()
    tracing.use_provider(provider)
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("request") as span:
        row = UnitOfWork._outbox_row(_envelope(), "applications.events")  # type: ignore[arg-type]
    headers = dict(row["headers"])
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert headers["traceparent"].split("-")[1] == trace_id
    # The headers contract knows the trace context headers.
    MessageHeaders.model_validate(headers)
    # Outside any span, nothing is added.
    plain = UnitOfWork._outbox_row(_envelope(), "applications.events")  # type: ignore[arg-type]
    assert "traceparent" not in dict(plain["headers"])


class _FlakyPublisher:
    """Keeps every record it was handed; the first send fails after the broker had it."""

    def __init__(self) -> None:
        self.attempts: list[list[Record]] = []

    async def __call__(self, records: Sequence[Record]) -> None:
        self.attempts.append(list(records))
        if len(self.attempts) == 1:
            raise TimeoutError("no acknowledgement: the broker may or may not have the batch")


def _traceparent(record: Record) -> str:
    return dict(record.headers)["traceparent"].decode()


@pytest.mark.usefixtures("tracing_off_afterwards")
async def test_a_republished_row_carries_the_trace_headers_it_was_written_with(
    sqlite_engine: AsyncEngine,
) -> None:
    provider = TracerProvider()
    tracing.use_provider(provider)
    tracer = provider.get_tracer("tests")
    sessions = create_session_factory(sqlite_engine)
    with tracer.start_as_current_span("request") as request:
        async with UnitOfWorkFactory(sessions)() as uow:
            uow.add_outbox(_envelope(), "applications.events")  # type: ignore[arg-type]
            await uow.commit()
    written = request.get_span_context()
    publisher = _FlakyPublisher()
    relay = OutboxRelay(sessions, publisher)

    # Each attempt runs in a span of its own, as a relay cycle inside a traced process would.
    with tracer.start_as_current_span("relay cycle 1"), pytest.raises(TimeoutError):
        await relay.run_once()
    with tracer.start_as_current_span("relay cycle 2") as second:
        assert await relay.run_once() == 1
    # The broker lost everything: the row is published a third time.
    await relay.republish_since(utcnow() - timedelta(minutes=1))
    with tracer.start_as_current_span("relay cycle 3"):
        assert await relay.run_once() == 1

    records = [batch[0] for batch in publisher.attempts]
    assert len(records) == 3
    first = _traceparent(records[0])
    assert [_traceparent(r) for r in records] == [first] * 3
    assert [r.headers for r in records[1:]] == [records[0].headers] * 2
    # The context is the writer's (the request's span), not any relay cycle's.
    _version, trace_id, span_id, _flags = first.split("-")
    assert trace_id == format(written.trace_id, "032x")
    assert span_id == format(written.span_id, "016x")
    assert trace_id != format(second.get_span_context().trace_id, "032x")


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (
            "https://portal.example/sign-in/callback?code=c0de&state=st4te",
            "https://portal.example/sign-in/callback?code=REDACTED&state=REDACTED",
        ),
        ("code=c0de&state=st4te", "code=REDACTED&state=REDACTED"),
        (
            "http://desk:8002/v1/candidates?stage=technical",
            "http://desk:8002/v1/candidates?stage=REDACTED",
        ),
        ("http://desk:8002/v1/candidates", "http://desk:8002/v1/candidates"),
        ("", ""),
    ],
)
def test_query_values_are_redacted_and_their_names_kept(text: str, redacted: str) -> None:
    assert tracing.redact_query(text) == redacted
