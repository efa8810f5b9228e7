"""Two replicas of each consumer service in one consumer group, under load; one of each killed.

The embedded platform runs with every consumer service on a PostgreSQL database of its own (so
that two processes can share it); beside each supervisor-started instance the test starts a
second one, ``incentives serve NAME`` with the very environment of the first (read from
``/proc``) and a port of its own, so both are members of the same consumer group. While the
demo load runs, every second instance is SIGKILLed: the survivors take their partitions over,
and the final check finds nothing lost, duplicated or stuck.

The audit service is left out: it is the log's single writer by design (DESIGN.md, "The audit
log"), and one writer appends in one gap-free sequence.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from services.cli.embedded import free_port, pid_alive
from services.cli.state import read_state
from tests.kit.helpers import admin_dsn
from tests.platform.chaos_run import embedded_platform, start_demo
from tests.platform.helpers import PlatformRun
from tests.platform.test_chaos import _listed

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

#: The services that consume topics in a consumer group, and the worker's bridge.
REPLICATED = ("applications", "eligibility", "zones", "disbursement", "review", "worker")
#: Those with a database (the worker has none).
WITH_DATABASE = tuple(name for name in REPLICATED if name != "worker")


@contextmanager
def databases(pg_url: str, names: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database per name; dropped afterwards."""
    base = make_url(pg_url)
    created = {name: f"{base.database}_{name[:4]}_{uuid.uuid4().hex[:8]}" for name in names}

    async def run(statements: list[str]) -> None:
        conn = await asyncpg.connect(admin_dsn(pg_url))
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run([f'CREATE DATABASE "{db}"' for db in created.values()]))
    try:
        yield {
            name: base.set(database=db).render_as_string(hide_password=False)
            for name, db in created.items()
        }
    finally:
        drops = [f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)' for db in created.values()]
        asyncio.run(run(drops))


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode() for k, v in pairs}


def start_replica(run: PlatformRun, name: str) -> tuple[subprocess.Popen[bytes], int]:
    """A second instance of ``name``: the first's environment, a port of its own."""
    state = read_state(run.var_dir)
    assert state is not None
    first = state.part(name)
    assert first is not None
    env = _environ(first.pid)
    port = free_port()
    env[f"INCENTIVES_{name.upper()}_PORT"] = str(port)
    log = (run.var_dir / "logs" / f"{name}-replica.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", name],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, port


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"replica exited with {proc.returncode}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"replica on {port} not healthy in {timeout} s"
        time.sleep(0.2)


@pytest.mark.resilience
@pytest.mark.timeout(2400)
def test_two_replicas_each_one_killed_under_load(pg_url: str, tmp_path: Path) -> None:
    with databases(pg_url, WITH_DATABASE) as urls:
        env = {f"INCENTIVES_{name.upper()}_DATABASE_URL": url for name, url in urls.items()}
        with embedded_platform(tmp_path, extra_env=env) as run:
            replicas: dict[str, subprocess.Popen[bytes]] = {}
            try:
                for name in REPLICATED:
                    proc, port = start_replica(run, name)
                    replicas[name] = proc
                    wait_healthy(port, proc)
                demo, figures_path = start_demo(
                    run,
                    "load",
                    "-n",
                    "30",
                    "--auto-review",
                    "--accept-offers",
                    "--rate",
                    "2",
                    "--check",
                )
                deadline = time.monotonic() + 120
                while _listed(run) < 10:  # journeys under way on both replicas
                    assert demo.poll() is None, demo.communicate()[0][-4000:]
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
                for proc in replicas.values():
                    os.kill(proc.pid, signal.SIGKILL)
                for proc in replicas.values():
                    proc.wait(timeout=10)
                output, _ = demo.communicate(timeout=1500)
            finally:
                for proc in replicas.values():
                    if pid_alive(proc.pid):
                        proc.kill()
                        proc.wait()
            figures = json.loads(figures_path.read_text())
            assert demo.returncode == 0, output[-4000:]
            assert figures["end_states"] == {"completed": 30}, output[-4000:]
            assert all(n == 0 for n in figures["check"].values()), output[-4000:]
