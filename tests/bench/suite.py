"""Runs the selected benchmarks on infrastructure of their own and prints the figures."""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tests.bench.audit_log import AUDIT, bench_audit
from tests.bench.chaos import CHAOS, bench_chaos
from tests.bench.chaos import N_DEFAULT as CHAOS_N
from tests.bench.chaos import TIMEOUT as CHAOS_TIMEOUT
from tests.bench.common import Result, fresh_pg_database, tansu
from tests.bench.eligibility import ELIGIBILITY, bench_eligibility
from tests.bench.end_to_end import END_TO_END, bench_end_to_end
from tests.bench.end_to_end import N_DEFAULT as E2E_N
from tests.bench.end_to_end import TIMEOUT as E2E_TIMEOUT
from tests.bench.kit_hop import bench_kit_hop
from tests.bench.payouts import PAYOUTS, bench_payouts
from tests.bench.raw import RAW_HOP, RAW_PRODUCE, bench_raw
from tests.bench.relay import RELAY, bench_relay
from tests.bench.scaling import SCALING, bench_scaling
from tests.bench.submissions import (
    CURVE,
    HALF,
    SUBMISSIONS,
    bench_bare_http,
    bench_bare_insert,
    bench_submissions,
)
from tests.bench.zones import ZONES, bench_zones

KIT_PG = "kit hop (pg)"
KIT_PG_UPSERT = "kit hop (pg, statement per message)"
KIT_SQLITE = "kit hop (sqlite)"

#: Selectable benchmarks (``--only``), in run order, with their progress labels.
CHOICES: dict[str, str] = {
    "raw": "raw baselines",
    "kit-pg": KIT_PG,
    "kit-pg-upsert": KIT_PG_UPSERT,
    "kit-sqlite": KIT_SQLITE,
    "relay": RELAY,
    "submissions": SUBMISSIONS,
    "eligibility": ELIGIBILITY,
    "zones": ZONES,
    "payouts": PAYOUTS,
    "end-to-end": END_TO_END,
    "scaling": SCALING,
    "audit": AUDIT,
    "chaos": CHAOS,
}
#: Benchmarks that measure their own baseline (hashlib for the audit log, bare apps for the
#: submissions, a bare workflow end to end): selecting only these does not run the Kafka
#: baselines.
SELF_BASELINED = frozenset({"audit", "submissions", "end-to-end", "chaos"})
#: Messages per benchmark by default: several seconds of steady state each, and the whole run
#: stays within about five minutes on two cores (the kit hops run at about 1,000 msgs/s).
DEFAULT_N: dict[str, int] = {
    "raw": 20_000,
    "kit-pg": 10_000,
    "kit-pg-upsert": 10_000,
    "kit-sqlite": 10_000,
    "relay": 20_000,
    "submissions": 3_000,
    "eligibility": 5_000,
    # Each a hold of one office seat: the catalogue's 1,770 seats are held, the rest wait. The
    # service answers a batch in a few statements, so at 3,000 (six batches) the outputs came
    # in two or three fetches, too coarse a window to time: 12,000 take some 25 batches.
    "zones": 12_000,
    # Signing tranches paid through the simulated rail (its batch endpoint, 50 to a request).
    "payouts": 1_000,
    # Applications through the whole platform (about a minute on two cores).
    "end-to-end": E2E_N,
    # Decisions at each of the nine (partitions, instances) points of the grid.
    "scaling": 2_000,
    "audit": 1_000_000,
    # Applications to their last tranche while parts are killed (the losses must all be 0).
    "chaos": CHAOS_N,
}
QUICK_N = 300
#: Benchmarks whose default count is also their largest (applications through the platform).
CAPPED = frozenset({"end-to-end", "chaos"})
#: Upper bound on one benchmark's wall time (setup and verification included).
DEFAULT_TIMEOUT = 300.0
#: Benchmarks that need longer than the default timeout, and how long.
LONG_RUNNING: dict[str, float] = {"chaos": CHAOS_TIMEOUT, "end-to-end": E2E_TIMEOUT}


