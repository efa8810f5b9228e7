"""The ``incentives`` command-line interface (Typer).

Commands:
- ``up``: run the whole embedded platform (broker, Temporal, services, worker) in the foreground,
  or in the background with ``--detach``;
- ``down``: stop the platform recorded in the var dir;
- ``status``: probe every part, exit 0 only when all are healthy;
- ``serve NAME``: run one service in the foreground, configured by environment (as in a
  container);
- ``topics create``: create the registry's topics on any Kafka cluster (idempotent);
- ``dlq list|show|redrive``: inspect dead letters and send them back to their topic;
- ``outbox republish``: queue a service's outbox for publication again;
- ``rules check|explain``: validate eligibility rule files, explain a decision rule by rule;
- ``token``: issue a development bearer token for a principal;
- ``demo load|chaos``: synthetic load through the public APIs, and chaos under load;
- ``audit checkpoint|verify|export|verify-bundle|history``: check the transparency log.

Further command groups plug in with ``app.add_typer(...)`` below.
Nothing heavy is imported at module import time: each command imports what it needs.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from services.cli.audit import app as audit_app
from services.cli.console import make_app, make_console
from services.cli.demo.commands import app as demo_app
from services.cli.dlq import app as dlq_app
from services.cli.outbox import app as outbox_app
from services.cli.payments import app as payments_app
from services.cli.rules import app as rules_app
from services.cli.settings import SERVICE_NAMES, PlatformSettings, service_module
from services.cli.token import token

app = make_app(
    name="incentives",
    help="Run and operate the investment-incentive platform.",
    no_args_is_help=True,
    add_completion=False,
)
topics_app = make_app(help="Manage the platform's Kafka topics.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(rules_app, name="rules")
app.add_typer(audit_app, name="audit")
app.add_typer(payments_app, name="payments")
app.add_typer(dlq_app, name="dlq")
app.add_typer(outbox_app, name="outbox")
app.add_typer(demo_app, name="demo")
app.command("token")(token)

VarDirOption = Annotated[
    Path | None,
    typer.Option(
        "--var-dir",
        help="State folder (logs, PIDs, databases). Env: INCENTIVES_VAR_DIR. Default ./var.",
    ),
]


def _port(help_text: str) -> Any:
    """A port option: range-checked; when not given, the setting (env or default) applies."""
    return typer.Option(min=1, max=65535, show_default=False, help=help_text)


def _console() -> Console:
    return make_console()


def _err_console() -> Console:
    return make_console(stderr=True)


def load_settings(**overrides: Any) -> PlatformSettings:
    """Settings from the environment, with command-line options (those given) taking priority."""
    return PlatformSettings(**{k: v for k, v in overrides.items() if v is not None})


# ---------------------------------------------------------------------------------------------
# up / down / status
# ---------------------------------------------------------------------------------------------


@app.command()
def up(
    var_dir: VarDirOption = None,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach", "-d", help="Start in the background and return once all is healthy."
        ),
    ] = False,
    broker_port: Annotated[int | None, _port("Kafka broker. Default 9092.")] = None,
    temporal_port: Annotated[int | None, _port("Temporal gRPC. Default 7233.")] = None,
    temporal_ui_port: Annotated[int | None, _port("Temporal Web UI. Default 8233.")] = None,
    portal_port: Annotated[int | None, _port("portal web pages. Default 8000.")] = None,
    applications_port: Annotated[int | None, _port("applications API. Default 8001.")] = None,
    review_port: Annotated[int | None, _port("review API. Default 8002.")] = None,
    audit_port: Annotated[int | None, _port("audit API. Default 8003.")] = None,
    zones_port: Annotated[int | None, _port("zones API. Default 8004.")] = None,
    disbursement_port: Annotated[int | None, _port("disbursement API. Default 8005.")] = None,
    eligibility_port: Annotated[int | None, _port("eligibility health. Default 8006.")] = None,
    worker_port: Annotated[int | None, _port("worker health. Default 8007.")] = None,
    rail_port: Annotated[int | None, _port("simulated bank rail. Default 8010.")] = None,
    startup_timeout: Annotated[
        float | None, typer.Option(help="Seconds to wait for every part. Default 90.")
    ] = None,
) -> None:
    """Start the broker, Temporal, every service and the worker; stop all on Ctrl-C.

    Every port can also be set by environment (INCENTIVES_BROKER_PORT,
    INCENTIVES_APPLICATIONS_PORT, ...). A port already in use stops the command before anything
    starts, naming the port and the part that wanted it.
    """
    from services.cli.embedded import EmbeddedError, PortInUseError, check_ports_free
    from services.cli.supervisor import Supervisor, ensure_not_running

    settings = load_settings(
        var_dir=var_dir,
        broker_port=broker_port,
        temporal_port=temporal_port,
        temporal_ui_port=temporal_ui_port,
        portal_port=portal_port,
        applications_port=applications_port,
        review_port=review_port,
        audit_port=audit_port,
        zones_port=zones_port,
        disbursement_port=disbursement_port,
        eligibility_port=eligibility_port,
        worker_port=worker_port,
        rail_port=rail_port,
        startup_timeout=startup_timeout,
    )
    console, err = _console(), _err_console()
    var = settings.resolved_var_dir()
    try:
        ensure_not_running(var, console, settings.stop_timeout)
        check_ports_free(settings.wanted_ports())
    except PortInUseError as exc:
        for conflict in exc.conflicts:
            err.print(f"[red]{conflict.describe()}")
        err.print("Nothing was started. Free the port or choose another (see --help).")
        raise typer.Exit(2) from exc
    except EmbeddedError as exc:
        err.print(f"[red]{exc}")
        raise typer.Exit(1) from exc

    if detach:
        raise typer.Exit(_up_detached(settings, console, err))
    raise typer.Exit(asyncio.run(Supervisor(settings, console).run()))


def _up_detached(settings: PlatformSettings, console: Console, err: Console) -> int:
    """Run ``up`` as a background supervisor and wait until it reports the platform ready."""
    from services.cli.embedded import stop_pid, tail
    from services.cli.state import read_state
    from services.cli.supervisor import Supervisor, settings_env

    var = settings.resolved_var_dir()
    log_path = var / "logs" / "platform.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if log_path.exists():
        log_path.replace(log_path.with_name(log_path.name + ".1"))
    env = {**os.environ, **settings_env(settings)}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    console.print(f"Supervisor started in the background (PID {proc.pid}); log: {log_path}")
    deadline = time.monotonic() + settings.startup_timeout + 30
    while True:
        state = read_state(var)
        if state and state.supervisor_pid == proc.pid and state.status == "ready":
            Supervisor.print_urls(console, state)
            console.print(f"Stop it with: incentives down --var-dir {var}")
            return 0
        if proc.poll() is not None:
            err.print(f"[red]The platform did not start (exit code {proc.returncode}):")
            err.print(tail(log_path, 40))
            return 1
        if time.monotonic() > deadline:
            err.print("[red]The platform did not become healthy in time; stopping it.")
            stop_pid(proc.pid, timeout=2 * settings.stop_timeout + 15)
            err.print(tail(log_path, 40))
            return 1
        time.sleep(0.2)


@app.command()
def down(var_dir: VarDirOption = None) -> None:
    """Stop the platform recorded in the var dir (services first, then Temporal and the broker)."""
    from services.cli.supervisor import down as stop_platform

    settings = load_settings(var_dir=var_dir)
    console = _console()
    var = settings.resolved_var_dir()
    stopped = stop_platform(var, console, settings.stop_timeout)
    if not stopped:
        console.print(f"No running platform recorded in {var}.")
        return
    console.print(f"[green]Stopped:[/] {', '.join(stopped)}")


@app.command()
def status(
    var_dir: VarDirOption = None,
    wait: Annotated[
        float,
        typer.Option(help="Keep probing up to this many seconds until everything is healthy."),
    ] = 0.0,
    kafka_bootstrap: Annotated[
        str | None,
        typer.Option(help="Probe this Kafka instead (env INCENTIVES_KAFKA_BOOTSTRAP)."),
    ] = None,
    temporal_address: Annotated[
        str | None,
        typer.Option(help="Probe this Temporal instead (env INCENTIVES_TEMPORAL_ADDRESS)."),
    ] = None,
    metrics: Annotated[
        bool,
        typer.Option(
            "--metrics",
            help="Also print the key figures from every part's /metrics (lag, backlog, DLQ...).",
        ),
    ] = False,
) -> None:
    """Probe the broker, Temporal and every service; exit 0 only when all are healthy.

    Uses the platform recorded in the var dir when there is one (so ports chosen at ``up`` are
    known); otherwise the configured ports, e.g. for a docker-compose deployment. With
    ``--metrics``, also the figures an operator looks at first, scraped from each ``/metrics``.
    """
    from services.cli.status import check_platform

    settings = load_settings(
        var_dir=var_dir, kafka_bootstrap=kafka_bootstrap, temporal_address=temporal_address
    )
    deadline = time.monotonic() + wait
    while True:
        results = asyncio.run(check_platform(settings))
        unhealthy = [r.part for r in results if not r.healthy]
        if not unhealthy or time.monotonic() >= deadline:
            break
        time.sleep(0.5)

    from services.cli.state import read_state

    recorded = read_state(settings.resolved_var_dir())
    records = {r.part: recorded.part(r.part) if recorded else None for r in results}
    # The supervisor's restarts, as a column once any part has been restarted or has died.
    show_restarts = any(p is not None and (p.restarts or p.last_exit) for p in records.values())
    table = Table(title="Incentives platform status")
    columns = ["part", "address", "state", "detail", "PID"]
    for column in columns + (["restarts (last exit)"] if show_restarts else []):
        table.add_column(column)
    for r in results:
        state = "[green]healthy" if r.healthy else "[red]UNHEALTHY"
        row = [r.part, r.address, state, r.detail, str(r.pid or "")]
        part = records[r.part]
        if show_restarts:
            died = "" if part is None or part.last_exit is None else f" ({part.last_exit})"
            row.append(f"{part.restarts}{died}" if part else "")
        table.add_row(*row)
    console = _console()
    console.print(table)
    if metrics:
        from services.cli.metrics import parts_table, platform_table, scrape_all
        from services.cli.status import metrics_urls

        scrapes = asyncio.run(scrape_all(metrics_urls(settings)))
        console.print(parts_table(scrapes))
        console.print(platform_table(scrapes))
    if unhealthy:
        console.print(f"[red]Unhealthy: {', '.join(unhealthy)}")
        raise typer.Exit(1)
    console.print(f"[green]All {len(results)} parts healthy.")


# ---------------------------------------------------------------------------------------------
# serve
# ---------------------------------------------------------------------------------------------


@app.command()
def serve(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICE_NAMES)}.")],
) -> None:
    """Run one service in the foreground, configured by environment (as in a container)."""
    err = _err_console()
    if name not in SERVICE_NAMES:
        err.print(f"[red]Unknown service {name!r}.[/] Valid names: {', '.join(SERVICE_NAMES)}.")
        raise typer.Exit(2)
    module_name = service_module(name)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only "the service module itself is missing" gets a short message; a missing
        # dependency inside it is a real bug and keeps its traceback.
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            err.print(f"[red]Service {name!r} is not available: module {module_name} not found.")
            raise typer.Exit(1) from exc
        raise
    entry = getattr(module, "main", None)
    if not callable(entry):
        err.print(f"[red]{module_name} has no main() function.")
        raise typer.Exit(1)
    entry()


# ---------------------------------------------------------------------------------------------
# topics
# ---------------------------------------------------------------------------------------------


@topics_app.command("create")
def topics_create(
    bootstrap: Annotated[
        str | None,
        typer.Option(
            help="Kafka bootstrap servers (env INCENTIVES_KAFKA_BOOTSTRAP; default the "
            "embedded broker's 127.0.0.1:INCENTIVES_BROKER_PORT)."
        ),
    ] = None,
    replication_factor: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Replication factor of newly created topics "
            "(env INCENTIVES_TOPIC_REPLICATION_FACTOR, default 1).",
        ),
    ] = None,
    wait: Annotated[
        float, typer.Option(help="Keep retrying this many seconds while Kafka is unreachable.")
    ] = 30.0,
) -> None:
    """Create every registry topic and its .dlq twin; existing topics are left as they are."""
    from services.cli.topics import (
        TopicCreationError,
        TopicResult,
        create_topics,
        registry_topics,
    )

    settings = load_settings(kafka_bootstrap=bootstrap, topic_replication_factor=replication_factor)
    target = settings.bootstrap()
    console, err = _console(), _err_console()
    from services.kit.retry import wait_until_available

    async def create() -> list[TopicResult]:
        return await create_topics(
            target, registry_topics(), replication_factor=settings.topic_replication_factor
        )

    try:
        results = asyncio.run(
            wait_until_available(
                create, name=f"Kafka at {target}", deadline=wait, final=(TopicCreationError,)
            )
        )
    except TopicCreationError as exc:  # a refusal, not unavailability: retrying won't help
        err.print(f"[red]{exc}")
        raise typer.Exit(1) from exc
    except Exception as exc:  # any broker failure becomes one clear line, not a traceback
        err.print(f"[red]Cannot create topics on {target}: {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from exc
    table = Table(title=f"Topics on {target}")
    for column in ("topic", "partitions", "result"):
        table.add_column(column)
    mismatched = False
    for r in results:
        if r.actual_partitions is not None and r.actual_partitions != r.wanted_partitions:
            mismatched = True
            result = f"[yellow]exists with {r.actual_partitions} partitions"
        else:
            result = "[green]created" if r.created else "exists"
        table.add_row(r.name, str(r.wanted_partitions), result)
    console.print(table)
    if mismatched:
        err.print("[yellow]Some topics exist with a different partition count than the registry.")
        raise typer.Exit(1)
