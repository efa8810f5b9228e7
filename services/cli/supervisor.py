"""``incentives up`` / ``down``: run the whole embedded platform as child processes.

The supervisor (the ``up`` process) owns every child:

1. checks every port first, so a conflict names the port and the part and nothing is started;
2. starts Tansu and the Temporal dev server, waits for the broker, creates the topics;
3. starts every service and the worker (``python -m services.cli serve NAME``), each logging to
   ``<var>/logs/<name>.log``, while the Temporal dev server finishes booting (services wait and
   retry for it on their own, which overlaps the two slowest start-ups);
4. waits until each part is healthy, prints the URLs and stays in the foreground;
5. stops everything on Ctrl-C, SIGTERM or ``incentives down``: services first, then Temporal and
   the broker, each by PID (SIGTERM, wait, SIGKILL).

Every PID is recorded in ``<var>/run/platform.json`` as soon as it exists, so ``down`` works from
another shell and still cleans up if the supervisor itself was killed.

When a child dies after start-up, the supervisor prints its name, exit code and last log lines.
If it is infrastructure (broker, Temporal), nothing can work any more, so the whole platform is
stopped and ``up`` exits 1. If it is a service, the rest keeps running so the log can be read and
the other parts keep serving; ``status`` then reports that service as unhealthy. Any death
during start-up aborts the start-up and stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console
from rich.panel import Panel
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.cli.embedded import (
    EmbeddedError,
    ManagedProcess,
    TansuBroker,
    TemporalDevServer,
    check_ports_free,
    pid_alive,
    process_cmdline,
    stop_pid,
    tail,
)
from services.cli.health import http_health
from services.cli.settings import API_SERVICES, SERVICE_NAMES, WEB_SERVICES, PlatformSettings
from services.cli.state import (
    PartRecord,
    PlatformState,
    read_state,
    remove_state,
    write_state,
)
from services.cli.topics import create_topics, registry_topics

#: Exit codes of a process that stopped as asked: normally, or by the SIGTERM/SIGINT itself.
CLEAN_EXIT_CODES = frozenset({0, -signal.SIGTERM, -signal.SIGINT, 128 + signal.SIGTERM})
#: A dead service is restarted after RESTART_BASE_DELAY * 2**deaths seconds, at most this,
#: where deaths counts the part's deaths in a row that came sooner than STABLE_AFTER seconds
#: after its start: a part that ran that long gets a quick restart again, as a crash-looping
#: one backs off.
RESTART_BASE_DELAY = 1.0
RESTART_MAX_DELAY = 30.0
STABLE_AFTER = 60.0


def restart_delay(restarts: int) -> float:
    """Seconds before restarting a part that died ``restarts`` times in a row, each soon after
    its start."""
    return float(min(RESTART_BASE_DELAY * 2 ** min(restarts, 16), RESTART_MAX_DELAY))


class StartupError(EmbeddedError):
    """The platform could not be brought up; everything already started has been stopped."""

    def __init__(self, message: str, *, part: str | None = None, log_tail: str = "") -> None:
        super().__init__(message)
        self.part = part
        self.log_tail = log_tail


class AlreadyRunningError(EmbeddedError):
    """A platform recorded in the same var dir is still running."""


def settings_env(settings: PlatformSettings) -> dict[str, str]:
    """Environment variables that reproduce ``settings`` in a child ``incentives`` process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, Path):
            text = str(value.expanduser().resolve())
        else:
            text = str(value)
        env[f"INCENTIVES_{name.upper()}"] = text
    return env


