"""``python -m tests.bench``: run the throughput benchmarks and print their figures.

Exits 0 whether or not targets are met (the figures are a report) and 1 when a benchmark
failed: lost or duplicated messages, a stuck pipeline, missing infrastructure.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import uvloop
from rich.console import Console

from services.kit.logging import configure_logging
from services.kit.runtime import tune_garbage_collector
from tests.bench.charts import write_charts
from tests.bench.suite import (
    CHOICES,
    DEFAULT_N,
    DEFAULT_TIMEOUT,
    QUICK_N,
    RESULTS_PATH,
    Options,
    Outcome,
    render,
    render_profiles,
    run_suite,
    write_results,
)

#: Event loops the suite can run on.
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description=(
            "Throughput of the messaging path on Tansu and PostgreSQL, as ratios to raw aiokafka "
            "measured in the same run. Starts (and stops) its own broker and databases."
        ),
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(CHOICES),
        metavar="NAME",
        help=(
            f"run only this benchmark (repeatable): {', '.join(CHOICES)}. "
            "The raw baselines always run."
        ),
    )
    parser.add_argument(
        "--n",
        type=int,
        help="messages per benchmark (default: "
        + ", ".join(f"{k} {v:,}" for k, v in DEFAULT_N.items())
        + ")",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: {QUICK_N} messages per benchmark"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the kit benchmarks' timed sections with cProfile and print the hot spots",
    )
    parser.add_argument(
        "--profile-lines", type=int, default=30, help="functions shown per profile (default 30)"
    )
    parser.add_argument(
        "--loop",
        choices=sorted(LOOPS),
        default="uvloop",
        help=(
            "event loop of the in-process benchmarks (default uvloop: the services run on it, "
            "as uvicorn picks it when installed)"
        ),
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS_PATH,
        help=f"where to write the figures as JSON (default {RESULTS_PATH})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds one benchmark may take before it fails (default {DEFAULT_TIMEOUT:.0f})",
    )
    args = parser.parse_args(argv)
    if args.n is not None and args.n < 1:
        parser.error("--n must be at least 1")
    return Options(
        only=args.only or tuple(CHOICES),
        n=args.n,
        quick=args.quick,
        profile=args.profile,
        profile_lines=args.profile_lines,
        timeout=args.timeout,
        results=args.results,
        loop=args.loop,
    )


async def _run(options: Options, console: Console) -> Outcome:
    """The suite, cancelled cleanly by SIGTERM (SIGINT is asyncio.run's already)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    # Cancelling unwinds every context manager, so the broker and databases are stopped/dropped.
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await run_suite(options, console)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; the process exit code."""
    options = parse_args(argv)
    # Only warnings and errors from the services under test; progress and figures go to stdout.
    configure_logging("bench", "WARNING")
    # FastStream keeps its own logger at INFO (partition assignments, shutdown callbacks).
    logging.getLogger("faststream").setLevel(logging.WARNING)
    # Collector settings of a service process (run_service applies them too), for every
    # benchmark alike: the baselines and the kit run under the same collector.
    tune_garbage_collector()
    console = Console()
    if not console.is_terminal:  # piped or logged: do not wrap the table at 80 columns
        console = Console(width=120)
    try:
        with asyncio.Runner(loop_factory=LOOPS[options.loop]) as runner:
            outcome = runner.run(_run(options, console))
    except (KeyboardInterrupt, asyncio.CancelledError):
        console.print("[red]interrupted[/]; what the benchmarks started has been stopped")
        return 130
    render(outcome, console)
    if options.results is not None:
        console.print(f"figures written to {write_results(outcome, options.results)}")
        for chart in write_charts(outcome.results, options.results.parent):
            console.print(f"chart written to {chart}")
    if options.profile:
        render_profiles(outcome, console, options.profile_lines)
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())
