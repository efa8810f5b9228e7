"""Tracing is off unless configured; when on, trace context goes into outbox headers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from contracts import catalog
from contracts.envelope import Actor
from contracts.headers import MessageHeaders
from services.kit import tracing
from services.kit.uow import UnitOfWork


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
