"""PNG charts of a run's figures, next to ``results.json``: how cost grows.

Each :class:`~tests.bench.common.Result` with a :attr:`~tests.bench.common.Result.point` is a
point on one chart; a chart has one line per series, in x order. What a chart plots on its y
axis (the rate, the p50 and p99 latency, or the seconds) is declared here, once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests.bench.common import Result


@dataclass(frozen=True)
class Chart:
    """How one chart is drawn."""

    title: str
    x_label: str
    y_label: str
    y: Literal["rate", "latency", "seconds"]
    #: Log scale on x (sizes that grow by tens).
    log_x: bool = False
    #: Whole numbers only on x (counts of processes).
    integer_x: bool = False


CHARTS: dict[str, Chart] = {
    "scaling": Chart(
        "Eligibility throughput against consumer instances",
        "instances of the service in one consumer group",
        "decisions per second",
        "rate",
        integer_x=True,
    ),
    "latency": Chart(
        "Latency against offered load (open loop)",
        "offered load, requests per second",
        "latency, ms (solid p99, dashed p50)",
        "latency",
    ),
    "audit-verify": Chart(
        "Audit log: verify time against log size",
        "records in the log",
        "seconds to verify",
        "seconds",
        log_x=True,
    ),
}


def write_charts(results: Sequence[Result], folder: Path) -> list[Path]:
    """One PNG per chart that has points among ``results``; returns the files written."""
    # matplotlib takes a second to import: only a run that draws pays for it.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    points: dict[str, dict[str, list[Result]]] = defaultdict(lambda: defaultdict(list))
    for result in results:
        if result.point is not None:
            points[result.point.chart][result.point.series].append(result)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for key, series in points.items():
        chart = CHARTS[key]
        # A Figure of its own draws with Agg into files: no pyplot state, no display needed.
        figure = Figure(figsize=(8, 5), dpi=100)
        axes = figure.subplots()
        for label, members in sorted(series.items()):
            members.sort(key=lambda r: r.point.x if r.point else 0.0)
            xs = [r.point.x for r in members if r.point]
            if chart.y == "latency":
                p99 = [r.latency_ms[1] if r.latency_ms else float("nan") for r in members]
                p50 = [r.latency_ms[0] if r.latency_ms else float("nan") for r in members]
                (line,) = axes.plot(xs, p99, marker="o", label=f"{label} p99")
                axes.plot(xs, p50, marker=".", linestyle="--", color=line.get_color())
            else:
                ys = [r.rate if chart.y == "rate" else r.seconds for r in members]
                axes.plot(xs, ys, marker="o", label=label)
        if chart.log_x:
            axes.set_xscale("log")
        if chart.integer_x:
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(chart.title)
        axes.set_xlabel(chart.x_label)
        axes.set_ylabel(chart.y_label)
        axes.grid(True, alpha=0.3)
        axes.legend()
        path = folder / f"{key}.png"
        figure.savefig(path, bbox_inches="tight")
        written.append(path)
    return written
