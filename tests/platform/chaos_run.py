"""Chaos on a real embedded platform, for the suite and the benchmark alike.

:func:`embedded_platform` runs ``incentives up --detach`` on free ports with its own var dir and
stops it after; :func:`run_demo` runs ``incentives demo load|chaos`` against it as a separate
process and returns its exit code, its output and the figures it wrote as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.platform.helpers import PlatformRun, all_pids, wait_all_gone
from tests.tiers import refuse_in_unit_tier

#: The final check's figures that must all be 0.
LOSS_FIGURES = (
    "applications lost",
    "applications duplicated",
    "applications stuck",
    "units over-allocated",
    "tranches paid twice",
    "budgets exceeded",
    "log records missing",
    "log records duplicated",
    "dead letters",
)


#: The worker asks the desk again for reviewers a minute after the desk was unreachable for
#: longer than its activity retries (the default waits an hour), so a journey whose desk was
#: killed at the wrong moment goes on within the run.
CHAOS_ENV = {"INCENTIVES_WORKER_ASSIGNMENT_RETRY_MINUTES": "1"}


@contextmanager
def embedded_platform(
    var_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[PlatformRun]:
    """``incentives up --detach`` in ``var_dir`` on free ports; ``down`` afterwards."""
    run = PlatformRun.on_free_ports(var_dir)
    run.env.update({**CHAOS_ENV, **(extra_env or {})})
    up = run.incentives("up", "--detach", *run.port_options(), timeout=300)
    if up.returncode != 0:
        raise AssertionError(f"up failed:\n{up.stdout}\n{up.stderr}")
    try:
        yield run
    finally:
        from services.cli.state import read_state

        state = read_state(var_dir)
        run.incentives("down", timeout=180)
        if state is not None:
            wait_all_gone(all_pids(state))


@dataclass
class DemoRun:
    """What one ``incentives demo`` run gave."""

    returncode: int
    output: str
    figures: dict[str, Any]

    def losses(self) -> dict[str, int]:
        """The final check's non-zero figures."""
        check = self.figures.get("check", {})
        return {name: check.get(name, -1) for name in LOSS_FIGURES if check.get(name, -1) != 0}


def run_demo(run: PlatformRun, *args: str, timeout: float) -> DemoRun:
    """``incentives demo ARGS --json FILE`` against ``run``'s platform, to completion."""
    refuse_in_unit_tier("the embedded platform")
    figures_path = run.var_dir / f"demo-{len(list(run.var_dir.glob('demo-*.json')))}.json"
    completed = subprocess.run(
        [sys.executable, "-m", "services.cli", "demo", *args, "--json", str(figures_path)],
        env=run.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    figures = json.loads(figures_path.read_text()) if figures_path.exists() else {}
    output = completed.stdout + completed.stderr
    print(output)  # the whole run, shown with a failure
    return DemoRun(completed.returncode, output, figures)


def start_demo(run: PlatformRun, *args: str) -> tuple[subprocess.Popen[str], Path]:
    """``incentives demo ARGS --json FILE`` in the background; the process and the file."""
    refuse_in_unit_tier("the embedded platform")
    figures_path = run.var_dir / f"demo-bg-{len(list(run.var_dir.glob('demo-bg-*.json')))}.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "demo", *args, "--json", str(figures_path)],
        env=run.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, figures_path
