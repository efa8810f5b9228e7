"""How throughput grows with partitions and consumer instances: the eligibility service.

For each partition count and each number of instances (1, 2 and 3 processes of the service in
one consumer group), on a broker and a database of the grid point's own: the instances start
and join, then ``n`` ``application.submitted`` records are produced and the decisions counted
as in :mod:`tests.bench.eligibility`, which also checks one decision per application.

Two cores bound what more processes can add; one partition bounds a group to one busy member.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from tests.bench.common import BenchError, Point, Result, assert_exactly_once, header, read_all
from tests.bench.eligibility import OUTPUT_TOPIC, make_submissions
from tests.bench.process import scaled_hop
from tests.bench.raw import RAW_HOP

SCALING = "scaling"
#: The chart the grid is drawn on.
CHART = "scaling"
PARTITIONS: tuple[int, ...] = (1, 3, 6)
INSTANCES: tuple[int, ...] = (1, 2, 3)


def name_of(partitions: int, instances: int) -> str:
    """The figure's name for one grid point."""
    return f"eligibility, {_count(partitions, 'partition')}, {_count(instances, 'instance')}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


async def bench_scaling(
    infrastructure: Callable[[Path], AbstractAsyncContextManager[tuple[str, str]]],
    workdir: Path,
    n: int,
    *,
    partitions: Sequence[int] = PARTITIONS,
    instances: Sequence[int] = INSTANCES,
    on_progress: Callable[[int], None] | None = None,
) -> list[Result]:
    """One figure per (partitions, instances); ``infrastructure(folder)`` yields a fresh
    ``(bootstrap, database_url)`` for each."""
    results: list[Result] = []
    points = [(p, k) for p in partitions for k in instances]
    for done, (p, k) in enumerate(points, start=1):
        folder = workdir / f"p{p}-i{k}"
        folder.mkdir(parents=True, exist_ok=True)
        records, subjects = make_submissions(n)
        name = name_of(p, k)
        async with infrastructure(folder) as (bootstrap, database_url):
            hop = await scaled_hop(
                "eligibility",
                bootstrap,
                database_url,
                folder,
                records,
                subjects,
                OUTPUT_TOPIC,
                ("eligibility.assessed",),
                instances=k,
                partitions=p,
                what=name,
            )
            wanted = set(subjects)
            decisions = [
                r for r in await read_all(bootstrap, OUTPUT_TOPIC) if r.key.decode() in wanted
            ]
        decided = assert_exactly_once(name, subjects, decisions, lambda r: bytes(r.key).decode())
        if len({header(r, "event_id") for r in decisions}) != len(decisions):
            raise BenchError(f"{name}: an event id was published twice")
        results.append(
            Result(
                name,
                decided,
                hop.seconds,
                baseline=RAW_HOP,
                note=f"{k} process{'es' if k > 1 else ''} in one group, "
                f"{_count(p, 'partition')} per topic; {hop.timing}; "
                "one decision per application checked",
                point=Point(CHART, _count(p, "partition"), k),
            )
        )
        if on_progress is not None:
            on_progress(done * n // len(points))
    return results
