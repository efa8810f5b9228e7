"""The applications API: complete submissions over HTTP on PostgreSQL, outbox write included.

The service runs under uvicorn (uvloop, httptools) in a process of its own, on a fresh
database and a broker of the benchmark's own; a load generator in this process keeps
:data:`CONCURRENCY` requests in flight over HTTP/1.1 keep-alive connections (httpx), each a
complete submission with its own ``Idempotency-Key``. The baseline is a bare FastAPI app in the
same kind of process, driven the same way. Afterwards the database must hold exactly one
application and one outbox row per submission.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from services.cli.embedded import free_port
from tests.applications.helpers import auth, content
from tests.bench.common import BenchError, Result
from tests.bench.process import create_registry_topics, process, service_env

SUBMISSIONS = "submissions (pg)"
BARE_HTTP = "bare http (fastapi)"
PATH = "/v1/applications/submissions"
#: Requests in flight at any time.
CONCURRENCY = 32
#: Firms the submissions are spread over (one token each).
FIRMS = 4
#: DESIGN targets of the applications API.
RATE_TARGET = 1_000.0
P99_TARGET_MS = 50.0


@dataclass(frozen=True)
class Load:
    """What one load run measured."""

    n: int
    seconds: float
    latencies_ms: Sequence[float]

    def percentile(self, q: float) -> float:
        """The ``q`` quantile (0..1) of the latencies, nearest rank."""
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def drive(
    base_url: str,
    n: int,
    *,
    concurrency: int = CONCURRENCY,
    on_progress: Callable[[int], None] | None = None,
) -> Load:
    """POST ``n`` submissions with ``concurrency`` in flight; every answer must be 201."""
    body = json.dumps(content()).encode()
    tokens = [auth(firm=f"BENCH{i}") for i in range(FIRMS)]
    keys = [str(uuid.uuid4()) for _ in range(n)]
    latencies: list[float] = []
    failures: list[str] = []
    created: list[int] = []
    next_index = 0
    # One client (one keep-alive connection) per worker: a single httpx pool shared by many
    # concurrent requests costs more than the requests themselves (about 200 requests/s at
    # 32 in flight, against about 1,000/s at 4, on two cores).
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [
        httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0)
        for _ in range(concurrency)
    ]

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < n and not failures:
            i = next_index
            next_index += 1
            headers = {
                **tokens[i % FIRMS],
                "Idempotency-Key": keys[i],
                "Content-Type": "application/json",
            }
            started = time.perf_counter()
            response = await client.post(PATH, content=body, headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code == 201:
                created.append(i)
            else:
                failures.append(f"{response.status_code} {response.text[:300]}")
            if on_progress is not None and len(latencies) % 100 == 0:
                on_progress(len(latencies))

    try:
        # Open every connection before the clock starts.
        await asyncio.gather(*(client.get("/health") for client in clients))
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for client in clients))
        seconds = time.perf_counter() - started
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    if failures:
        raise BenchError(f"{len(failures)} submissions failed, e.g. {failures[0]}")
    return Load(n=len(created), seconds=seconds, latencies_ms=latencies)


def _result(name: str, load: Load, **fields: object) -> Result:
    return Result(
        name,
        load.n,
        load.seconds,
        latency_ms=(load.percentile(0.50), load.percentile(0.99)),
        **fields,  # type: ignore[arg-type]
    )


async def bench_bare_http(
    workdir: Path, n: int, *, on_progress: Callable[[int], None] | None = None
) -> Result:
    """The baseline: a bare FastAPI app under uvicorn in its own process."""
    port = free_port()
    async with process(
        [
            "-m",
            "uvicorn",
            "tests.bench.bare_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env={},
        log_path=workdir / "bare-http.log",
        health_url=f"http://127.0.0.1:{port}/health",
    ):
        load = await drive(f"http://127.0.0.1:{port}", n, on_progress=on_progress)
    return _result(BARE_HTTP, load, note=f"uvicorn, one process; {CONCURRENCY} in flight")


async def bench_submissions(
    bootstrap: str,
    database_url: str,
    workdir: Path,
    n: int,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> Result:
    """Submissions/s and latency of the applications service; checks the database after."""
    await create_registry_topics(bootstrap)
    port = free_port()
    env = service_env(
        bootstrap,
        workdir,
        INCENTIVES_CONSUMER_GROUP_PREFIX=f"bench-{uuid.uuid4().hex[:8]}-",
        INCENTIVES_APPLICATIONS_PORT=str(port),
        INCENTIVES_APPLICATIONS_HOST="127.0.0.1",
        INCENTIVES_APPLICATIONS_DATABASE_URL=database_url,
    )
    async with process(
        ["-m", "services.applications.main"],
        env=env,
        log_path=workdir / "applications.log",
        health_url=f"http://127.0.0.1:{port}/health",
    ):
        load = await drive(f"http://127.0.0.1:{port}", n, on_progress=on_progress)
    await check_database(database_url, n)
    return _result(
        SUBMISSIONS,
        load,
        baseline=BARE_HTTP,
        rate_target=RATE_TARGET,
        p99_target_ms=P99_TARGET_MS,
        note=f"applications service, uvicorn in its own process; {CONCURRENCY} in flight, "
        f"{FIRMS} firms; database checked: {n:,} applications and outbox rows",
    )


async def check_database(database_url: str, n: int) -> None:
    """Exactly ``n`` applications and ``n`` outbox rows (one ``application.submitted`` each)."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        applications = await conn.fetchval("SELECT count(*) FROM applications")
        outbox = await conn.fetchval("SELECT count(*) FROM outbox")
        events = await conn.fetchval("SELECT count(DISTINCT event_id) FROM outbox")
    finally:
        await conn.close()
    if (applications, outbox, events) != (n, n, n):
        raise BenchError(
            f"{SUBMISSIONS}: {n} submissions left {applications} applications and {outbox} "
            f"outbox rows ({events} distinct events)"
        )