@dataclass
class Options:
    """What the command line asked for."""

    only: Sequence[str] = field(default_factory=lambda: tuple(CHOICES))
    n: int | None = None
    quick: bool = False
    profile: bool = False
    profile_lines: int = 30
    timeout: float = DEFAULT_TIMEOUT
    #: Where the figures are written as JSON (None: not written).
    results: Path | None = None
    #: The event loop the in-process benchmarks run on (``asyncio`` or ``uvloop``).
    loop: str = "uvloop"

    def count(self, name: str) -> int:
        """Messages for benchmark ``name``."""
        if name in CAPPED:
            # A whole journey per unit: --n and --quick may lower the count, never raise it.
            wanted = self.n if self.n is not None else QUICK_N if self.quick else DEFAULT_N[name]
            return min(wanted, DEFAULT_N[name])
        if self.n is not None:
            return self.n
        return QUICK_N if self.quick else DEFAULT_N[name]

    def selected(self) -> list[str]:
        """The benchmarks to run, in run order; the raw baselines run whenever a selected
        benchmark's ratio needs them."""
        wanted = set(self.only)
        if wanted - SELF_BASELINED:
            wanted.add("raw")
        return [name for name in CHOICES if name in wanted]


@dataclass(frozen=True)
class Failure:
    """A benchmark that raised instead of producing a figure."""

    name: str
    error: str


@dataclass
class Outcome:
    """Everything a run produced."""

    results: list[Result] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    profiles: dict[str, cProfile.Profile] = field(default_factory=dict)


async def run_suite(options: Options, console: Console) -> Outcome:
    """Start Tansu, run the selected benchmarks, stop Tansu; a failure does not stop the rest.

    The raw baselines run first and, when anything else runs, once more at the end: the ratios
    use both runs pooled, so load that changes during the run (a shared two-core machine) skews
    them less, and the start/end rows show how much it changed.
    """
    outcome = Outcome()
    selected = options.selected()
    bracketed = len(selected) > 1 and selected[0] == "raw"
    plan = [(key, "") for key in selected]
    if bracketed:
        plan = [("raw", " (start)"), *plan[1:], ("raw", " (end)")]
    progress = Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    with tempfile.TemporaryDirectory(prefix="incentives-bench-") as tmp, progress:
        workdir = Path(tmp)
        async with tansu(workdir) as bootstrap:
            for key, suffix in plan:
                label, n = CHOICES[key] + suffix, options.count(key)
                task = progress.add_task(label, total=n)

                def report(done: int, task: TaskID = task) -> None:
                    progress.update(task, completed=done)

                profiler = cProfile.Profile() if options.profile and key != "raw" else None
                try:
                    async with asyncio.timeout(max(options.timeout, LONG_RUNNING.get(key, 0))):
                        results = await _run_one(key, bootstrap, workdir, n, report, profiler)
                    outcome.results.extend(replace(r, name=r.name + suffix) for r in results)
                except TimeoutError:
                    outcome.failures.append(
                        Failure(label, f"did not finish within {options.timeout:.0f}s")
                    )
                    progress.update(task, description=f"{label} FAILED")
                except Exception as exc:
                    outcome.failures.append(Failure(label, f"{type(exc).__name__}: {exc}"))
                    progress.update(task, description=f"{label} FAILED")
                else:
                    progress.update(task, completed=n)
                if profiler is not None:
                    outcome.profiles[label] = profiler
    if bracketed:
        outcome.results = pool_baselines(outcome.results)
    return outcome


def pool_baselines(results: Sequence[Result]) -> list[Result]:
    """Add pooled ``raw produce``/``raw hop`` baselines over their ``(start)``/``(end)`` runs.

    The pooled rate is total messages over total seconds; each sampled run is then shown as a
    ratio to it, which makes drift during the run visible.
    """
    pooled: list[Result] = []
    rest: list[Result] = []
    for base in (RAW_PRODUCE, RAW_HOP):
        samples = [r for r in results if r.name.startswith(f"{base} (")]
        if not samples:
            continue
        rates = ", ".join(
            f"{r.name.removeprefix(base).strip(' ()')} {r.rate:,.0f}/s" for r in samples
        )
        pooled.append(
            Result(
                base,
                sum(r.n for r in samples),
                sum(r.seconds for r in samples),
                note=f"{samples[0].note}; pooled over {rates}",
            )
        )
        rest.extend(replace(r, baseline=base, note="") for r in samples)
    sampled = {r.name for r in rest}
    return [*pooled, *rest, *(r for r in results if r.name not in sampled)]