def service_env(settings: PlatformSettings, bootstrap: str, temporal: str) -> dict[str, str]:
    """The environment of a service child: ours plus where the platform's parts are."""
    env = dict(os.environ)
    env.update(settings.port_env())
    env.update(
        {
            "INCENTIVES_KAFKA_BOOTSTRAP": bootstrap,
            "INCENTIVES_TEMPORAL_ADDRESS": temporal,
            "INCENTIVES_VAR_DIR": str(settings.resolved_var_dir()),
            "INCENTIVES_DEV_MODE": "true" if settings.dev_mode else "false",
            # The worker assigns reviewers from the desk's registry, wherever the desk listens.
            "INCENTIVES_WORKER_REVIEW_URL": f"http://127.0.0.1:{settings.service_port('review')}",
            # Disbursement pays through the simulated rail, wherever it listens.
            "INCENTIVES_DISBURSEMENT_RAIL_URL": f"http://127.0.0.1:{settings.service_port('rail')}",
            # The portal calls the APIs wherever they listen.
            "INCENTIVES_PORTAL_APPLICATIONS_URL": (
                f"http://127.0.0.1:{settings.service_port('applications')}"
            ),
            "INCENTIVES_PORTAL_REVIEW_URL": f"http://127.0.0.1:{settings.service_port('review')}",
            **{
                f"INCENTIVES_PORTAL_{name.upper()}_URL": (
                    f"http://127.0.0.1:{settings.service_port(name)}"
                )
                for name in ("zones", "disbursement", "audit")
            },
            # Log lines must reach the log file as they happen, not when a buffer fills.
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def service_argv(name: str) -> list[str]:
    """How a service child is started: the same interpreter, so the same environment."""
    return [sys.executable, "-m", "services.cli", "serve", name]


def ensure_not_running(var_dir: Path, console: Console, stop_timeout: float) -> None:
    """Refuse to start over a live platform; clean up after a supervisor that was killed."""
    state = read_state(var_dir)
    if state is None:
        return
    if state.supervisor_alive():
        raise AlreadyRunningError(
            f"a platform is already running from {var_dir} (supervisor PID "
            f"{state.supervisor_pid}); stop it with `incentives down --var-dir {var_dir}`"
        )
    leftovers = [part for part in state.parts if part.is_ours()]
    if leftovers:
        console.print(
            f"[yellow]A previous platform's supervisor died; stopping its leftover processes: "
            f"{', '.join(f'{p.name} (PID {p.pid})' for p in leftovers)}"
        )
        stop_parts(leftovers, stop_timeout)
    remove_state(var_dir)


def stop_parts(parts: Iterable[PartRecord], timeout: float) -> list[str]:
    """Stop recorded parts by PID, services before infrastructure; return the names stopped.

    Within one tier every process gets SIGTERM at once and the tier is awaited together, so
    stopping seven services costs one grace period, not seven.
    """
    stopped: list[str] = []
    parts = list(parts)
    for kind in ("service", "infra"):
        tier = [p for p in parts if p.kind == kind and p.is_ours()]
        for part in tier:
            with contextlib.suppress(ProcessLookupError):
                os.kill(part.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for part in tier:
            while pid_alive(part.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            stop_pid(part.pid, timeout=0)  # SIGKILL whatever ignored SIGTERM
            stopped.append(part.name)
    return stopped


class Supervisor:
    """Starts, watches and stops the embedded platform (one instance per ``up``)."""

    def __init__(self, settings: PlatformSettings, console: Console) -> None:
        self.settings = settings
        self.console = console
        self.var_dir = settings.resolved_var_dir()
        self.logs = self.var_dir / "logs"
        self.broker = TansuBroker(
            port=settings.broker_port, host=settings.host, log_path=self.logs / "broker.log"
        )
        self.temporal = TemporalDevServer(
            port=settings.temporal_port,
            ui_port=settings.temporal_ui_port,
            http_port=settings.temporal_http_port,
            metrics_port=settings.temporal_metrics_port,
            host=settings.host,
            db_path=self.var_dir / "temporal" / "temporal.db",
            log_path=self.logs / "temporal.log",
        )
        self.services: dict[str, ManagedProcess] = {}
        self._service_env: dict[str, str] = {}
        self.state = PlatformState(
            supervisor_pid=os.getpid(),
            supervisor_argv=process_cmdline(os.getpid()),
            status="starting",
            var_dir=str(self.var_dir),
            kafka_bootstrap=self.broker.bootstrap,
            temporal_address=self.temporal.target,
            temporal_ui_url=self.temporal.ui_url,
            started_at=datetime.now(UTC).isoformat(),
        )
        self.stop_requested = asyncio.Event()
        self.stop_signal: int | None = None
        self.started_at = time.monotonic()
        #: When each part was last restarted (first starts count from ``started_at``).
        self._started: dict[str, float] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> int:
        """Bring the platform up, keep it running until asked to stop; return an exit code."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self._request_stop, signum)
        try:
            startup = asyncio.create_task(self.start())
            stop_wait = asyncio.create_task(self.stop_requested.wait())
            await asyncio.wait({startup, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not startup.done():
                startup.cancel()
                with contextlib.suppress(asyncio.CancelledError, EmbeddedError):
                    await startup
                self.console.print("[yellow]Stop requested during start-up.")
                # Ctrl-C keeps the shell convention (130); `down` (SIGTERM) is an orderly stop.
                return 130 if self.stop_signal == signal.SIGINT else 0
            stop_wait.cancel()
            try:
                startup.result()
            except StartupError as exc:
                self.report_failure(exc)
                return 1
            except EmbeddedError as exc:
                self.console.print(f"[red bold]Start-up failed:[/] {exc}")
                return 1
            self.print_urls(self.console, self.state)
            self.console.print(
                f"[bold]Running.[/] Ctrl-C or `incentives down` stops everything. Logs: {self.logs}"
            )
            return await self.watch()
        finally:
            self.console.print("Stopping the platform...")
            self.state.status = "stopping"
            with contextlib.suppress(OSError):
                write_state(self.var_dir, self.state)
            self.stop_all()
            remove_state(self.var_dir)
            self.console.print("[green]Stopped.")

    async def start(self) -> None:
        """Start every part and wait until all are healthy."""
        check_ports_free(self.settings.wanted_ports())
        # Resolve both binaries before starting anything, so a missing one starts nothing.
        self.broker.command()
        self.temporal.command()
        self.logs.mkdir(parents=True, exist_ok=True)
        write_state(self.var_dir, self.state)

        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description:<14}"),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        ) as progress:
            tasks = {
                name: progress.add_task(name, state="starting", total=1)
                for name in ("broker", "temporal", *SERVICE_NAMES)
            }

            self._record(self.broker.start(), "infra", self.broker.port)
            self._record(self.temporal.start(), "infra", self.temporal.port)
            await self._ready("broker", self.broker.wait_ready(timeout_s=20), progress, tasks)
            try:
                specs = registry_topics()
            except ImportError as exc:
                raise StartupError(f"the topic registry is not importable: {exc}") from exc
            await create_topics(self.broker.bootstrap, specs)
            self.console.print(f"Created {len(specs)} topics (with their .dlq twins).")

            env = service_env(self.settings, self.broker.bootstrap, self.temporal.target)
            self._service_env = env
            for name in SERVICE_NAMES:
                proc = ManagedProcess(name, service_argv(name), self.logs / f"{name}.log", env=env)
                proc.start()
                self._record(proc, "service", self.settings.service_port(name), health=True)
                self.services[name] = proc

            timeout = self.settings.startup_timeout
            await asyncio.gather(
                self._ready(
                    "temporal", self.temporal.wait_ready(timeout_s=timeout), progress, tasks
                ),
                *(
                    self._ready(name, self._wait_healthy(name, timeout), progress, tasks)
                    for name in SERVICE_NAMES
                ),
            )
        self.state.urls = await self.collect_urls()
        self.state.status = "ready"
        write_state(self.var_dir, self.state)
        elapsed = time.monotonic() - self.started_at
        self.console.print(f"[green]All parts healthy in {elapsed:.1f} s.")

    async def watch(self) -> int:
        """Watch the children until a stop is requested.

        A part that dies (a service, the worker, the broker or Temporal) is reported with its
        log tail and started again after a capped exponential backoff (:func:`restart_delay`)
        that starts over once the part has run :data:`STABLE_AFTER` seconds. Its restart
        count and last exit code go to the state file, where ``incentives status`` shows them.
        """
        restart_at: dict[str, float] = {}
        #: Deaths in a row of each part, each sooner than STABLE_AFTER after its start.
        streak: dict[str, int] = {}
        while not self.stop_requested.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), timeout=0.5)
            if self.stop_requested.is_set():
                break
            for proc in self._all_processes():
                if proc.running():
                    continue
                if proc.name not in restart_at:
                    record = self.state.part(proc.name)
                    restarts = record.restarts if record else 0
                    ran = time.monotonic() - self._started.get(proc.name, self.started_at)
                    streak[proc.name] = 0 if ran >= STABLE_AFTER else streak.get(proc.name, 0)
                    delay = restart_delay(streak[proc.name])
                    streak[proc.name] += 1
                    self.console.print(
                        Panel(
                            proc.log_tail(20) or "(empty log)",
                            title=f"[red]{proc.name} exited with code {proc.exit_code()}",
                            subtitle=str(proc.log_path),
                        )
                    )
                    self.console.print(
                        f"[red]{proc.name} died.[/] Restarting it in {delay:.0f} s "
                        f"(restart {restarts + 1})."
                    )
                    if record is not None:
                        record.last_exit = proc.exit_code()
                        write_state(self.var_dir, self.state)
                    restart_at[proc.name] = time.monotonic() + delay
                elif time.monotonic() >= restart_at[proc.name]:
                    del restart_at[proc.name]
                    self._started[proc.name] = time.monotonic()
                    if proc.name in ("broker", "temporal"):
                        await self._restart_infra(proc.name)
                    else:
                        self._restart(proc)
        return 0

    async def _restart_infra(self, name: str) -> None:
        """Start the broker or Temporal again on its port; the broker gets its topics back.

        The broker comes back empty (memory storage); the services notice a broker they have
        not published to and republish their outboxes (:mod:`services.kit.republish`).
        Temporal keeps its SQLite file, so workflows carry on.
        """
        proc = self.broker.start() if name == "broker" else self.temporal.start()
        record = self.state.part(name)
        if record is not None and proc.pid is not None:
            record.pid = proc.pid
            record.restarts += 1
            write_state(self.var_dir, self.state)
        self.console.print(f"[yellow]{name} restarted (PID {proc.pid}).")
        try:
            if name == "broker":
                await self.broker.wait_ready(timeout_s=20)
                # Before the services' clients name them (Tansu would auto-create them with
                # its default partition count).
                await create_topics(self.broker.bootstrap, registry_topics())
            else:
                await self.temporal.wait_ready(timeout_s=self.settings.startup_timeout)
        except Exception as exc:  # it died again or hangs: the watch loop sees to it
            self.console.print(f"[red]{name} did not come back: {exc}")

    def _restart(self, dead: ManagedProcess) -> None:
        """Start a dead service again and record it."""
        proc = ManagedProcess(dead.name, dead.argv, dead.log_path, env=self._service_env)
        proc.start()
        self.services[dead.name] = proc
        record = self.state.part(dead.name)
        if record is not None and proc.pid is not None:
            record.pid = proc.pid
            record.restarts += 1
            write_state(self.var_dir, self.state)
        self.console.print(f"[yellow]{dead.name} restarted (PID {proc.pid}).")

    def stop_all(self) -> list[str]:
        """Stop services, then Temporal and the broker, by PID; return the unclean exits.

        Each tier gets SIGTERM at once and one shared grace period. Exit codes are checked
        because a crash on the way out (e.g. the Temporal SDK's exit crash, SIGABRT) is a bug
        worth seeing, even though the platform was stopping anyway.
        """
        already_dead = {p.name for p in self._all_processes() if not p.running()}
        infra = [p for p in (self.temporal.proc, self.broker.proc) if p is not None]
        problems: list[str] = []
        for tier in (list(self.services.values()), infra):
            for proc in tier:
                proc.terminate()
            deadline = time.monotonic() + self.settings.stop_timeout
            for proc in tier:
                if proc.wait_or_kill(deadline - time.monotonic()):
                    problems.append(
                        f"{proc.name} ignored SIGTERM for {self.settings.stop_timeout:.0f} s "
                        "and was killed"
                    )
                elif proc.name not in already_dead and proc.exit_code() not in CLEAN_EXIT_CODES:
                    problems.append(f"{proc.name} exited with code {proc.exit_code()} on stop")
        for problem in problems:
            self.console.print(f"[yellow]{problem} (see its log in {self.logs})")
        return problems

    # -- helpers -----------------------------------------------------------------------------

    def _request_stop(self, signum: int) -> None:
        """Signal handler: remember the first stop signal and wake the main task."""
        if self.stop_signal is None:
            self.stop_signal = signum
        self.stop_requested.set()

    def _all_processes(self) -> list[ManagedProcess]:
        procs = [p for p in (self.broker.proc, self.temporal.proc) if p is not None]
        return procs + list(self.services.values())

    def _record(
        self, proc: ManagedProcess, kind: str, port: int | None, *, health: bool = False
    ) -> None:
        """Record a started child in the state file at once, before waiting on it."""
        assert proc.pid is not None
        self.state.parts.append(
            PartRecord(
                name=proc.name,
                kind="infra" if kind == "infra" else "service",
                pid=proc.pid,
                argv=proc.argv,
                log=str(proc.log_path),
                port=port,
                health_url=f"http://127.0.0.1:{port}/health" if health else None,
            )
        )
        write_state(self.var_dir, self.state)

    async def _ready(
        self,
        name: str,
        waiter: Awaitable[None],
        progress: Progress,
        tasks: dict[str, TaskID],
    ) -> None:
        """Await one part's readiness, updating its progress line; wrap failures."""
        try:
            await waiter
        except EmbeddedError as exc:
            progress.update(tasks[name], state="[red]failed")
            log = self.logs / f"{name}.log"
            raise StartupError(str(exc), part=name, log_tail=tail(log, 30)) from exc
        progress.update(tasks[name], state="[green]healthy", completed=1)

    async def _wait_healthy(self, name: str, timeout_s: float) -> None:
        """Poll a service's /health until it answers 200, failing fast if it exits."""
        proc = self.services[name]
        url = f"http://127.0.0.1:{self.settings.service_port(name)}/health"
        deadline = time.monotonic() + timeout_s
        last = "not started"
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if not proc.running():
                    raise EmbeddedError(f"{name} exited with code {proc.exit_code()}")
                ok, last = await http_health(client, url)
                if ok:
                    return
                if time.monotonic() >= deadline:
                    raise EmbeddedError(f"{name} not healthy after {timeout_s:.0f} s ({last})")
                await asyncio.sleep(0.2)

    async def collect_urls(self) -> dict[str, dict[str, str]]:
        """The URLs worth printing, keeping only the docs pages that really answer."""

        async def answers(client: httpx.AsyncClient, url: str) -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get(url)).status_code == 200
            return False

        urls: dict[str, dict[str, str]] = {}
        async with httpx.AsyncClient(timeout=5.0) as client:
            for name in SERVICE_NAMES:
                base = f"http://127.0.0.1:{self.settings.service_port(name)}"
                urls[name] = {"health": f"{base}/health"}
                if name in API_SERVICES:
                    urls[name]["api"] = base
                if name in WEB_SERVICES:
                    urls[name]["web"] = base
            candidates = [
                (name, key, f"http://127.0.0.1:{self.settings.service_port(name)}{path}")
                for name in SERVICE_NAMES
                if name not in WEB_SERVICES
                for key, path in (("openapi", "/docs"), ("asyncapi", "/asyncapi"))
            ]
            found = await asyncio.gather(*(answers(client, url) for _, _, url in candidates))
        for (name, key, url), ok in zip(candidates, found, strict=True):
            if ok:
                urls[name][key] = url
        return urls

    def report_failure(self, exc: StartupError) -> None:
        """Explain a failed start-up: which part, why, and the end of its log."""
        self.console.print(f"[red bold]Start-up failed:[/] {exc}")
        if exc.log_tail:
            self.console.print(
                Panel(exc.log_tail, title=f"last lines of {exc.part}.log", border_style="red")
            )

    @staticmethod
    def print_urls(console: Console, state: PlatformState) -> None:
        """Print the table of URLs of a ready platform."""
        table = Table(title="Incentives platform")
        table.add_column("part", style="bold")
        table.add_column("what")
        table.add_column("URL", no_wrap=True)
        labels = {
            "web": "web pages (sign in here)",
            "api": "API",
            "openapi": "OpenAPI docs",
            "asyncapi": "AsyncAPI docs",
        }
        for name in SERVICE_NAMES:
            entry = state.urls.get(name, {})
            # Health-only processes (eligibility, worker) show their health URL instead.
            keys: list[str] = [k for k in ("web", "api", "openapi", "asyncapi") if k in entry]
            keys = keys or ["health"]
            for index, key in enumerate(keys):
                table.add_row(
                    name if index == 0 else "",
                    labels.get(key, key),
                    entry.get(key, "-"),
                    end_section=index == len(keys) - 1,
                )
        if state.temporal_ui_url:
            table.add_row("temporal", "Web UI", state.temporal_ui_url)
        table.add_row(
            "temporal" if not state.temporal_ui_url else "", "gRPC", state.temporal_address
        )
        table.add_row("broker", "Kafka", state.kafka_bootstrap)
        console.print(table)


def down(var_dir: Path, console: Console, stop_timeout: float) -> list[str]:
    """Stop the platform recorded in ``var_dir``; return the names of the parts stopped.

    The supervisor is asked first (SIGTERM) because it stops its children in order and cleans
    its state; anything still alive afterwards (a killed supervisor) is stopped here by PID.
    """
    state = read_state(var_dir)
    if state is None:
        return []
    if state.supervisor_alive():
        console.print(f"Asking the supervisor (PID {state.supervisor_pid}) to stop...")
        # Its own shutdown takes up to two grace periods (services, then infrastructure).
        if not stop_pid(state.supervisor_pid, timeout=2 * stop_timeout + 15):
            console.print(f"[yellow]Supervisor PID {state.supervisor_pid} would not stop.")
    stopped = [p.name for p in state.parts if not p.is_ours()]
    stopped += stop_parts(state.parts, stop_timeout)
    remove_state(var_dir)
    return stopped
