"""The ``incentives`` command: port checks, status exit codes, serve, topics, down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli.embedded import (
    PortInUseError,
    check_ports_free,
    free_port,
    free_ports,
    pid_alive,
    port_in_use,
)
from services.cli.main import app
from services.cli.settings import SERVICE_NAMES, PlatformSettings
from services.cli.state import PartRecord, PlatformState, read_state, state_path, write_state


@pytest.fixture
def runner() -> CliRunner:
    """A Typer test runner (stdout and stderr captured separately)."""
    return CliRunner()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop any ``INCENTIVES_*`` variable of the caller's shell so defaults are predictable."""
    for name in list(os.environ):
        if name.startswith("INCENTIVES_"):
            monkeypatch.delenv(name)


def _free_port_options() -> list[str]:
    """``up`` options putting every part on a free port (no conflicts of their own)."""
    names = ["broker", "temporal", "temporal-ui", *SERVICE_NAMES]
    args: list[str] = []
    for name, port in zip(names, free_ports(len(names)), strict=True):
        args += [f"--{name}-port", str(port)]
    return args


def _with_port(args: list[str], option: str, port: int) -> list[str]:
    index = args.index(option)
    return [*args[: index + 1], str(port), *args[index + 2 :]]


# -- port checks -------------------------------------------------------------------------------


def test_port_in_use_detects_a_listener(listening_port: int) -> None:
    """A listening socket makes the port "in use"; once closed, a fresh free port is not."""
    assert port_in_use(listening_port)
    assert not port_in_use(free_port())


def test_check_ports_names_port_and_part(listening_port: int) -> None:
    """The error names the taken port and the part that wanted it."""
    with pytest.raises(PortInUseError) as caught:
        check_ports_free({"broker": free_port(), "zones": listening_port})
    assert [(c.part, c.port) for c in caught.value.conflicts] == [("zones", listening_port)]
    assert f"Port {listening_port} is already in use; zones needs it." in str(caught.value)


def test_check_ports_refuses_one_port_for_two_parts() -> None:
    """The same port configured twice is reported even though it is free."""
    port = free_port()
    with pytest.raises(PortInUseError, match=f"Port {port} is configured for both audit and zones"):
        check_ports_free({"audit": port, "zones": port})


