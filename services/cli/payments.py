"""``incentives payments``: operate the disbursement service's payouts.

- ``incentives payments reconcile``: settle every payment whose outcome is unknown (the rail
  may have paid, but its answer was lost) by asking the rail, then send what is due. The
  disbursement service also does this periodically; this is the same job, on demand.

It uses the disbursement service's own settings (``INCENTIVES_DISBURSEMENT_DATABASE_URL``,
``INCENTIVES_DISBURSEMENT_RAIL_URL``, ``INCENTIVES_VAR_DIR``). Registered in the main app with
``app.add_typer(payments.app, name="payments")``; the service code is imported inside the
command, so ``incentives --help`` stays fast.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Operate payouts: reconcile with the payment rail.", no_args_is_help=True)


async def _reconcile(var_dir: Path | None, rail_url: str | None) -> tuple[int, int, int]:
    from services.disbursement.domain import OPEN_PAYMENTS
    from services.disbursement.payouts import pay_due, reconcile
    from services.disbursement.rail import RailClient
    from services.disbursement.settings import Settings
    from services.disbursement.store import payments_in
    from services.kit.db import create_engine, create_session_factory
    from services.kit.uow import UnitOfWorkFactory

    overrides: dict[str, object] = {}
    if var_dir is not None:
        overrides["var_dir"] = var_dir
    if rail_url is not None:
        overrides["rail_url"] = rail_url
    settings = Settings(**overrides)  # type: ignore[arg-type]
    engine = create_engine(settings.database_url)
    rail = RailClient(settings.rail_url, timeout=settings.rail_timeout_seconds)
    uow = UnitOfWorkFactory(create_session_factory(engine))
    try:
        settled = await reconcile(uow, rail)
        paid = await pay_due(uow, rail)
        async with uow() as unit:
            still_open = len(
                await payments_in(
                    unit.session, [s.value for s in OPEN_PAYMENTS], due_by=None, limit=10_000
                )
            )
    finally:
        await rail.aclose()
        await engine.dispose()
    return settled, paid, still_open


@app.command("reconcile")
def reconcile_command(
    var_dir: Annotated[
        Path | None,
        typer.Option("--var-dir", help="State folder. Env: INCENTIVES_VAR_DIR. Default ./var."),
    ] = None,
    rail_url: Annotated[
        str | None,
        typer.Option(help="The rail's base URL. Env: INCENTIVES_DISBURSEMENT_RAIL_URL."),
    ] = None,
) -> None:
    """Settle payments whose outcome is unknown by asking the rail; send the due ones."""
    settled, paid, still_open = asyncio.run(_reconcile(var_dir, rail_url))
    typer.echo(
        f"Settled {settled} payment(s) of unknown outcome; {paid} more answered by the rail; "
        f"{still_open} still open."
    )
