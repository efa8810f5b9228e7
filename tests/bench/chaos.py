"""The chaos run: applications through the whole embedded platform while parts are killed.

``incentives up`` on free ports in the benchmark's work dir; ``incentives demo chaos`` drives
:data:`N_DEFAULT` applications to their last tranche (automated reviewers, offers accepted,
milestones reported and verified) and SIGKILLs a random part (a service, the worker, the
broker or the rail, see :data:`PARTS`) every :data:`KILL_EVERY` seconds. The figure is
applications per second through the run; the note holds the kills and every figure of the
final check, each of which must be 0 (any other fails the benchmark).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from services.cli.demo.chaos import DEFAULT_PARTS
from tests.bench.common import BenchError, Result
from tests.platform.chaos_run import embedded_platform, run_demo

CHAOS = "chaos run (kills under load)"
#: Applications per run.
N_DEFAULT = 1_000
#: Seconds between two kills.
KILL_EVERY = 10.0
#: Every default part, the broker among them: a new broker gets every outbox again, whole (at
#: this size tens of thousands of rows per broker loss, about one kill in nine).
PARTS = list(DEFAULT_PARTS)
#: Wall time allowed to the run (the suite's per-benchmark timeout is raised to it).
TIMEOUT = 3 * 3600.0


def _run(workdir: Path, n: int) -> Result:
    with embedded_platform(workdir / "platform") as platform:
        demo = run_demo(
            platform,
            "chaos",
            "--applications",
            str(n),
            "--kill-every",
            str(KILL_EVERY),
            "--seed",
            "1000",
            "--rate",
            "20",
            *(arg for part in PARTS for arg in ("--parts", part)),
            timeout=TIMEOUT,
        )
    figures = demo.figures
    if not figures:
        raise BenchError(f"the chaos run wrote no figures:\n{demo.output[-3000:]}")
    losses = demo.losses()
    stages = figures.get("stages", {})
    to_completed = stages.get("completed", {})
    note = (
        f"kill every {KILL_EVERY:.0f} s: {sum(figures['kills_per_part'].values())} kills "
        f"({', '.join(f'{k} {v}' for k, v in sorted(figures['kills_per_part'].items()))}); "
        f"end states {figures['end_states']}; submission to completed p50 "
        f"{to_completed.get('p50_s', '-')} s, p99 {to_completed.get('p99_s', '-')} s; "
        f"final check {figures.get('check')}"
    )
    if losses or demo.returncode != 0:
        raise BenchError(f"losses {losses}: {note}\n{demo.output[-3000:]}")
    return Result(CHAOS, n, float(figures["seconds"]), note=note)


async def bench_chaos(
    workdir: Path, n: int, *, on_progress: Callable[[int], None] | None = None
) -> list[Result]:
    """The chaos run's figure (the platform runs in processes of its own)."""
    result = await asyncio.to_thread(_run, workdir, n)
    if on_progress is not None:
        on_progress(n)
    return [result]