def test_up_refuses_a_taken_port_and_starts_nothing(
    runner: CliRunner, clean_env: None, tmp_path: Path, listening_port: int
) -> None:
    """``up`` exits 2 naming the port and part, and leaves no state (nothing was started)."""
    args = _with_port(_free_port_options(), "--review-port", listening_port)
    result = runner.invoke(app, ["up", "--var-dir", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert f"Port {listening_port} is already in use; review needs it." in result.stderr
    assert "Nothing was started" in result.stderr
    assert not state_path(tmp_path).exists()
    assert not (tmp_path / "logs").exists()


def test_up_reads_ports_from_the_environment(
    runner: CliRunner,
    clean_env: None,
    tmp_path: Path,
    listening_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """INCENTIVES_<PART>_PORT configures a part just like the option does."""
    args = _free_port_options()
    index = args.index("--worker-port")
    del args[index : index + 2]
    monkeypatch.setenv("INCENTIVES_WORKER_PORT", str(listening_port))
    result = runner.invoke(app, ["up", "--var-dir", str(tmp_path), *args])
    assert result.exit_code == 2
    assert f"Port {listening_port} is already in use; worker needs it." in result.stderr


def test_settings_defaults_match_the_plan(clean_env: None) -> None:
    """The default ports are the documented ones."""
    ports = PlatformSettings().wanted_ports()
    assert ports == {
        "broker": 9092,
        "temporal": 7233,
        "temporal-ui": 8233,
        "portal": 8000,
        "applications": 8001,
        "eligibility": 8006,
        "zones": 8004,
        "disbursement": 8005,
        "review": 8002,
        "audit": 8003,
        "worker": 8007,
        "rail": 8010,
    }


# -- serve -------------------------------------------------------------------------------------


def test_serve_unknown_name_lists_valid_names(runner: CliRunner) -> None:
    """An unknown service name is a usage error that lists every valid name."""
    result = runner.invoke(app, ["serve", "payroll"])
    assert result.exit_code == 2
    assert "Unknown service 'payroll'" in result.stderr
    for name in SERVICE_NAMES:
        assert name in result.stderr


def test_python_dash_m_entry_point_runs_the_same_app() -> None:
    """``python -m services.cli`` (how ``up`` starts children) is the ``incentives`` app."""
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Unknown service 'nope'" in proc.stderr


# -- status ------------------------------------------------------------------------------------


class _HealthHandler(BaseHTTPRequestHandler):
    """Answers /health with the status code the server was configured with."""

    def do_GET(self) -> None:
        code = self.server.health_code  # type: ignore[attr-defined]
        body = {"status": "ok"} if code == 200 else {"status": "degraded", "checks": {"db": "down"}}
        payload = json.dumps(body).encode()
        self.send_response(code if self.path == "/health" else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def health_server() -> Iterator[Callable[[int], str]]:
    """``start(code) -> url``: tiny HTTP servers answering /health with ``code``."""
    servers: list[ThreadingHTTPServer] = []

    def start(code: int) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _HealthHandler)
        server.health_code = code  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/health"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _recorded_platform(
    var_dir: Path, bootstrap: str, temporal: str, health_urls: dict[str, str]
) -> None:
    """Write a state file as ``up`` would, pointing at the given endpoints."""
    parts = [
        PartRecord(name, "service", os.getpid(), [], "", health_url=url)
        for name, url in health_urls.items()
    ]
    state = PlatformState(
        supervisor_pid=os.getpid(),
        status="ready",
        var_dir=str(var_dir),
        kafka_bootstrap=bootstrap,
        temporal_address=temporal,
        temporal_ui_url=None,
        started_at="2026-01-01T00:00:00+00:00",
        parts=parts,
    )
    write_state(var_dir, state)


def test_status_fails_and_names_every_part_when_nothing_runs(
    runner: CliRunner, clean_env: None, tmp_path: Path
) -> None:
    """Without a platform, status exits 1 and lists each unreachable part."""
    names = ["broker", "temporal", *SERVICE_NAMES]
    ports = free_ports(len(names))
    env = {f"INCENTIVES_{n.upper()}_PORT": str(p) for n, p in zip(names, ports, strict=True)}
    result = runner.invoke(app, ["status", "--var-dir", str(tmp_path)], env=env)
    assert result.exit_code == 1
    unhealthy_line = result.stdout.split("Unhealthy:", 1)[1]
    for name in names:
        assert name in unhealthy_line


@pytest.mark.integration
def test_status_is_zero_only_when_every_part_is_healthy(
    runner: CliRunner,
    clean_env: None,
    tmp_path: Path,
    kafka_bootstrap: str,
    temporal_dev: str,
    health_server: Callable[[int], str],
) -> None:
    """All healthy -> exit 0; one service answering 503 -> exit 1 naming that service only."""
    urls = {name: health_server(200) for name in SERVICE_NAMES}
    _recorded_platform(tmp_path, kafka_bootstrap, temporal_dev, urls)
    healthy = runner.invoke(app, ["status", "--var-dir", str(tmp_path)])
    assert healthy.exit_code == 0, healthy.output
    assert f"All {len(SERVICE_NAMES) + 2} parts healthy" in healthy.stdout

    urls["zones"] = health_server(503)
    _recorded_platform(tmp_path, kafka_bootstrap, temporal_dev, urls)
    degraded = runner.invoke(app, ["status", "--var-dir", str(tmp_path)])
    assert degraded.exit_code == 1
    assert "Unhealthy: zones" in degraded.stdout
    assert "HTTP 503: db" in degraded.stdout


# -- topics ------------------------------------------------------------------------------------


@pytest.mark.integration
def test_topics_create_is_idempotent(
    runner: CliRunner, clean_env: None, kafka_bootstrap: str
) -> None:
    """Every registry topic and its .dlq twin exist with the registry's partition count."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    from contracts.topics import TOPICS, all_topic_names

    first = runner.invoke(app, ["topics", "create", "--bootstrap", kafka_bootstrap])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["topics", "create", "--bootstrap", kafka_bootstrap])
    assert second.exit_code == 0, second.output
    assert "created" not in second.stdout

    async def describe() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            topics = await admin.describe_topics(all_topic_names())
        finally:
            await admin.close()
        return {t["topic"]: len(t["partitions"]) for t in topics}

    partitions = asyncio.run(describe())
    for topic in TOPICS:
        assert partitions[topic.name] == topic.partitions
        assert partitions[topic.dlq] == topic.partitions


def test_topics_create_on_unreachable_kafka_is_one_clear_error(
    runner: CliRunner, clean_env: None
) -> None:
    """No broker: exit 1 with a one-line reason naming the address, not a traceback."""
    address = f"127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["topics", "create", "--bootstrap", address, "--wait", "0"])
    assert result.exit_code == 1
    assert f"Cannot create topics on {address}" in result.stderr
    assert "Traceback" not in result.output


# -- down --------------------------------------------------------------------------------------


def test_down_without_a_platform_says_so(runner: CliRunner, tmp_path: Path) -> None:
    """``down`` on an empty var dir is a no-op that exits 0."""
    result = runner.invoke(app, ["down", "--var-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "No running platform" in result.stdout


def test_down_stops_recorded_processes_but_not_recycled_pids(
    runner: CliRunner, tmp_path: Path
) -> None:
    """Leftovers of a dead supervisor are stopped by PID; a PID now running something else
    (its command line differs from the record) is left alone."""
    ours_argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    ours = subprocess.Popen(ours_argv)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(61)"])
    try:
        dead_supervisor = subprocess.Popen([sys.executable, "-c", "pass"])
        dead_supervisor.wait()
        state = PlatformState(
            supervisor_pid=dead_supervisor.pid,
            status="ready",
            var_dir=str(tmp_path),
            kafka_bootstrap="127.0.0.1:1",
            temporal_address="127.0.0.1:1",
            temporal_ui_url=None,
            started_at="2026-01-01T00:00:00+00:00",
            parts=[
                PartRecord("zones", "service", ours.pid, ours_argv, "x.log"),
                PartRecord("broker", "infra", stranger.pid, ["tansu", "broker"], "y.log"),
            ],
        )
        write_state(tmp_path, state)
        result = runner.invoke(app, ["down", "--var-dir", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert ours.wait(timeout=15) is not None
        assert stranger.poll() is None, "a PID whose command line differs must not be killed"
        assert read_state(tmp_path) is None
    finally:
        for proc in (ours, stranger):
            proc.kill()
            proc.wait()
    assert not pid_alive(ours.pid)


def test_up_refuses_to_start_over_a_running_platform(
    runner: CliRunner, clean_env: None, tmp_path: Path
) -> None:
    """A live supervisor recorded in the var dir blocks a second ``up`` and says how to stop it."""
    supervisor_argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    supervisor = subprocess.Popen(supervisor_argv)
    try:
        state = PlatformState(
            supervisor_pid=supervisor.pid,
            supervisor_argv=supervisor_argv,
            status="ready",
            var_dir=str(tmp_path),
            kafka_bootstrap="127.0.0.1:1",
            temporal_address="127.0.0.1:1",
            temporal_ui_url=None,
            started_at="2026-01-01T00:00:00+00:00",
        )
        write_state(tmp_path, state)
        result = runner.invoke(app, ["up", "--var-dir", str(tmp_path), *_free_port_options()])
        assert result.exit_code == 1
        assert "already running" in result.stderr
        assert "incentives down" in result.stderr
        assert supervisor.poll() is None
    finally:
        supervisor.kill()
        supervisor.wait()


# -- status --metrics ----------------------------------------------------------------------------

_EXPOSITION = b"""# TYPE http_requests_total counter
http_requests_total{handler="/v1/applications",method="GET",status="200"} 40.0
http_requests_total{handler="/v1/applications",method="GET",status="503"} 2.0
# TYPE incentives_consumer_lag gauge
incentives_consumer_lag{group="eligibility",partition="0",topic="applications.events"} 5.0
incentives_consumer_lag{group="eligibility",partition="1",topic="applications.events"} 2.0
# TYPE incentives_outbox_backlog gauge
incentives_outbox_backlog 3.0
# TYPE incentives_dlq_records gauge
incentives_dlq_records{topic="applications.events.dlq"} 1.0
# TYPE incentives_workflows_started_total counter
incentives_workflows_started_total{workflow_type="IncentiveApproval"} 9.0
"""


class _MetricsHandler(BaseHTTPRequestHandler):
    """Answers /health with 200 and /metrics with a fixed exposition."""

    def do_GET(self) -> None:
        body = _EXPOSITION if self.path == "/metrics" else b'{"status": "ok"}'
        self.send_response(200 if self.path in ("/health", "/metrics") else 404)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.mark.parametrize("columns", ["80", "200"])
def test_status_metrics_prints_the_key_figures_of_every_part(
    runner: CliRunner, clean_env: None, tmp_path: Path, columns: str
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MetricsHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/health"
        closed = free_ports(2)
        _recorded_platform(
            tmp_path,
            f"127.0.0.1:{closed[0]}",
            f"127.0.0.1:{closed[1]}",
            {"applications": url, "worker": url},
        )
        result = runner.invoke(
            app, ["status", "--metrics", "--var-dir", str(tmp_path)], env={"COLUMNS": columns}
        )
    finally:
        server.shutdown()
        server.server_close()

    assert result.exit_code == 1  # the broker and Temporal are not there: still unhealthy
    out = result.stdout
    assert "Key metrics per part" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 6}
    cells = [c.strip() for c in rows["applications"].split("│")[2:7]]
    assert cells == ["42", "2", "7", "3", "1"]
    assert "workflows started" in out
    started = next(line for line in out.splitlines() if "workflows started" in line)
    assert "9" in started
