"""Traces: OpenTelemetry through the instrumentations the libraries ship, carried across Kafka.

One application's journey is one trace: the FastAPI instrumentation opens the request's span
(continuing the caller's, when the portal or another service calls with an httpx client traced
by :func:`instrument_client`);
the unit of work writes that span's W3C ``traceparent`` (and ``tracestate``) into the headers of
every outbox row it stages, so the record carries it to the next consumer however late the relay
publishes it; the kit's consumers open each message's span as a child of the context in its
headers (FastStream's telemetry middleware adds one span per polled batch, linked to every
message in it); Temporal's ``TracingInterceptor`` carries the context from the bridge's
signal-with-start into the workflow and its activities, and the publish activity writes it
into the records it sends.

Tracing is on when the kit has a tracer provider: :func:`configure_tracing` installs one that
exports by OTLP/HTTP when ``INCENTIVES_OTLP_ENDPOINT`` is set, and tests install one with an
in-memory exporter (:func:`use_provider`). Without one, nothing is recorded, exported or written
into headers, and the hot paths skip every tracing step: a service checks :func:`enabled` once,
when it is wired.

Spans carry routing facts only (topic, partition, offset, event id, message type, consumer):
never a token, a secret or a message body. The HTTP spans are the ASGI instrumentation's, which
records no request header unless told to by its ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*``
variables; the kit never sets them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from services.kit.logging import get_logger

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI

    from services.kit.consumer import Handler, Incoming
    from services.kit.uow import UnitOfWork

log = get_logger(__name__)

#: The instrumentation scope of the kit's own spans.
TRACER_NAME = "incentives.kit"
#: The headers trace context travels in (W3C Trace Context), in the order they are written.
TRACE_HEADERS = ("traceparent", "tracestate")
#: Paths whose requests are not traced: probes and scrapes, many per minute, of no interest.
UNTRACED_PATHS = "/health,/metrics"


_provider: TracerProvider | None = None


def enabled() -> bool:
    """Whether this process records spans (the kit has a tracer provider)."""
    return _provider is not None


def provider() -> TracerProvider | None:
    """The kit's tracer provider, when tracing is on."""
    return _provider


def use_provider(tracer_provider: TracerProvider | None) -> None:
    """Record the process's spans with ``tracer_provider`` (None: tracing off again).

    Services wired afterwards are traced; those wired before keep what they had.
    """
    global _provider
    _provider = tracer_provider


def configure_tracing(service_name: str, otlp_endpoint: str | None) -> TracerProvider | None:
    """Install the process's tracer provider, exporting by OTLP/HTTP to ``otlp_endpoint``.

    No endpoint, no provider: the process records and exports nothing. Returns the provider
    (shut it down at exit to flush the last spans), or None.
    """
    if not otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    tracer_provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    endpoint = otlp_endpoint.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint = f"{endpoint}/v1/traces"
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    use_provider(tracer_provider)
    log.info("traces exported by OTLP", endpoint=endpoint)
    return tracer_provider


def _tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME, tracer_provider=_provider)


def trace_headers() -> list[tuple[str, str]]:
    """The current span's context as ``(name, value)`` headers; empty when there is none."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(name, carrier[name]) for name in TRACE_HEADERS if name in carrier]


def context_from_headers(headers: Iterable[tuple[str, bytes]]) -> otel_context.Context:
    """The trace context a record's headers carry (an empty context when they carry none)."""
    carrier = {name: value.decode("latin-1") for name, value in headers if name in TRACE_HEADERS}
    return propagate.extract(carrier)


def stable_parent_headers() -> list[tuple[str, str]]:
    """Trace headers naming the current span's *parent*, for records a retry may resend.

    Temporal's interceptor opens a new span per activity attempt under the one span the
    workflow scheduled it with; naming that parent keeps the headers of a retried publish
    byte-identical (the audit log appends a republished record once).
    """
    if _provider is None:
        return []
    span = trace.get_current_span()
    parent = getattr(span, "parent", None)
    if not isinstance(parent, trace.SpanContext) or not parent.is_valid:
        return trace_headers()
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(trace.NonRecordingSpan(parent)))
    return [(name, carrier[name]) for name in TRACE_HEADERS if name in carrier]