async def _run_one(
    key: str,
    bootstrap: str,
    workdir: Path,
    n: int,
    report: Callable[[int], None],
    profiler: cProfile.Profile | None,
) -> list[Result]:
    if key == "raw":
        return list(await bench_raw(bootstrap, n, on_progress=report))
    if key == "kit-pg":
        async with fresh_pg_database() as url:
            result = await bench_kit_hop(
                bootstrap, url, n, name=KIT_PG, on_progress=report, profiler=profiler
            )
        return [result]
    if key == "kit-pg-upsert":
        async with fresh_pg_database() as url:
            result = await bench_kit_hop(
                bootstrap,
                url,
                n,
                name=KIT_PG_UPSERT,
                upsert=True,
                on_progress=report,
                profiler=profiler,
            )
        # A reference, not a service design: what one statement per message through the
        # session costs, next to the batch handler of "kit hop (pg)".
        return [
            replace(
                result,
                target=None,
                note="reference: the same hop with one upsert statement per message "
                "through the session instead of a batch handler's staged rows",
            )
        ]
    if key == "kit-sqlite":
        url = f"sqlite+aiosqlite:///{workdir / 'kit-hop.db'}"
        result = await bench_kit_hop(
            bootstrap, url, n, name=KIT_SQLITE, on_progress=report, profiler=profiler
        )
        return [result]
    if key == "relay":
        async with fresh_pg_database() as url:
            result = await bench_relay(bootstrap, url, n, on_progress=report, profiler=profiler)
        return [result]
    if key == "submissions":
        # The services get a broker of their own: the shared one holds other benchmarks' events,
        # which a service consuming the domain topics would process inside the timed section.
        own = workdir / "submissions"
        own.mkdir(exist_ok=True)
        base = await bench_bare_http(own, n, on_progress=report)
        async with fresh_pg_database(label="bench_bare") as url:
            bare = await bench_bare_insert(url, own, n, on_progress=report)
        results = [base, *bare]
        for workers in (1, 2):
            async with tansu(own) as private, fresh_pg_database() as url:
                results += await bench_submissions(
                    private,
                    url,
                    own,
                    n,
                    workers=workers,
                    # The latency curve of one process; of two, the half (the target) only.
                    curve=CURVE if workers == 1 else (HALF,),
                    on_progress=report,
                )
        return results
    if key == "eligibility":
        own = workdir / "eligibility"
        own.mkdir(exist_ok=True)
        async with tansu(own) as private, fresh_pg_database() as url:
            result = await bench_eligibility(private, url, own, n, on_progress=report)
        return [result]
    if key == "zones":
        own = workdir / "zones"
        own.mkdir(exist_ok=True)
        async with fresh_pg_database() as url:
            return [await bench_zones(bootstrap, url, own, n, on_progress=report)]
    if key == "payouts":
        own = workdir / "payouts"
        own.mkdir(exist_ok=True)
        async with fresh_pg_database() as url:
            return [await bench_payouts(bootstrap, url, own, n, on_progress=report)]
    if key == "end-to-end":
        own = workdir / "end-to-end"
        own.mkdir(exist_ok=True)
        return await bench_end_to_end(own, n, on_progress=report)
    if key == "scaling":

        @asynccontextmanager
        async def fresh(folder: Path) -> AsyncIterator[tuple[str, str]]:
            # A broker and a database per grid point: topics of that point's partition count.
            async with tansu(folder) as private, fresh_pg_database() as url:
                yield private, url

        return await bench_scaling(fresh, workdir / "scaling", n, on_progress=report)
    if key == "chaos":
        own = workdir / "chaos"
        own.mkdir(exist_ok=True)
        return await bench_chaos(own, n, on_progress=report)
    if key == "audit":
        async with fresh_pg_database() as url:
            return await bench_audit(workdir, n, pg_url=url, on_progress=report)
    raise ValueError(f"unknown benchmark {key!r}")


def ratio_of(result: Result, results: Sequence[Result]) -> float | None:
    """``result``'s rate over its baseline's rate in the same run (None without a baseline)."""
    if result.baseline is None:
        return None
    for other in results:
        if other.name == result.baseline:
            return result.rate / other.rate
    return None


