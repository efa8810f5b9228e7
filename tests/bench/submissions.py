"""The applications API: complete submissions over HTTP on PostgreSQL, outbox write included.

Three apps, each under uvicorn (uvloop, httptools) in a process of its own, on a fresh
database and a broker of the benchmark's own:

- the applications service (``POST /v1/applications/submissions``);
- the baseline: a bare FastAPI app doing one INSERT into PostgreSQL per request;
- a second reference: a bare FastAPI app with no database.

The load generator (:mod:`tests.bench.loadgen`) runs in a process of its own and reports its
own CPU. Each app is driven twice: closed-loop with :data:`CONCURRENCY` requests in flight (its
saturation rate), then open-loop at half that rate, where its p99 is what the DESIGN target is
about. Every request is a complete submission with its own ``Idempotency-Key`` and a distinct
body. Afterwards the service's database must hold exactly one application and one outbox row
per submission.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from services.cli.embedded import free_port
from tests.applications.helpers import auth, content
from tests.bench.common import BenchError, Point, Result
from tests.bench.loadgen import SEQ_MARKER
from tests.bench.process import ROOT, create_registry_topics, process, service_env

SUBMISSIONS = "submissions (pg)"
SUBMISSIONS_HALF = "submissions (pg), half saturation"
BARE_INSERT = "bare insert (fastapi + pg)"
BARE_INSERT_HALF = "bare insert, half saturation"
BARE_HTTP = "bare http (fastapi)"
PATH = "/v1/applications/submissions"
#: Requests in flight at any time in the closed-loop (saturation) run.
CONCURRENCY = 32
#: Connections the open-loop run may use: enough that a slow answer does not delay the next.
OPEN_CONNECTIONS = 64
#: Firms the submissions are spread over (one token each).
FIRMS = 4
#: Offered loads of the latency curve, as fractions of the app's saturation rate; the DESIGN
#: target is about the half.
HALF = 0.5
CURVE: tuple[float, ...] = (0.25, HALF, 0.75, 0.9)
#: Seconds of offered load at each point of the curve but the half, and the fewest requests.
CURVE_SECONDS = 4.0
CURVE_MIN = 200
#: The chart the curve is drawn on (:mod:`tests.bench.charts`).
LATENCY_CHART = "latency"
#: DESIGN targets: a ratio to the bare INSERT app, and p99 at half the saturation rate.
RATIO_TARGET = 0.5
P99_TARGET_MS = 50.0


@dataclass(frozen=True)
class Load:
    """What one load run measured, as the generator reported it."""

    n: int
    seconds: float
    p50_ms: float
    p99_ms: float
    #: CPU seconds the generator itself used over the timed section.
    cpu_seconds: float

    @property
    def rate(self) -> float:
        """Answered requests per second."""
        return self.n / self.seconds

    def generator_cost(self) -> str:
        """The generator's own CPU, per request and as a share of one core."""
        return (
            f"generator {self.cpu_seconds / self.n * 1e6:,.0f} us CPU/request, "
            f"{self.cpu_seconds / self.seconds:.0%} of a core"
        )


def _body_template() -> str:
    """The contract's complete example, with the request number in its title."""
    body = content()
    body["proposal"]["title"] = f"{body['proposal']['title']} #{SEQ_MARKER}"
    return json.dumps(body)


async def drive(
    port: int,
    n: int,
    workdir: Path,
    *,
    rate: float | None = None,
) -> Load:
    """Send ``n`` submissions from a generator process; every answer must be 201.

    Closed-loop with :data:`CONCURRENCY` in flight, or open-loop at ``rate`` per second.
    """
    spec = {
        "host": "127.0.0.1",
        "port": port,
        "path": PATH,
        "mode": "closed" if rate is None else "open",
        "rate": rate or 0.0,
        "n": n,
        "concurrency": CONCURRENCY if rate is None else OPEN_CONNECTIONS,
        "header_sets": [auth(firm=f"BENCH{i}") for i in range(FIRMS)],
        "body_template": _body_template(),
        "expect_status": 201,
    }
    spec_path = workdir / f"load-{uuid.uuid4().hex[:8]}.json"
    spec_path.write_text(json.dumps(spec))
    generator = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.bench.loadgen",
        str(spec_path),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await generator.communicate()
    finally:
        if generator.returncode is None:
            generator.kill()
            await generator.wait()
    if generator.returncode != 0:
        raise BenchError(
            f"load generator exited with {generator.returncode}: {err.decode()[-500:]}"
        )
    figures = json.loads(out)
    if figures["failures"]:
        raise BenchError(
            f"{figures['failures']} submissions failed, e.g. {figures['first_failure']}"
        )
    if figures["n"] != n:
        raise BenchError(f"the generator answered {figures['n']} of {n} submissions")
    return Load(
        n=figures["n"],
        seconds=figures["seconds"],
        p50_ms=figures["p50_ms"],
        p99_ms=figures["p99_ms"],
        cpu_seconds=figures["cpu_seconds"],
    )


