"""Prometheus metrics: one registry per service, the kit's metrics, and ``GET /metrics``.

Every service process exposes ``/metrics`` in the Prometheus text format, from the official
client (``prometheus_client``). What the kit measures for every service:

- HTTP: requests per route template, method and status, and their latency
  (``http_requests_total``, ``http_request_duration_seconds``; prometheus-fastapi-instrumentator);
- Kafka: FastStream's Prometheus middleware (``faststream_*``: messages received, processing
  time and exceptions per handler), and the kit's own outcome per record
  (``incentives_consumer_records_total{consumer,topic,outcome}``: processed, duplicate,
  ignored, dead_lettered);
- consumer lag per partition (``incentives_consumer_lag``) and dead letters held per ``.dlq``
  topic (``incentives_dlq_records``), both read from the broker when scraped;
- the outbox: rows waiting (``incentives_outbox_backlog``) and the time from commit to the
  broker's acknowledgement (``incentives_outbox_relay_latency_seconds``).

A service declares its domain metrics on :attr:`Metrics.registry` and, for values read from
its database, a scrape hook (:meth:`Metrics.on_scrape`) that sets them just before each scrape.

Labels are names from the code and the topic registry (routes as templates, topics, consumer
names, outcomes), never a path with ids, a token or a message body.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from contracts.envelope import utcnow
from services.kit.logging import get_logger

if TYPE_CHECKING:
    from services.kit.consumer import Outcome
    from services.kit.dlq import ConsumedRecord

log = get_logger(__name__)

#: Metric names of the kit start with this.
PREFIX = "incentives"
#: How long one scrape hook may take before the scrape goes on without it (seconds).
SCRAPE_HOOK_TIMEOUT = 3.0
#: Relay latency buckets (seconds): milliseconds when all is well, minutes during an outage.
RELAY_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

#: Relay latency observations per relay cycle at most (see :meth:`Metrics.observe_published`).
RELAY_LATENCY_SAMPLES = 16

#: A scrape hook: reads current values (a database, the broker) into the registry's gauges.
ScrapeHook = Callable[[], Awaitable[None]]
#: Another exposition to append to this one (e.g. the Temporal SDK's own endpoint).
ExtraSource = Callable[[], Awaitable[bytes]]


class Metrics:
    """One service's registry, with the metrics the kit keeps for every service."""

    def __init__(self, service: str) -> None:
        self.service = service
        # No `_created` series: they double the exposition and no dashboard uses them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        #: The service's own registry: several services can live in one (test) process.
        self.registry = CollectorRegistry(auto_describe=True)
        self.consumed = Counter(
            f"{PREFIX}_consumer_records",
            "Records consumed, by consumer, topic and outcome "
            "(processed, duplicate, ignored, dead_lettered).",
            ["consumer", "topic", "outcome"],
            registry=self.registry,
        )
        self.outbox_backlog = Gauge(
            f"{PREFIX}_outbox_backlog",
            "Outbox rows committed and not yet acknowledged by the broker.",
            registry=self.registry,
        )
        self.outbox_published = Counter(
            f"{PREFIX}_outbox_published_records",
            "Outbox rows published by the relay (republications included).",
            registry=self.registry,
        )
        self.relay_latency = Histogram(
            f"{PREFIX}_outbox_relay_latency_seconds",
            "Time from an outbox row's commit to the broker's acknowledgement of its record.",
            buckets=RELAY_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            f"{PREFIX}_consumer_lag",
            "Records not yet committed by a consumer group, per topic partition.",
            ["group", "topic", "partition"],
            registry=self.registry,
        )
        self.dlq_records = Gauge(
            f"{PREFIX}_dlq_records",
            "Dead letters the broker holds, per .dlq topic this service writes to.",
            ["topic"],
            registry=self.registry,
        )
        self._hooks: list[tuple[str, ScrapeHook]] = []
        self._extra: list[ExtraSource] = []

    # --- declaring -------------------------------------------------------------------------------

    def on_scrape(self, hook: ScrapeHook, *, name: str | None = None) -> ScrapeHook:
        """Run ``hook`` before every scrape (with a timeout; a failing hook is logged, skipped)."""
        self._hooks.append((name or str(getattr(hook, "__qualname__", "hook")), hook))
        return hook

    def append_exposition(self, source: ExtraSource) -> None:
        """Append ``source``'s text exposition to every scrape (its families must not clash)."""
        self._extra.append(source)

    # --- recording (hot paths: one call per batch) -----------------------------------------------

    def observe_outcomes(
        self, consumer: str, records: Sequence[ConsumedRecord], outcomes: Sequence[Outcome]
    ) -> None:
        """Count a batch's outcomes per topic (one increment per distinct pair)."""
        tally = Tally(zip([r.topic for r in records], outcomes, strict=True))
        for (topic, outcome), count in tally.items():
            self.consumed.labels(consumer, topic, outcome.value).inc(count)

    def observe_published(self, created: Sequence[datetime]) -> None:
        """Record the relay latency of rows just acknowledged, from their commit times.

        A relay cycle publishes up to a thousand rows, and one histogram observation costs
        microseconds: at most :data:`RELAY_LATENCY_SAMPLES` rows per cycle are observed, evenly
        spaced from the oldest to the newest (the counter counts them all).
        """
        count = len(created)
        if not count:
            return
        now = utcnow()
        observe = self.relay_latency.observe
        if count <= RELAY_LATENCY_SAMPLES:
            sample: Iterable[datetime] = created
        else:
            last = RELAY_LATENCY_SAMPLES - 1
            sample = [created[i * (count - 1) // last] for i in range(RELAY_LATENCY_SAMPLES)]
        for created_at in sample:
            observe((now - created_at).total_seconds())
        self.outbox_published.inc(count)

    # --- exposing --------------------------------------------------------------------------------

    async def render(self) -> bytes:
        """Run the scrape hooks, then the exposition of the registry and the extra sources."""
        await asyncio.gather(*(self._run_hook(name, hook) for name, hook in self._hooks))
        parts = [generate_latest(self.registry)]
        for source in self._extra:
            try:
                async with asyncio.timeout(SCRAPE_HOOK_TIMEOUT):
                    parts.append(await source())
            except Exception as exc:
                log.warning("metrics source unavailable", error=f"{type(exc).__name__}: {exc}")
        return b"".join(parts)

    @staticmethod
    async def _run_hook(name: str, hook: ScrapeHook) -> None:
        try:
            async with asyncio.timeout(SCRAPE_HOOK_TIMEOUT):
                await hook()
        except Exception as exc:
            # The scrape goes on with the last values; the next one tries again.
            log.warning(
                "metrics scrape hook failed", hook=name, error=f"{type(exc).__name__}: {exc}"
            )


#: One exposition, as (sample name, labels) -> value.
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_exposition(text: str) -> Samples:
    """Every sample of a text exposition, by name and labels (the Prometheus client's parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample_total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def metrics_router(metrics: Metrics) -> APIRouter:
    """``GET /metrics``: the Prometheus text exposition (no token needed, like ``/health``)."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def scrape(_request: Request) -> Response:
        return Response(await metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router


def instrument_http(app: FastAPI, metrics: Metrics) -> None:
    """Count and time the app's requests per route template, method and status code."""
    from prometheus_fastapi_instrumentator import Instrumentator
    from prometheus_fastapi_instrumentator import metrics as http_metrics

    instrumentator = Instrumentator(
        should_group_status_codes=False,
        # A path no route matched is labelled "none": raw paths would carry ids.
        should_ignore_untemplated=False,
        should_group_untemplated=True,
        excluded_handlers=["/metrics", "/health"],
        registry=metrics.registry,
    )
    instrumentator.add(
        http_metrics.requests(registry=metrics.registry),
        http_metrics.latency(registry=metrics.registry),
    )
    instrumentator.instrument(app)


def observe_app(app: FastAPI, metrics: Metrics) -> None:
    """``/metrics``, the HTTP metrics and (when tracing is on) request spans for ``app``.

    Call it after the app's own middlewares are added, so refused requests count too.
    """
    from services.kit import tracing

    app.include_router(metrics_router(metrics))
    instrument_http(app, metrics)
    tracing.instrument_app(app)


class KafkaGauges:
    """Consumer lag and dead letters held, read from the broker when the service is scraped.

    A group-less reader (end offsets) and, per consumer group, a client that only reads the
    group's committed offsets (it never subscribes, so it never joins the group), started at
    the first scrape and kept (a scrape every few seconds should not open connections each
    time), stopped with the service. (The admin client's offset fetch is one Tansu refuses.)
    """

    def __init__(
        self,
        metrics: Metrics,
        bootstrap: str,
        groups: Callable[[], Iterable[tuple[str, Sequence[str]]]],
        dead_letter_topics: Callable[[], Iterable[str]],
    ) -> None:
        self._metrics = metrics
        self._bootstrap = bootstrap
        self._groups = groups
        self._dlq_topics = dead_letter_topics
        self._committed: dict[str, Any] = {}
        self._reader: Any = None
        self._lock = asyncio.Lock()

    async def _reader_client(self) -> Any:
        from services.kit.messaging import topic_reader

        if self._reader is None:
            reader = topic_reader(self._bootstrap)
            await reader.start()
            self._reader = reader
        return self._reader

    async def _group_client(self, group: str) -> Any:
        from aiokafka import AIOKafkaConsumer

        client = self._committed.get(group)
        if client is None:
            client = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=group,
                enable_auto_commit=False,
                request_timeout_ms=5000,
            )
            await client.start()
            self._committed[group] = client
        return client

    async def scrape(self) -> None:
        """Set the lag and dead-letter gauges from the broker's offsets."""
        from aiokafka import TopicPartition

        from services.kit.messaging import topic_partitions

        async with self._lock:
            try:
                reader = await self._reader_client()
                dlq = sorted(set(self._dlq_topics()))
                partitions = [
                    TopicPartition(topic, p)
                    for topic in dlq
                    for p in sorted(await topic_partitions(reader, topic, within=0.5))
                ]
                if partitions:
                    ends = await reader.end_offsets(partitions)
                    starts = await reader.beginning_offsets(partitions)
                    held: Tally[str] = Tally()
                    for tp in partitions:
                        held[tp.topic] += ends[tp] - starts[tp]
                    for topic in dlq:
                        self._metrics.dlq_records.labels(topic).set(held[topic])
                for group, topics in self._groups():
                    owned = [
                        TopicPartition(topic, p)
                        for topic in topics
                        for p in sorted(await topic_partitions(reader, topic, within=0.5))
                    ]
                    if not owned:
                        continue
                    client = await self._group_client(group)
                    ends = await reader.end_offsets(owned)
                    for tp in owned:
                        # None: nothing committed yet, so every record is still to be read.
                        offset = await client.committed(tp)
                        lag = ends[tp] - (offset or 0)
                        self._metrics.consumer_lag.labels(group, tp.topic, str(tp.partition)).set(
                            max(lag, 0)
                        )
            except Exception:
                await self.stop()  # reconnect at the next scrape
                raise

    async def stop(self) -> None:
        """Close the clients (idempotent)."""
        clients, self._committed = list(self._committed.values()), {}
        reader, self._reader = self._reader, None
        if reader is not None:
            clients.append(reader)
        for client in clients:
            with contextlib.suppress(Exception):
                await client.stop()
