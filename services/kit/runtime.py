"""A service's composition root, and the runner every ``main()`` calls.

:class:`Service` owns what one service process needs: the database engine and unit-of-work
factory, the FastStream broker with its idempotent subscribers, a Kafka producer shared by the
outbox relay and the dead-letter path, the relay itself and the token verifier. It builds the
FastAPI app whose lifespan starts and stops all of it:

1. wait for the database (one log line while it is down), migrate it to head;
2. in the background: wait for the broker (one log line), start the producer, the subscribers
   and the relay; republish the outbox to a broker this service has not published to, and keep
   checking for one (:class:`~services.kit.republish.BrokerEpoch`); ``/health`` answers 503
   until this is done, so the HTTP port is up early;
3. the service's own start hooks (:meth:`Service.on_start`), in the order they were added;
4. on shutdown (SIGTERM/SIGINT via uvicorn): the stop hooks (:meth:`Service.on_stop`) in
   reverse order, then stop consuming, stop the relay, flush and stop the producer, dispose of
   the engine.

Its app refuses, before reading the body, a request without a valid token and a body over
``max_request_bytes`` (:class:`services.kit.http.RequestGate`).

:func:`run_service` turns a settings class and a ``create_app`` into a blocking ``main``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from pydantic import ValidationError

from services.kit import tracing
from services.kit.asyncapi import Receives, Sends, asyncapi_router, build_document
from services.kit.auth import install_token_service, token_service
from services.kit.consumer import (
    DEFAULT_BATCH_TIMEOUT_MS,
    DEFAULT_LANES,
    DEFAULT_MAX_RECORDS,
    Handler,
    IdempotentConsumer,
    subscribe,
)
from services.kit.db import (
    create_engine,
    create_session_factory,
    is_sqlite,
    ping,
    wait_for_database,
)
from services.kit.dlq import dlq_topic
from services.kit.errors import DependencyUnavailable
from services.kit.health import Check, Waits, health_router
from services.kit.http import NulGate, RequestGate, install_openapi
from services.kit.logging import configure_logging, get_logger
from services.kit.messaging import (
    METADATA_MAX_AGE_MS,
    Record,
    create_producer,
    forbid_topic_auto_creation,
    send_all,
    wait_for_broker,
)
from services.kit.metrics import KafkaGauges, Metrics, observe_app
from services.kit.migrations import upgrade_to_head
from services.kit.outbox import OutboxRelay
from services.kit.problems import install_problem_handlers
from services.kit.republish import BrokerEpoch
from services.kit.retry import RetryPolicy, wait_until_available
from services.kit.settings import ServiceSettings
from services.kit.uow import UnitOfWorkFactory

log = get_logger(__name__)

S = TypeVar("S", bound=ServiceSettings)

#: A start or stop hook: a callable of no arguments, async or not.
Hook = Callable[[], object]


async def _run_hook(hook: Hook) -> None:
    result = hook()
    if inspect.isawaitable(result):
        await result


#: Records per batch on SQLite (see :meth:`Service.consume`). A batch's statements and its
#: commit are paid once per batch, so larger batches raise the rate; but the process's one
#: connection is held for the batch, so requests and the relay wait up to one batch (at
#: about 0.35 ms of CPU per message, some 45 ms at 128). Measured on the kit hop
#: (`make bench`, 2 cores): 64 records 0.18-0.22x the raw hop, 128 0.21-0.27x, 256 0.28x.
SQLITE_MAX_RECORDS = 128

#: Collector thresholds for service processes (CPython's default is 700, 10, 10). A consumer
#: batch keeps hundreds of messages' objects alive for a few milliseconds; with the default
#: young-generation threshold they survive into the old generation and trigger full
#: collections, which scan every object of the process (measured: ~18% of a busy consumer's
#: time). A larger young generation lets them die young.
GC_THRESHOLDS = (20_000, 20, 20)


def tune_garbage_collector() -> tuple[int, int, int]:
    """Tune the cyclic garbage collector of a service process; returns the previous thresholds.

    Collects once, freezes what exists (modules, models, the app: never garbage, so full
    collections stop rescanning them) and applies :data:`GC_THRESHOLDS`. Call it once, after
    the app is built; :func:`run_service` does.
    """
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return previous


class Service:
    """Everything one service process owns. Create it in ``create_app``; never at import time."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        migrations: Path,
        version: str = "0.1.0",
        retry: RetryPolicy | None = None,
        relay_poll_interval: float = 0.5,
        reconnect_interval: float = 1.0,
    ) -> None:
        self.name = settings.service_name
        self.settings = settings
        self.migrations = migrations
        self.version = version
        self.retry = retry or RetryPolicy()
        self.reconnect_interval = reconnect_interval

        #: The service's Prometheus registry and the kit's metrics (``GET /metrics``).
        self.metrics = Metrics(self.name)
        self.engine = create_engine(settings.database_url)
        self.session_factory = create_session_factory(self.engine)
        # A broker this service has not published to gets the whole outbox (Tansu forgets all).
        self.epoch = BrokerEpoch(
            self.name,
            settings.kafka_bootstrap,
            session_factory=self.session_factory,
            publish=self.publish,
        )
        self.relay = OutboxRelay(
            self.session_factory,
            self.epoch.publish_outbox,
            poll_interval=relay_poll_interval,
            on_published=self.metrics.observe_published,
            guard=self.epoch.batch,
        )
        self.epoch.attach(self.relay)
        self.uow = UnitOfWorkFactory(self.session_factory, on_outbox_committed=self.relay.wake)
        self.broker = KafkaBroker(
            settings.kafka_bootstrap,
            client_id=f"incentives-{self.name}",
            acks="all",
            enable_idempotence=False,  # Tansu rejects InitProducerId; the outbox gives safety
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
            # FastStream logs every message at this level; per-message lines are debug material.
            log_level=logging.DEBUG,
            # A plain stdlib logger, so FastStream's lines reach the JSON handler like ours.
            logger=logging.getLogger(f"faststream.{self.name}"),
            middlewares=[
                KafkaPrometheusMiddleware(registry=self.metrics.registry, app_name=self.name),
                *tracing.broker_middlewares(),
            ],
        )
        self.tokens = token_service(settings)
        self.consumers: list[IdempotentConsumer] = []
        self.receives: list[Receives] = []
        self.sent: list[Sends] = []
        self.extra_checks: dict[str, Check] = {}
        #: What this process waits for right now (its consumers', and any job's that reports).
        self.waits = Waits()
        self._producer: AIOKafkaProducer | None = None
        self._connector: asyncio.Task[None] | None = None
        self._broker_started = False
        self._start_hooks: list[Hook] = []
        self._stop_hooks: list[Hook] = []
        self.ready = asyncio.Event()
        self._kafka_gauges = KafkaGauges(
            self.metrics,
            settings.kafka_bootstrap,
            groups=lambda: [(r.group_id, self._read_topics(r)) for r in self.receives],
            dead_letter_topics=lambda: [
                dlq_topic(t) for r in self.receives if r.dead_letters for t in r.topics
            ],
        )
        self.metrics.on_scrape(self._scrape_kit, name="kit")

    # --- wiring ----------------------------------------------------------------------------------

    def consume(
        self,
        *topics: str,
        handler: Handler,
        name: str | None = None,
        types: Collection[str] | None = None,
        group_id: str | None = None,
        description: str | None = None,
        max_records: int | None = None,
        batch_timeout_ms: int = DEFAULT_BATCH_TIMEOUT_MS,
        lanes: int | None = None,
        dead_letters_of: bool = False,
    ) -> IdempotentConsumer:
        """Subscribe ``handler`` idempotently to ``topics``.

        ``name`` is the deduplication scope and, by default, the consumer group (default: the
        service name). ``types`` restricts which message types reach the handler. Records are
        handled in batches of up to ``max_records`` (one transaction and one offset commit per
        batch; ``1`` handles each message in a transaction of its own), and an idle poll waits
        ``batch_timeout_ms`` for records. ``lanes`` partitions of a batch are handled
        concurrently, each in its own transaction. With ``dead_letters_of`` the consumer reads
        the ``.dlq`` twins of ``topics`` instead (each dead letter's value is the original
        record, so the handler sees its envelope and ``incoming.record.headers`` the ``dlq.*``).

        Defaults depend on the database. PostgreSQL: :data:`DEFAULT_MAX_RECORDS` records,
        :data:`DEFAULT_LANES` lanes. SQLite: :data:`SQLITE_MAX_RECORDS` records and one lane:
        the process has one connection, so a batch's transaction makes HTTP requests and the
        relay wait for it; smaller batches keep that wait short.
        """
        sqlite = is_sqlite(self.settings.database_url)
        consumer_name = name or self.name
        consumer = IdempotentConsumer(
            consumer_name,
            tracing.traced(handler, consumer_name),
            uow_factory=self.uow,
            dead_letters=self.publish,
            types=types,
            retry=self.retry,
            lanes=lanes or (1 if sqlite else DEFAULT_LANES),
            waits=self.waits,
        )
        group = group_id or f"{self.settings.consumer_group_prefix}{consumer_name}"
        subscribe(
            self.broker,
            consumer,
            *(dlq_topic(t) for t in topics) if dead_letters_of else topics,
            group_id=group,
            description=description,
            max_records=max_records or (SQLITE_MAX_RECORDS if sqlite else DEFAULT_MAX_RECORDS),
            batch_timeout_ms=batch_timeout_ms,
            observe=partial(self.metrics.observe_outcomes, consumer_name),
        )
        # The AsyncAPI document lists the topics' every type and their .dlq twins from this.
        self.receives.append(
            Receives(
                consumer=consumer_name,
                group_id=group,
                topics=tuple(topics),
                handled=None if types is None else frozenset(types),
                description=description,
                dead_letters=not dead_letters_of,
                reads_dead_letters=dead_letters_of,
                reads_topics=not dead_letters_of,
            )
        )
        self.consumers.append(consumer)
        return consumer

    def on_start(self, hook: Hook) -> Hook:
        """Run ``hook`` at start-up, once the database is migrated (hooks run in order).

        A hook that fails stops the start-up. Usable as a decorator.
        """
        self._start_hooks.append(hook)
        return hook

    def on_stop(self, hook: Hook) -> Hook:
        """Run ``hook`` at shutdown, before the kit stops its parts (hooks run in reverse)."""
        self._stop_hooks.append(hook)
        return hook

    def sends(
        self,
        topic: str,
        types: Collection[str],
        *,
        producer: str | None = None,
        description: str | None = None,
    ) -> None:
        """Declare that this process publishes ``types`` on ``topic`` (for its AsyncAPI document).

        ``producer`` is the envelope ``producer`` the messages carry (default: the service
        name). Publishing itself goes through the outbox or :meth:`publish`; this only documents.
        """
        self.sent.append(
            Sends(
                topic=topic,
                types=tuple(types),
                producer=producer or self.name,
                description=description,
            )
        )

    def asyncapi_document(self, *, title: str, description: str | None = None) -> dict[str, Any]:
        """The AsyncAPI 3.0 document of this process, from its ``consume`` and ``sends`` calls."""
        return build_document(
            title=title,
            version=self.version,
            description=description,
            receives=self.receives,
            sends=self.sent,
        )

    async def publish(self, records: Sequence[Record]) -> None:
        """Send records with the shared producer (outbox relay and dead letters)."""
        producer = self._producer
        if producer is None:
            raise DependencyUnavailable(f"broker {self.settings.kafka_bootstrap} not connected")
        await send_all(producer, records)

    def create_app(
        self,
        *,
        title: str,
        description: str,
        routers: Sequence[APIRouter] = (),
        **fastapi_kwargs: Any,
    ) -> FastAPI:
        """The service's FastAPI app: routers, /health, /asyncapi, problem handlers, lifespan.

        Every request passes the kit's :class:`~services.kit.http.RequestGate` (token and body
        size, before the body) and :class:`~services.kit.http.NulGate` (no U+0000 in any
        field), and the OpenAPI document declares the kit's error responses.
        """
        app = FastAPI(
            title=title,
            description=description,
            version=self.version,
            lifespan=self.lifespan,
            **fastapi_kwargs,
        )
        install_problem_handlers(app)
        install_token_service(app, self.tokens)
        app.state.service = self
        # A provider, not a snapshot: checks added after create_app (e.g. Temporal) count too.
        app.include_router(health_router(self.name, self.health_checks, waits=self.waits))
        app.include_router(
            asyncapi_router(lambda: self.asyncapi_document(title=title, description=description))
        )
        for router in routers:
            app.include_router(router)
        # The last added runs first: credentials and size, then the NUL character.
        app.add_middleware(NulGate)
        app.add_middleware(
            RequestGate, tokens=self.tokens, max_body_bytes=self.settings.max_request_bytes
        )
        # Outside the gate, so refused requests (401, 413) are counted and traced too.
        observe_app(app, self.metrics)
        install_openapi(app)
        return app

    # --- metrics ---------------------------------------------------------------------------------

    @staticmethod
    def _read_topics(receives: Receives) -> tuple[str, ...]:
        topics = receives.topics if receives.reads_topics else ()
        if receives.reads_dead_letters:
            topics = (*topics, *(dlq_topic(t) for t in receives.topics))
        return topics

    async def _scrape_kit(self) -> None:
        """The outbox backlog, and (once the broker is up) consumer lag and dead letters held."""
        self.metrics.outbox_backlog.set(await self.relay.pending())
        if self._broker_started:
            await self._kafka_gauges.scrape()

    # --- health ----------------------------------------------------------------------------------

    def health_checks(self) -> dict[str, Check]:
        """Database, broker and relay checks, plus any in :attr:`extra_checks`."""

        async def database() -> str | None:
            await ping(self.engine)
            return None

        async def broker() -> str | None:
            if not self._broker_started:
                raise DependencyUnavailable(
                    f"broker {self.settings.kafka_bootstrap} not reachable yet"
                )
            if not await self.broker.ping(timeout=1.5):
                raise DependencyUnavailable(f"broker {self.settings.kafka_bootstrap} not answering")
            return None

        async def outbox_relay() -> str | None:
            if not self.relay.running:
                raise DependencyUnavailable("outbox relay not running")
            return f"{await self.relay.pending()} pending"

        return {
            "database": database,
            "broker": broker,
            "outbox_relay": outbox_relay,
            **self.extra_checks,
        }

    # --- lifecycle -------------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        """Start everything (the broker side in the background) and stop it all on exit."""
        await self.start()
        try:
            for hook in self._start_hooks:
                await _run_hook(hook)
            yield
        finally:
            # Every stop hook runs, also after a failed start: stop hooks must be safe to run
            # when their start hook did not (stopping what never started is a no-op).
            await self._run_stop_hooks()
            await self.stop()

    async def _run_stop_hooks(self) -> None:
        for hook in reversed(self._stop_hooks):
            try:
                await _run_hook(hook)
            except Exception:
                log.exception("stop hook failed", hook=getattr(hook, "__qualname__", repr(hook)))

    async def start(self) -> None:
        """Migrate the database, then connect to the broker in the background."""
        await wait_for_database(self.engine, interval=self.reconnect_interval)
        await upgrade_to_head(self.engine, self.migrations)
        log.info("database migrated", database=self.engine.url.render_as_string(hide_password=True))
        self._connector = asyncio.create_task(self._connect(), name=f"{self.name}-connect")
        self._connector.add_done_callback(self._connector_done)

    def _connector_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("broker connection task failed", exc_info=task.exception())

    async def _connect(self) -> None:
        bootstrap = self.settings.kafka_bootstrap

        async def start_broker_side() -> None:
            await wait_for_broker(bootstrap, interval=self.reconnect_interval)
            producer = create_producer(bootstrap, client_id=f"incentives-{self.name}")
            self._producer = producer  # set early so stop() flushes it even mid-start
            try:
                await producer.start()
                # Subscribers wait for their topics, and no client here creates one by naming it.
                await self.epoch.create_topics()
                await self.broker.start()
            except Exception:
                # Reachable but not ready (still starting, or restarting): undo, try again.
                with contextlib.suppress(Exception):
                    await self.broker.stop()
                with contextlib.suppress(Exception):
                    await producer.stop()
                self._producer = None
                raise

        await wait_until_available(
            start_broker_side,
            name=f"broker {bootstrap}",
            interval=self.reconnect_interval,
            unavailable="not ready yet",
            recovered=None,
        )
        self._broker_started = True
        await wait_until_available(
            self.epoch.ensure,
            name=f"broker {bootstrap} publisher marker",
            interval=self.reconnect_interval,
            unavailable="not readable yet",
            recovered=None,
        )
        self.relay.start()
        self.epoch.start()
        self.ready.set()
        log.info(
            "service ready",
            broker=bootstrap,
            consumers=[c.name for c in self.consumers],
        )

    async def stop(self) -> None:
        """Stop consuming first, then the relay, the producer and the engine."""
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
            self._connector = None
        # Also when the connector was cancelled half-way through broker.start(): stopping a
        # broker that never started is a no-op. Waits for in-flight handlers, which may still
        # dead-letter through the producer, so the producer stops after it.
        await self.epoch.stop()
        await self.broker.stop()
        self._broker_started = False
        await self.relay.stop()
        await self._kafka_gauges.stop()
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()  # flushes what is queued
        await self.engine.dispose()
        self.ready.clear()
        log.info("service stopped")


