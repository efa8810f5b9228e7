"""End-to-end smoke test of the embedded platform: ``incentives up`` / ``status`` / ``down``.

Everything is real: Tansu, the Temporal dev server, every service and the worker, each with its
embedded SQLite default under a temporary var dir, all on free ports.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from services.cli.embedded import port_in_use
from services.cli.settings import SERVICE_NAMES, WEB_SERVICES
from services.cli.state import read_state
from tests.platform.helpers import (
    PlatformRun,
    all_pids,
    stopped_afterwards,
    wait_all_gone,
    wait_restarted,
)

pytestmark = pytest.mark.e2e


def _assert_services_healthy(run: PlatformRun) -> None:
    for name in SERVICE_NAMES:
        response = httpx.get(f"http://127.0.0.1:{run.ports[name]}/health", timeout=5)
        assert response.status_code == 200, f"{name}: {response.status_code} {response.text}"


def _assert_clean_stop(supervisor_output: str) -> None:
    """Every process stopped on SIGTERM, without a crash on the way out (e.g. SIGABRT)."""
    assert "on stop" not in supervisor_output, supervisor_output
    assert "was killed" not in supervisor_output, supervisor_output
    assert "Stopped." in supervisor_output


def _assert_sqlite_defaults(run: PlatformRun) -> None:
    """The services used the embedded default: their SQLite files live in the var dir."""
    databases = {path.name for path in run.var_dir.glob("*.db")}
    for name in SERVICE_NAMES:
        if name != "worker" and name not in WEB_SERVICES:
            assert f"{name}.db" in databases, f"{name} did not create its SQLite file"


def test_up_detach_status_down(tmp_path: Path) -> None:
    """``up --detach`` returns once healthy; ``status`` exits 0; ``down`` stops every PID."""
    run = PlatformRun.on_free_ports(tmp_path)
    with stopped_afterwards(run):
        started = time.monotonic()
        up = run.incentives("up", "--detach", *run.port_options(), timeout=240)
        assert up.returncode == 0, up.stdout + up.stderr
        status = run.incentives("status", "--wait", "60")
        healthy_after = time.monotonic() - started
        print(f"up --detach to status healthy: {healthy_after:.1f} s")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "All" in status.stdout

        state = read_state(tmp_path)
        assert state is not None
        assert state.status == "ready"
        pids = all_pids(state)
        _assert_services_healthy(run)
        _assert_sqlite_defaults(run)
        for expected in ("applications", "/docs", "/asyncapi", "Web UI"):
            assert expected in up.stdout

        down = run.incentives("down", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        assert wait_all_gone(pids) == []
        assert read_state(tmp_path) is None
        _assert_clean_stop((tmp_path / "logs" / "platform.log").read_text())
        for part, port in run.ports.items():
            assert not port_in_use(port), f"{part} still listens on {port} after down"
        assert run.incentives("status").returncode == 1


def test_up_in_foreground_stops_on_ctrl_c(tmp_path: Path) -> None:
    """The foreground ``up`` becomes healthy and a Ctrl-C (SIGINT) stops every process."""
    run = PlatformRun.on_free_ports(tmp_path)
    proc = run.popen_up()
    # SIGKILL of the supervisor alone would leave its children running: down stops them too.
    with stopped_afterwards(run):
        try:
            state = run.wait_ready(proc, timeout=240)
            pids = all_pids(state)
            assert run.incentives("status").returncode == 0
            _assert_services_healthy(run)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=120) == 0, run.up_output()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert wait_all_gone(pids) == []
    assert read_state(tmp_path) is None
    _assert_clean_stop(run.up_output())


def _publishers(bootstrap: str) -> set[str]:
    """The services whose publisher marker the broker holds (they republished to it)."""
    import asyncio

    from services.kit.messaging import read_topics
    from services.kit.republish import MARKER_TOPIC

    records = asyncio.run(read_topics(bootstrap, [MARKER_TOPIC]))
    return {record.key.decode() for record in records if record.key}


def test_a_killed_service_comes_back_and_up_after_down_republishes(tmp_path: Path) -> None:
    """SIGKILL of a real service: the supervisor starts it again and ``status`` counts it.
    ``down`` then ``up`` meets an empty broker: every service republishes its outbox to it."""
    from services.cli.outbox import OUTBOX_SERVICES

    run = PlatformRun.on_free_ports(tmp_path)
    with stopped_afterwards(run):
        up = run.incentives("up", "--detach", *run.port_options(), timeout=240)
        assert up.returncode == 0, up.stdout + up.stderr
        state = read_state(tmp_path)
        assert state is not None
        pids = all_pids(state)
        assert _publishers(state.kafka_bootstrap) >= set(OUTBOX_SERVICES)

        applications = state.part("applications")
        assert applications is not None
        applications_pid = applications.pid
        os.kill(applications_pid, signal.SIGKILL)
        record = wait_restarted(tmp_path, "applications")
        assert record.restarts == 1
        assert record.last_exit == -signal.SIGKILL
        assert record.pid != applications_pid
        pids.append(record.pid)
        status = run.incentives("status", "--wait", "90")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "1 (-9)" in status.stdout

        down = run.incentives("down", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        assert wait_all_gone(pids) == []

        up = run.incentives("up", "--detach", *run.port_options(), timeout=240)
        assert up.returncode == 0, up.stdout + up.stderr
        state = read_state(tmp_path)
        assert state is not None
        try:
            assert _publishers(state.kafka_bootstrap) >= set(OUTBOX_SERVICES)
        finally:
            down = run.incentives("down", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        assert wait_all_gone(all_pids(state)) == []