def add_trace_headers(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` plus the current trace context when tracing is on (none added twice)."""
    if _provider is None:
        return list(headers)
    names = {name for name, _value in headers}
    return [*headers, *((k, v) for k, v in trace_headers() if k not in names)]


class TracedHandler:
    """A consumer handler whose every message runs in a span continuing the record's trace.

    Keeps the wrapped handler's ``preload`` (a :class:`~services.kit.consumer.BatchHandler`).
    """

    def __init__(self, handler: Handler, consumer: str) -> None:
        self._handler = handler
        self._consumer = consumer
        self._tracer = _tracer()
        preload = getattr(handler, "preload", None)
        if callable(preload):
            self.preload = preload

    async def __call__(self, incoming: Incoming, uow: UnitOfWork) -> None:
        record = incoming.record
        envelope = incoming.envelope
        with self._tracer.start_as_current_span(
            f"{record.topic} process",
            context=context_from_headers(record.headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": record.topic,
                "messaging.destination.partition.id": str(record.partition),
                "messaging.kafka.offset": record.offset,
                "messaging.consumer.group.name": self._consumer,
                "messaging.message.id": str(envelope.event_id),
                "incentives.message.type": envelope.type,
                "incentives.subject": envelope.subject,
            },
        ):
            await self._handler(incoming, uow)


def traced(handler: Handler, consumer: str) -> Handler:
    """``handler`` in a span per message when tracing is on; ``handler`` itself otherwise."""
    return TracedHandler(handler, consumer) if enabled() else handler


#: Span attributes that may hold a URL's query (old and new HTTP semantic conventions).
_QUERY_ATTRIBUTES = ("http.url", "url.full", "url.query")
#: What a query parameter's value becomes in a span.
REDACTED = "REDACTED"


def redact_query(text: str) -> str:
    """``text`` (a URL or a bare query) with every query value replaced, the names kept.

    An OpenID callback's ``code`` and ``state``, a search term: a query value may be a
    credential or personal data, and a span needs only the names.
    """
    url = urlsplit(text)
    bare = not (url.scheme or url.netloc or url.path) or "=" in url.path
    query = text if bare else url.query
    if not query:
        return text
    names = [part.split("=", 1)[0] for part in query.split("&") if part]
    redacted = "&".join(f"{name}={REDACTED}" for name in names)
    return redacted if bare else urlunsplit(url._replace(query=redacted, fragment=""))


def _redact_span_query(span: trace.Span) -> None:
    attributes = getattr(span, "attributes", None) or {}
    for name in _QUERY_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str) and value:
            span.set_attribute(name, redact_query(value))


def _server_request_hook(span: trace.Span, scope: dict[str, Any]) -> None:
    if span.is_recording() and scope.get("query_string"):
        _redact_span_query(span)


def _client_request_hook(span: trace.Span, request: Any) -> None:
    if span.is_recording() and getattr(request, "url", None) is not None and request.url.query:
        _redact_span_query(span)


async def _async_client_request_hook(span: trace.Span, request: Any) -> None:
    _client_request_hook(span, request)


def instrument_app(app: FastAPI) -> None:
    """Trace the app's requests with OpenTelemetry's FastAPI instrumentation, when tracing is on.

    Query values are redacted from the spans (:func:`redact_query`).
    """
    if not enabled():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider,
        excluded_urls=UNTRACED_PATHS,
        server_request_hook=_server_request_hook,
    )


def instrument_client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """``client``, its requests traced when tracing is on (OpenTelemetry's httpx instrumentation).

    Each request gets a client span, and its context goes out in the ``traceparent`` header, so
    the service called continues the caller's trace. The span records the method, the URL
    (credentials and query values redacted) and the status; no header unless the
    ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*`` variables ask for it (the kit sets none).
    """
    if enabled():
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.instrument_client(
            client, tracer_provider=_provider, request_hook=_async_client_request_hook
        )
    return client


def broker_middlewares() -> list[Any]:
    """FastStream's telemetry middleware for the service's broker, when tracing is on."""
    if not enabled():
        return []
    from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

    return [KafkaTelemetryMiddleware(tracer_provider=_provider)]


def temporal_interceptors() -> list[Any]:
    """Temporal's tracing interceptor for a client (and the worker using it), when tracing is on."""
    if not enabled():
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(_tracer())]
