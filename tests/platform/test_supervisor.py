"""The supervisor behind ``incentives up``, with stand-in services on the real broker and Temporal.

Stand-ins keep these tests about the supervisor (start order, health waits, crash reports,
shutdown by PID) rather than about the services, which the e2e smoke test covers.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from services.cli.embedded import port_in_use
from services.cli.state import read_state
from services.cli.supervisor import restart_delay
from tests.platform.helpers import PlatformRun, all_pids, wait_all_gone, wait_restarted
from tests.support import topic_names

pytestmark = pytest.mark.integration


def test_stub_platform_restarts_a_dead_service_then_stops_on_ctrl_c(tmp_path: Path) -> None:
    """A service dying after start-up is reported with its log and started again, with its
    restart count and last exit code in the state (and ``status``); the rest keeps running.
    SIGINT (Ctrl-C) then stops every process and removes the state."""
    run = PlatformRun.on_free_ports(tmp_path)
    proc = run.popen_up(stubs=True)
    try:
        state = run.wait_ready(proc, timeout=90)
        pids = all_pids(state)
        assert run.incentives("status").returncode == 0

        zones = state.part("zones")
        assert zones is not None
        assert zones.restarts == 0
        os.kill(zones.pid, signal.SIGKILL)
        assert wait_all_gone([zones.pid], timeout=10) == []

        restarted = wait_restarted(tmp_path, "zones")
        assert restarted.restarts == 1
        assert restarted.last_exit == -signal.SIGKILL
        assert restarted.pid != zones.pid
        status = run.incentives("status", "--wait", "30")
        assert status.returncode == 0, status.stdout
        assert "restarts (last" in status.stdout
        assert "1 (-9)" in status.stdout
        assert proc.poll() is None, "a dead service must not take the platform down"
        output = run.up_output()
        assert "zones exited with code" in output
        assert "zones stub serving" in output  # the tail of its log is shown
        assert "zones restarted" in output
        pids.append(restarted.pid)

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wait_all_gone(pids) == []
    assert read_state(tmp_path) is None


def test_restarts_back_off_up_to_a_cap() -> None:
    assert [restart_delay(n) for n in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert restart_delay(10_000) == 30.0


def test_a_service_failing_at_start_up_aborts_everything(tmp_path: Path) -> None:
    """Start-up stops at the first service that exits, naming it with its last log lines."""
    run = PlatformRun.on_free_ports(tmp_path)
    proc = run.popen_up(stubs=True, extra_env={"STUB_FAIL": "review"})
    try:
        assert proc.wait(timeout=120) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = run.up_output()
    assert "Start-up failed: review exited with code 3" in output
    assert "review: failing on purpose" in output
    assert read_state(tmp_path) is None
    assert "Stopped." in output
    for part, port in run.ports.items():
        assert not port_in_use(port), f"{part} port {port} still served after an aborted start-up"


def test_a_killed_broker_comes_back_with_its_topics(tmp_path: Path) -> None:
    """The broker dying is not the end: the supervisor starts a new one on the same port,
    creates the registry's topics on it, and counts the restart."""
    from contracts.topics import all_topic_names

    run = PlatformRun.on_free_ports(tmp_path)
    proc = run.popen_up(stubs=True)
    try:
        state = run.wait_ready(proc, timeout=90)
        pids = all_pids(state)
        broker = state.part("broker")
        assert broker is not None
        os.kill(broker.pid, signal.SIGKILL)
        restarted = wait_restarted(tmp_path, "broker")
        assert restarted.restarts == 1
        assert restarted.last_exit == -signal.SIGKILL
        pids.append(restarted.pid)
        status = run.incentives("status", "--wait", "30")
        assert status.returncode == 0, status.stdout
        assert proc.poll() is None
        assert "broker restarted" in run.up_output()
        # The new, empty broker has every registry topic again.
        topics = asyncio.run(topic_names(state.kafka_bootstrap))
        assert set(all_topic_names()) <= topics

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wait_all_gone(pids) == []