def _bind(host: str, port: int, service: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        log.error(f"port {port} on {host} for {service} is not available: {exc.strerror}")
        raise SystemExit(2) from None
    sock.set_inheritable(True)
    return sock


def run_service(settings_cls: type[S], create_app: Callable[[S], Any]) -> None:
    """Blocking entry point: settings from the environment, JSON logs, HTTP until SIGTERM.

    With ``workers`` above 1 the port is bound once and that many processes are forked to
    serve it, each building its own app (engine, broker, relay) after the fork; see
    :func:`_run_workers`. Exits 2 on configuration errors (invalid settings, port in use) and
    3 when startup fails.
    """
    configure_logging(settings_cls.service_name)
    try:
        settings = settings_cls()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        log.error(f"invalid configuration for {settings_cls.service_name}: {problems}")
        raise SystemExit(2) from None
    configure_logging(settings.service_name, settings.log_level)
    forbid_topic_auto_creation()
    sock = _bind(settings.host, settings.port, settings.service_name)
    uses = (
        {}
        if settings.without_data
        else {"database": _safe_url(settings.database_url), "broker": settings.kafka_bootstrap}
    )
    log.info(
        "starting",
        url=f"http://{settings.host}:{settings.port}",
        **uses,
        workers=settings.workers,
    )
    try:
        if settings.workers > 1:
            code = _run_workers(settings.workers, lambda: _serve(settings, create_app, sock))
        else:
            code = _serve(settings, create_app, sock)
    finally:
        sock.close()
    if code:
        sys.exit(code)


def _serve(settings: S, create_app: Callable[[S], Any], sock: socket.socket) -> int:
    """Build the app and serve ``sock`` until a stop signal; the exit code (3: no start)."""
    # In the serving process (after a fork), before the app is wired: its spans need it.
    tracer_provider = tracing.configure_tracing(
        f"incentives-{settings.service_name}", settings.otlp_endpoint
    )
    try:
        return _serve_app(settings, create_app, sock)
    finally:
        if tracer_provider is not None:
            tracer_provider.shutdown()  # flushes the last spans


#: How long a server keeps an idle connection open (uvicorn's default is 5 s). It outlasts the
#: pools of the clients (an httpx client keeps an idle connection for 5 s): with equal timeouts,
#: a client sends on a connection the server is closing at that moment and gets a reset
#: (``httpx.ReadError``) for a request the server never read.
KEEP_ALIVE_SECONDS = 75


def server_config(app: Any, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration of a service's ``app``: our logging, no access log, the lifespan
    run, and idle connections kept past the clients' pools. ``options`` adds or overrides."""
    return uvicorn.Config(
        app,
        **{
            "log_config": None,  # keep our JSON handler; uvicorn's loggers propagate to it
            "access_log": False,
            "lifespan": "on",
            "timeout_keep_alive": KEEP_ALIVE_SECONDS,
            **options,
        },
    )


def _serve_app(settings: S, create_app: Callable[[S], Any], sock: socket.socket) -> int:
    app = create_app(settings)
    tune_garbage_collector()
    config = server_config(app, timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal for the handler
    # that was installed before it: by default that kills the process (exit -15) or raises
    # KeyboardInterrupt. Shutdown is complete by then, so those handlers are made no-ops and a
    # requested stop exits 0.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _stopped_already)
    server.run(sockets=[sock])
    if not server.started:
        log.error(f"{settings.service_name} failed to start")
        return 3
    return 0


def _run_workers(count: int, serve: Callable[[], int]) -> int:
    """Fork ``count`` processes running ``serve``; wait for them; the first failure's code.

    Forked before any app, loop or thread exists, so each worker starts clean. A stop signal
    to this process is passed to every worker, which shuts down gracefully. When one worker
    exits on its own, the others are stopped too, and the service exits with that worker's
    code: whatever supervises the service restarts it whole.
    """
    children: list[int] = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the worker's side; the parent waits below
            code = 1
            try:
                code = serve()
            finally:
                os._exit(code)
        children.append(pid)

    stopping = False

    def stop(_signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, stop)
    code = 0
    while children:
        pid, status = os.wait()
        children.remove(pid)
        exited = os.waitstatus_to_exitcode(status)
        if exited and not code:
            code = 3 if exited < 0 else exited
        if not stopping:
            log.error("a worker exited; stopping the others", pid=pid, code=exited)
            stop()
    return code


def _stopped_already(_signum: int, _frame: FrameType | None) -> None:
    """A stop signal re-raised after the graceful shutdown finished: nothing left to do."""


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