def render(outcome: Outcome, console: Console) -> None:
    """The figures table, then what the ratios mean and any failures."""
    table = Table(title="Throughput (ratios against baselines measured in this run)")
    for column, justify in (
        ("name", "left"),
        ("n", "right"),
        ("seconds", "right"),
        ("msgs/s", "right"),
        ("p50/p99 ms", "right"),
        ("ratio vs baseline", "right"),
        ("target", "right"),
        ("met?", "center"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for result in outcome.results:
        ratio = ratio_of(result, outcome.results)
        if result.baseline is None:
            shown_ratio = "baseline"
        elif ratio is None:
            shown_ratio = "no baseline"
        else:
            shown_ratio = f"{ratio:.3f} x {result.baseline}"
        target, met = _target_and_met(result, ratio)
        latency = (
            f"{result.latency_ms[0]:.1f} / {result.latency_ms[1]:.1f}"
            if result.latency_ms is not None
            else "-"
        )
        table.add_row(
            result.name,
            f"{result.n:,}",
            f"{result.seconds:.2f}",
            f"{result.rate:,.0f}",
            latency,
            shown_ratio,
            target,
            met,
        )
    for failure in outcome.failures:
        table.add_row(failure.name, "-", "-", "-", "-", "[red]FAILED[/]", "-", "-")
    console.print(table)
    console.print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs. Hops are timed from the first consumed record (after the group "
        "join) to the last output record acknowledged by the broker; every run checks that each "
        "input event arrived exactly once."
    )
    for result in outcome.results:
        if result.note:
            console.print(f"  {result.name}: {result.note}")
    for failure in outcome.failures:
        console.print(f"[red]{failure.name} failed:[/] {failure.error}")


#: Where ``make bench`` writes its figures (relative to the repository root).
RESULTS_PATH = Path("var/bench/results.json")


def results_document(outcome: Outcome, *, now: datetime | None = None) -> dict[str, Any]:
    """The run as data: the machine, the time, and one entry per figure (failures included).

    Each entry has ``name``, ``rate`` (per second), ``p50_ms``/``p99_ms`` (``None`` for
    throughput figures), ``baseline`` (the figure it is a ratio to), ``ratio``, ``target`` (the
    targets as text, e.g. ``">= 0.25 x, >= 2,000/s"``) and ``met`` (``None`` without a target or
    a baseline), plus ``n``, ``seconds`` and ``note``.
    """
    entries: list[dict[str, Any]] = []
    for result in outcome.results:
        ratio = ratio_of(result, outcome.results)
        target, met = _targets(result, ratio)
        latency = result.latency_ms
        entries.append(
            {
                "name": result.name,
                "rate": round(result.rate, 1),
                "p50_ms": None if latency is None else round(latency[0], 2),
                "p99_ms": None if latency is None else round(latency[1], 2),
                "baseline": result.baseline,
                "ratio": None if ratio is None else round(ratio, 4),
                "target": ", ".join(target) or None,
                "met": met,
                "n": result.n,
                "seconds": round(result.seconds, 3),
                "note": result.note,
            }
        )
    for failure in outcome.failures:
        entries.append(
            {
                "name": failure.name,
                "rate": None,
                "p50_ms": None,
                "p99_ms": None,
                "baseline": None,
                "ratio": None,
                "target": None,
                "met": False,
                "error": failure.error,
            }
        )
    return {
        "time": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "platform": platform.platform(),
        },
        "results": entries,
    }


def write_results(outcome: Outcome, path: Path = RESULTS_PATH) -> Path:
    """Write :func:`results_document` to ``path`` (folders created); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results_document(outcome), indent=2) + "\n")
    return path


def _targets(result: Result, ratio: float | None) -> tuple[list[str], bool | None]:
    """The targets of a result as text, and whether every measured one is met."""
    targets: list[str] = []
    checks: list[bool] = []
    if result.target is not None:
        targets.append(f">= {result.target:.2f} x")
        if ratio is not None:
            checks.append(ratio >= result.target)
    if result.rate_target is not None:
        targets.append(f">= {result.rate_target:,.0f}/s")
        checks.append(result.rate >= result.rate_target)
    if result.p99_target_ms is not None:
        targets.append(f"p99 < {result.p99_target_ms:.0f} ms")
        if result.latency_ms is not None:
            checks.append(result.latency_ms[1] < result.p99_target_ms)
    return targets, (all(checks) if checks else None)


def _target_and_met(result: Result, ratio: float | None) -> tuple[str, str]:
    """The targets a result has (ratio, rate, p99) and whether all measured ones are met."""
    targets, met = _targets(result, ratio)
    if not targets:
        return "-", "-"
    if met is None:
        return ", ".join(targets), "-"
    return ", ".join(targets), "[green]yes[/]" if met else "[red]NO[/]"


def render_profiles(outcome: Outcome, console: Console, lines: int) -> None:
    """The hottest functions of each profiled benchmark, by own time and by cumulative time."""
    for label, profiler in outcome.profiles.items():
        for order in ("tottime", "cumulative"):
            buffer = io.StringIO()
            stats = pstats.Stats(profiler, stream=buffer)
            stats.strip_dirs().sort_stats(order).print_stats(lines)
            console.rule(f"profile of {label}, by {order}")
            console.print(buffer.getvalue(), markup=False, highlight=False)