async def saturation_and_curve(
    port: int,
    n: int,
    workdir: Path,
    on_progress: Callable[[int], None] | None,
    curve: Sequence[float] = CURVE,
) -> tuple[Load, dict[float, Load]]:
    """A closed-loop run of ``n``, then open-loop runs at each of :data:`CURVE` times its rate:
    ``n // 2`` requests at half; at the others about :data:`CURVE_SECONDS` seconds' worth, at
    least :data:`CURVE_MIN` (or ``n // 2``) and at most ``n``."""
    saturated = await drive(port, n, workdir)
    if on_progress is not None:
        on_progress(n)
    loads: dict[float, Load] = {}
    for fraction in curve:
        rate = saturated.rate * fraction
        count = (
            n // 2
            if fraction == HALF
            else max(min(CURVE_MIN, n // 2), min(n, int(rate * CURVE_SECONDS)))
        )
        loads[fraction] = await drive(port, max(1, count), workdir, rate=rate)
    return saturated, loads


def curve_results(
    name: str, half_name: str, saturated: Load, curve: dict[float, Load], **half: object
) -> list[Result]:
    """The open-loop figures of one app: half saturation (with its targets), then the rest of
    the latency curve, each drawn against the offered rate."""
    results = []
    for fraction, load in curve.items():
        offered = saturated.rate * fraction
        results.append(
            _result(
                half_name if fraction == HALF else f"{name}, {fraction:g} x saturation",
                load,
                f"offered {offered:,.0f}/s open-loop ({fraction:g} x its saturation)",
                baseline=name,
                point=Point(LATENCY_CHART, name, offered),
                **(half if fraction == HALF else {}),
            )
        )
    return results


def _result(name: str, load: Load, note: str, **fields: object) -> Result:
    return Result(
        name,
        load.n,
        load.seconds,
        latency_ms=(load.p50_ms, load.p99_ms),
        note=f"{note}; {load.generator_cost()}",
        **fields,  # type: ignore[arg-type]
    )


def _uvicorn(app: str, port: int) -> list[str]:
    return [
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]


async def bench_bare_http(
    workdir: Path, n: int, *, on_progress: Callable[[int], None] | None = None
) -> Result:
    """The second reference: a bare FastAPI app under uvicorn, no database."""
    port = free_port()
    async with process(
        _uvicorn("tests.bench.bare_app:app", port),
        env={},
        log_path=workdir / "bare-http.log",
        health_url=f"http://127.0.0.1:{port}/health",
    ):
        load = await drive(port, n, workdir)
    if on_progress is not None:
        on_progress(n)
    return _result(BARE_HTTP, load, f"uvicorn, one process, no database; {CONCURRENCY} in flight")


async def bench_bare_insert(
    database_url: str,
    workdir: Path,
    n: int,
    *,
    curve: Sequence[float] = CURVE,
    on_progress: Callable[[int], None] | None = None,
) -> list[Result]:
    """The baseline: a bare FastAPI app doing one INSERT per request; saturated, then open-loop
    at each of ``curve`` times its saturation rate."""
    port = free_port()
    async with process(
        _uvicorn("tests.bench.bare_insert_app:app", port),
        env={"BENCH_DATABASE_URL": database_url},
        log_path=workdir / "bare-insert.log",
        health_url=f"http://127.0.0.1:{port}/health",
    ):
        saturated, loads = await saturation_and_curve(port, n, workdir, on_progress, curve)
    return [
        _result(
            BARE_INSERT,
            saturated,
            f"uvicorn, one process, one INSERT per request (asyncpg pool); {CONCURRENCY} in flight",
        ),
        *curve_results(BARE_INSERT, BARE_INSERT_HALF, saturated, loads),
    ]


async def bench_submissions(
    bootstrap: str,
    database_url: str,
    workdir: Path,
    n: int,
    *,
    workers: int = 1,
    curve: Sequence[float] = CURVE,
    on_progress: Callable[[int], None] | None = None,
) -> list[Result]:
    """Submissions/s and latency of the applications service; checks the database after.

    ``workers`` is the service's worker processes (its ``workers`` setting); after the
    saturated run, open-loop runs at each of ``curve`` times its rate.
    """
    await create_registry_topics(bootstrap)
    port = free_port()
    env = service_env(
        bootstrap,
        workdir,
        INCENTIVES_CONSUMER_GROUP_PREFIX=f"bench-{uuid.uuid4().hex[:8]}-",
        INCENTIVES_APPLICATIONS_PORT=str(port),
        INCENTIVES_APPLICATIONS_HOST="127.0.0.1",
        INCENTIVES_APPLICATIONS_DATABASE_URL=database_url,
        INCENTIVES_APPLICATIONS_WORKERS=str(workers),
    )
    async with process(
        ["-m", "services.applications.main"],
        env=env,
        log_path=workdir / "applications.log",
        health_url=f"http://127.0.0.1:{port}/health",
    ):
        saturated, loads = await saturation_and_curve(port, n, workdir, on_progress, curve)
    total = saturated.n + sum(load.n for load in loads.values())
    await check_database(database_url, total)
    suffix = "" if workers == 1 else f", {workers} workers"
    processes = "uvicorn in its own process" if workers == 1 else f"{workers} worker processes"
    return [
        _result(
            SUBMISSIONS + suffix,
            saturated,
            f"applications service, {processes}; {CONCURRENCY} in flight, "
            f"{FIRMS} firms; database checked: {total:,} applications and outbox rows",
            baseline=BARE_INSERT,
            target=RATIO_TARGET,
        ),
        *curve_results(
            SUBMISSIONS + suffix,
            SUBMISSIONS_HALF + suffix,
            saturated,
            loads,
            p99_target_ms=P99_TARGET_MS,
        ),
    ]


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
