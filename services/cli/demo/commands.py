"""``incentives demo load`` and ``incentives demo chaos``: the Typer commands."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.cli.console import make_app, make_console

if TYPE_CHECKING:
    from services.cli.demo.checks import Report
    from services.cli.demo.load import LoadRun, Summary

app = make_app(
    help="Synthetic load, and chaos under load, against a running platform.",
    no_args_is_help=True,
)

VarDir = Annotated[
    Path | None,
    typer.Option(
        "--var-dir",
        help="State folder of the running platform (its ports). Env: INCENTIVES_VAR_DIR.",
    ),
]
Applications = Annotated[
    int, typer.Option("--applications", "-n", min=1, max=100_000, help="Applications to submit.")
]
Rate = Annotated[
    float,
    typer.Option(min=0, help="Submissions per second; 0 submits as fast as they are answered."),
]
StallTimeout = Annotated[
    float,
    typer.Option(
        min=1, help="Seconds without any application moving after which the rest count as stuck."
    ),
]
JsonOut = Annotated[
    Path | None, typer.Option("--json", help="Also write the figures to this JSON file.")
]


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def print_summary(console: Console, summary: Summary) -> None:
    """The run's figures as a table."""
    table = Table(title="Demo load")
    table.add_column("figure")
    table.add_column("value")
    for name, value in summary.table_rows():
        table.add_row(name, value)
    console.print(table)
    for error in summary.errors[:10]:
        console.print(f"[yellow]{error}")
    if len(summary.errors) > 10:
        console.print(f"[yellow]... and {len(summary.errors) - 10} more")


def print_report(console: Console, report: Report) -> None:
    """The final check's figures as a table; each non-zero one in red."""
    table = Table(title="Final check (every figure must be 0)")
    table.add_column("figure")
    table.add_column("count", justify="right")
    table.add_column("examples")
    for name, items in report.figures().items():
        style = "green" if not items else "red"
        table.add_row(name, f"[{style}]{len(items)}", ", ".join(items[:3]))
    console.print(table)
    for name, value in report.facts.items():
        console.print(f"{name}: {value}")


async def _load(
    settings_var_dir: Path | None,
    console: Console,
    *,
    applications: int,
    rate: float,
    auto_review: bool,
    accept_offers: bool,
    stall_timeout: float,
    chaos: tuple[float, list[str], int | None, bool, int | None] | None = None,
    with_check: bool = False,
    poll_interval: float = 1.0,
    until: str | None = None,
) -> tuple[Summary, Report | None, dict[str, object]]:
    from services.cli.demo.api import Api, Endpoints
    from services.cli.demo.chaos import Chaos
    from services.cli.demo.checks import check
    from services.cli.demo.load import LoadRun
    from services.cli.settings import PlatformSettings

    overrides: dict[str, Any] = {"var_dir": settings_var_dir} if settings_var_dir else {}
    settings = PlatformSettings(**overrides)
    extra: dict[str, object] = {}
    async with Api(Endpoints.of(settings)) as api:
        run = LoadRun(
            api,
            applications,
            rate=rate,
            auto_review=auto_review,
            accept_offers=accept_offers,
            stall_timeout=stall_timeout,
            poll_interval=poll_interval,
            until=until,
        )
        killer = None
        if chaos is not None:
            every, parts, seed, in_turn, count = chaos
            killer = Chaos(
                settings.resolved_var_dir(),
                every=every,
                parts=parts,
                seed=seed,
                in_turn=in_turn,
                count=count,
            )
        with _progress(console) as progress:
            task = progress.add_task("at rest", total=applications, detail="")

            def tick(current: LoadRun) -> None:
                detail = f"submitted {current.submitted}, decisions {current.decisions}" + (
                    f", kills {len(killer.kills)}" if killer else ""
                )
                progress.update(task, completed=current.at_rest, detail=detail)

            killing = asyncio.create_task(killer.run()) if killer else None

            async def recover() -> None:
                """Make the kills still owed, stop killing; wait until every part answers again."""
                if killer is None or killing is None:
                    return
                owed = (killer.count or 0) - len(killer.kills)
                if owed > 0:
                    progress.console.print(f"Journeys at rest; {owed} more kill(s) to make.")
                    # Each kill waits for a live part; a part comes back within a minute.
                    if not await killer.until_enough(patience=owed * (killer.every + 60)):
                        progress.console.print(
                            f"[red]Made {len(killer.kills)} of {killer.count} kills."
                        )
                killer.stop()
                await killing
                progress.console.print(
                    f"Killed {len(killer.kills)} times; waiting for every part to be back."
                )
                down = await killer.wait_all_back(patience=180)
                if down:
                    progress.console.print(f"[red]Still down: {', '.join(down)}")

            try:
                summary = await run.run(on_tick=tick, then=recover if killer else None)
            finally:
                if killer is not None and killing is not None and not killing.done():
                    killer.stop()
                    await killing
        report = None
        if killer is None and with_check:
            report = await check(api, run, settle_timeout=stall_timeout)
        if killer is not None:
            kills = [f"{k.part}@{k.at:.0f}s" for k in killer.kills]
            extra["kills"] = kills
            extra["kills_per_part"] = dict(Counter(k.part for k in killer.kills))
            console.print(f"Kills: {', '.join(kills)}")
            report = await check(api, run, settle_timeout=stall_timeout)
    return summary, report, extra


