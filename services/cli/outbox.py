"""``incentives outbox republish``: queue a service's outbox rows for publication again.

For a broker that lost records (services also do it by themselves when they meet a broker they
have not published to: :class:`services.kit.republish.BrokerEpoch`). The rows are only marked;
the service's relay publishes them, at once when it runs, else at its next start. Idempotent
consumers drop what they had already processed.
"""

from __future__ import annotations

import asyncio
import importlib
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from services.cli.console import make_console

app = typer.Typer(help="Operate the services' outboxes.", no_args_is_help=True)

#: Services that own an outbox (the Temporal worker publishes through activities, not one).
OUTBOX_SERVICES: tuple[str, ...] = (
    "applications",
    "eligibility",
    "zones",
    "disbursement",
    "review",
    "audit",
)


async def republish_service(name: str, var_dir: Path, since: datetime | None) -> int | None:
    """Queue ``name``'s outbox rows again; ``None`` when its database does not exist yet."""
    from services.kit.db import create_engine, create_session_factory, is_sqlite
    from services.kit.republish import republish_outbox

    settings = importlib.import_module(f"services.{name}.settings").Settings(var_dir=var_dir)
    url = settings.database_url
    if is_sqlite(url) and not (var_dir / f"{name}.db").exists():
        return None
    engine = create_engine(url)
    try:
        return await republish_outbox(create_session_factory(engine), since)
    finally:
        await engine.dispose()


@app.command("republish")
def republish(
    service: Annotated[
        str | None,
        typer.Option("--service", help=f"One of: {', '.join(OUTBOX_SERVICES)}; default all."),
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            "--since",
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"],
            help="Only rows created at or after this time (UTC unless it says); default all.",
        ),
    ] = None,
    var_dir: Annotated[
        Path | None,
        typer.Option(
            "--var-dir", help="State folder of the embedded platform (env INCENTIVES_VAR_DIR)."
        ),
    ] = None,
) -> None:
    """Publish a service's outbox again, in id order; consumers drop what they have seen."""
    from datetime import UTC

    from services.cli.main import load_settings

    console, err = make_console(), make_console(stderr=True)
    if service is not None and service not in OUTBOX_SERVICES:
        err.print(f"[red]Unknown service {service!r}.[/] Valid: {', '.join(OUTBOX_SERVICES)}.")
        raise typer.Exit(2)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    var = load_settings(var_dir=var_dir).resolved_var_dir()
    for name in [service] if service else OUTBOX_SERVICES:
        count = asyncio.run(republish_service(name, var, since))
        if count is None:
            console.print(f"{name}: no database yet in {var}")
        else:
            console.print(f"{name}: {count} outbox row(s) queued for publication again")
