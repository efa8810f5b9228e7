"""The geometry of the admins' charts, drawn as SVG by the templates: no script, no CDN.

Pure: numbers in, shapes out. Colours are GOV.UK Frontend's palette; every chart also has its
figures as text beside it, so nothing is told by colour alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

#: GOV.UK colours of what the charts show.
COLOURS: Final = {
    "allocated": "#1d70b8",  # blue
    "held": "#f47738",  # orange
    "free": "#ffffff",
}
#: The lines of a budget over time: a colour and a dash pattern each, so none needs colour.
LINES: Final = {
    "free": ("#00703c", ""),  # green, solid
    "reserved": ("#f47738", "8 4"),  # orange, dashed
    "paid": ("#1d70b8", "2 3"),  # blue, dotted
}
#: The outline of every bar and the axes (GOV.UK's text colour).
INK: Final = "#0b0c0c"


@dataclass(frozen=True)
class Segment:
    """One part of a stacked bar: its name, value, x offset and width (in chart units)."""

    name: str
    value: int
    x: float
    width: float
    colour: str


def stacked_bar(parts: Mapping[str, int], width: float) -> list[Segment]:
    """``parts`` (in order) as segments of a bar ``width`` long, in proportion to their sum."""
    total = sum(max(v, 0) for v in parts.values())
    segments: list[Segment] = []
    x = 0.0
    for name, value in parts.items():
        share = width * max(value, 0) / total if total else 0.0
        segments.append(Segment(name, value, round(x, 2), round(share, 2), COLOURS[name]))
        x += share
    return segments


@dataclass(frozen=True)
class Series:
    """One line of a chart over time: its name, colour and SVG points."""

    name: str
    colour: str
    dash: str
    points: str
    last: Decimal


@dataclass(frozen=True)
class TimeChart:
    """A chart of balances over time, sized ``width`` x ``height``, with its axis labels."""

    width: int
    height: int
    series: list[Series]
    top: Decimal
    start: datetime | None
    end: datetime | None


#: How each ledger cause moves money between a budget's balances (the API's documented causes).
_MOVES: Final = {
    "top_up": (None, "free"),
    "reserve": ("free", "reserved"),
    "pay": ("reserved", "paid"),
    "release": ("reserved", "free"),
}
_BALANCES: Final = ("free", "reserved", "paid")


def balances_over_time(
    entries: Iterable[Mapping[str, Any]],
) -> list[tuple[datetime, dict[str, Decimal]]]:
    """The free, reserved and paid balances after each ledger entry, in ledger order."""
    now = dict.fromkeys(_BALANCES, Decimal(0))
    steps: list[tuple[datetime, dict[str, Decimal]]] = []
    for entry in sorted(entries, key=lambda e: int(e["id"])):
        source, target = _MOVES.get(str(entry["cause"]), (None, None))
        amount = Decimal(str(entry["amount"]["amount"]))
        if source is not None:
            now[source] -= amount
        if target is not None:
            now[target] += amount
        at = entry["at"]
        steps.append((datetime.fromisoformat(at) if isinstance(at, str) else at, dict(now)))
    return steps


def time_chart(
    steps: Sequence[tuple[datetime, Mapping[str, Decimal]]],
    width: int = 600,
    height: int = 200,
) -> TimeChart:
    """Step lines of each balance over the ledger's entries, evenly spaced in ledger order.

    Entries are spaced by order, not by time: a day of many payments and a quiet month read
    alike, and every movement stays visible.
    """
    if not steps:
        return TimeChart(width, height, [], Decimal(0), None, None)
    top = max((max(values.values()) for _, values in steps), default=Decimal(0)) or Decimal(1)
    count = len(steps)
    series: list[Series] = []
    for name in _BALANCES:
        points = [f"0.0,{height:.1f}"]
        for position, (_, values) in enumerate(steps):
            y = height - float(values[name] / top) * height
            points.append(f"{width * position / count:.1f},{y:.1f}")
            points.append(f"{width * (position + 1) / count:.1f},{y:.1f}")
        colour, dash = LINES[name]
        series.append(Series(name, colour, dash, " ".join(points), steps[-1][1][name]))
    return TimeChart(width, height, series, top, steps[0][0], steps[-1][0])