@app.command("load")
def load(
    applications: Applications = 20,
    auto_review: Annotated[
        bool, typer.Option("--auto-review", help="Decide every task as its assigned reviewer.")
    ] = False,
    accept_offers: Annotated[
        bool,
        typer.Option("--accept-offers", help="Accept offers and report milestones until paid."),
    ] = False,
    rate: Rate = 0.0,
    stall_timeout: StallTimeout = 120.0,
    until: Annotated[
        str | None,
        typer.Option(
            help="Stop following an application once it reached this stage (e.g. "
            "offer_accepted); the run ends when all have."
        ),
    ] = None,
    poll_interval: Annotated[
        float,
        typer.Option(
            min=0.01,
            help="Seconds between two looks at the applications (the reviewers look twice as "
            "often).",
        ),
    ] = 1.0,
    with_check: Annotated[
        bool,
        typer.Option(
            "--check", help="Then run the final check of `demo chaos` (exit 1 unless all 0)."
        ),
    ] = False,
    var_dir: VarDir = None,
    json_out: JsonOut = None,
) -> None:
    """Submit synthetic applications through the public APIs and follow them to their end.

    Prints progress, then applications per end state and the p50/p99 time from submission to
    each stage. Exits 1 when an application is stuck or a request failed for good.
    """
    from services.cli.demo.load import UNTIL_STAGES

    console = make_console()
    if until is not None and until not in UNTIL_STAGES:
        make_console(stderr=True).print(f"[red]--until: one of {', '.join(UNTIL_STAGES)}")
        raise typer.Exit(2)
    summary, report, _ = asyncio.run(
        _load(
            var_dir,
            console,
            applications=applications,
            rate=rate,
            auto_review=auto_review,
            accept_offers=accept_offers,
            stall_timeout=stall_timeout,
            with_check=with_check,
            poll_interval=poll_interval,
            until=until,
        )
    )
    print_summary(console, summary)
    figures = summary_figures(summary)
    if report is not None:
        print_report(console, report)
        figures.update(report_figures(report))
    if json_out is not None:
        json_out.write_text(json.dumps(figures, indent=2))
    if summary.stuck or (report is not None and not report.clean):
        raise typer.Exit(1)


@app.command("chaos")
def chaos(
    applications: Applications = 50,
    kill_every: Annotated[
        float, typer.Option("--kill-every", min=0.5, help="Seconds between two kills.")
    ] = 10.0,
    parts: Annotated[
        list[str] | None,
        typer.Option(
            "--parts",
            help="Parts that may be killed (repeat the option); default: every service, the "
            "worker, the broker and the rail.",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed of the choice of parts.")] = None,
    in_turn: Annotated[
        bool,
        typer.Option("--in-turn", help="Kill the --parts in the order given, round after round."),
    ] = False,
    kills: Annotated[
        int | None,
        typer.Option(
            "--kills",
            min=1,
            help="Make exactly this many kills: none after the last, and, should every journey "
            "rest sooner, go on killing until they are made. Default: kill until all rest.",
        ),
    ] = None,
    rate: Rate = 0.0,
    stall_timeout: StallTimeout = 180.0,
    var_dir: VarDir = None,
    json_out: JsonOut = None,
) -> None:
    """Run the full load (auto review, offers accepted) and SIGKILL a random part every S seconds.

    The supervisor of ``incentives up`` brings each part back. At the end the APIs and the audit
    log are checked: applications lost, duplicated or stuck; units over-allocated; tranches paid
    twice; budgets exceeded; log records missing or duplicated; dead letters. Every figure must
    be 0: any other exits 1.
    """
    from services.cli.demo.chaos import DEFAULT_PARTS, check_parts

    console, err = make_console(), make_console(stderr=True)
    chosen = list(parts or DEFAULT_PARTS)
    try:
        check_parts(chosen)
    except ValueError as exc:
        err.print(f"[red]{exc}")
        raise typer.Exit(2) from exc
    summary, report, extra = asyncio.run(
        _load(
            var_dir,
            console,
            applications=applications,
            rate=rate,
            auto_review=True,
            accept_offers=True,
            stall_timeout=stall_timeout,
            chaos=(kill_every, chosen, seed, in_turn, kills),
        )
    )
    print_summary(console, summary)
    assert report is not None
    print_report(console, report)
    if json_out is not None:
        figures = {**summary_figures(summary), **report_figures(report), **extra}
        json_out.write_text(json.dumps(figures, indent=2))
    if not report.clean:
        console.print("[red bold]Something was lost, duplicated or broken (see above).")
        raise typer.Exit(1)
    console.print("[green bold]Nothing lost, duplicated or broken.")


def summary_figures(summary: Summary) -> dict[str, object]:
    """The summary as JSON-ready figures."""
    return {
        "applications": summary.applications,
        "seconds": round(summary.seconds, 2),
        "end_states": dict(summary.end_states),
        "stages": {
            stage: {
                "n": n,
                "p50_s": round(p50, 2),
                "p99_s": round(p99, 2),
                "last_s": round(summary.spans.get(stage, 0.0), 2),
            }
            for stage, (n, p50, p99) in summary.stages.items()
        },
        "driver_cpu_s": round(summary.cpu_s, 2),
        "decisions": summary.decisions,
        "late_decisions": summary.late_decisions,
        "offers_accepted": summary.offers_accepted,
        "milestones_reported": summary.milestones_reported,
        "stuck": len(summary.stuck),
        "retries": summary.retries,
        "errors": summary.errors[:50],
    }


def report_figures(report: Report) -> dict[str, object]:
    """The final check as JSON-ready figures."""
    return {
        "check": {name: len(items) for name, items in report.figures().items()},
        "check_examples": {name: items[:10] for name, items in report.figures().items() if items},
        "facts": report.facts,
    }
