"""The benchmarks run correctly with a handful of messages; their timing is never asserted.

Each benchmark already checks that every input event arrived exactly once (and, for the kit
hop, that the database agrees); these tests make sure those checks pass on the real broker and
PostgreSQL, and that the checker itself catches losses and duplicates.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from tests.bench.__main__ import parse_args
from tests.bench.audit_log import SHA256, bench_audit
from tests.bench.charts import write_charts
from tests.bench.common import (
    BenchError,
    Point,
    Result,
    assert_exactly_once,
    fresh_pg_database,
    tansu,
)
from tests.bench.eligibility import ELIGIBILITY, bench_eligibility
from tests.bench.end_to_end import BARE_TEMPORAL, END_TO_END, ROUNDS, bench_end_to_end
from tests.bench.kit_hop import HOP_TARGET, bench_kit_hop
from tests.bench.payouts import PAYOUTS, bench_payouts
from tests.bench.raw import RAW_HOP, RAW_PRODUCE, bench_raw
from tests.bench.relay import RELAY, bench_relay
from tests.bench.scaling import bench_scaling, name_of
from tests.bench.submissions import (
    BARE_HTTP,
    BARE_INSERT,
    BARE_INSERT_HALF,
    CURVE,
    HALF,
    LATENCY_CHART,
    SUBMISSIONS,
    SUBMISSIONS_HALF,
    bench_bare_http,
    bench_bare_insert,
    bench_submissions,
)
from tests.bench.suite import (
    DEFAULT_N,
    QUICK_N,
    RESULTS_PATH,
    Failure,
    Outcome,
    pool_baselines,
    ratio_of,
    render,
    write_results,
)
from tests.bench.zones import ZONES, bench_zones

N = 200


def _positive(result: Result, n: int = N) -> None:
    assert result.n == n  # counted back from the broker (or the 201 answers), not echoed
    assert result.seconds > 0
    assert result.rate > 0


@pytest.mark.integration
async def test_raw_baselines_move_every_message_once(kafka_bootstrap: str) -> None:
    produce, hop = await bench_raw(kafka_bootstrap, N)
    assert (produce.name, hop.name) == (RAW_PRODUCE, RAW_HOP)
    _positive(produce)
    _positive(hop)


@pytest.mark.integration
async def test_kit_hop_on_postgres_delivers_every_message_once(
    kafka_bootstrap: str, pg_url: str
) -> None:
    seen: list[int] = []
    async with fresh_pg_database(pg_url, "bench_smoke") as url:
        result = await bench_kit_hop(
            kafka_bootstrap, url, N, name="kit hop (pg)", on_progress=seen.append
        )
    _positive(result)
    assert (result.baseline, result.target) == (RAW_HOP, HOP_TARGET)
    assert seen[-1] == N


@pytest.mark.integration
async def test_kit_hop_with_the_upsert_handler_delivers_every_message_once(
    kafka_bootstrap: str, pg_url: str
) -> None:
    async with fresh_pg_database(pg_url, "bench_smoke") as url:
        result = await bench_kit_hop(
            kafka_bootstrap, url, N, name="kit hop (pg, statement per message)", upsert=True
        )
    _positive(result)


@pytest.mark.integration
async def test_kit_hop_on_sqlite_delivers_every_message_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hop.db'}"
    result = await bench_kit_hop(kafka_bootstrap, url, N, name="kit hop (sqlite)")
    _positive(result)


@pytest.mark.integration
async def test_relay_publishes_every_row_once(kafka_bootstrap: str, pg_url: str) -> None:
    async with fresh_pg_database(pg_url, "bench_smoke") as url:
        result = await bench_relay(kafka_bootstrap, url, N)
    assert result.name == RELAY
    _positive(result)


#: Two points of the latency curve (the suite runs :data:`CURVE`), to keep this test short.
SMOKE_CURVE = (HALF, 0.9)
assert set(SMOKE_CURVE) <= set(CURVE)


def _on_the_latency_curve(curve: list[Result], *, of: str) -> None:
    """Open-loop runs at rising offered loads, each a point of ``of``'s line on the chart."""
    assert len(curve) == len(SMOKE_CURVE)
    offered = []
    for result in curve:
        assert result.baseline == of
        assert result.point is not None
        assert (result.point.chart, result.point.series) == (LATENCY_CHART, of)
        offered.append(result.point.x)
    assert offered == sorted(offered)
    assert offered[0] > 0


@pytest.mark.integration
async def test_submissions_reach_the_database_once_each(pg_url: str, tmp_path: Path) -> None:
    base = await bench_bare_http(tmp_path, 50)
    assert base.name == BARE_HTTP
    _positive(base, 50)
    async with fresh_pg_database(pg_url, "bench_smoke") as url:
        bare = await bench_bare_insert(url, tmp_path, 50, curve=SMOKE_CURVE)
    assert [r.name for r in bare] == [
        BARE_INSERT,
        BARE_INSERT_HALF,
        f"{BARE_INSERT}, 0.9 x saturation",
    ]
    _positive(bare[0], 50)
    _positive(bare[1], 25)
    _on_the_latency_curve(bare[1:], of=BARE_INSERT)
    # A broker of its own, as in the suite: the service consumes every domain events topic.
    async with tansu(tmp_path) as bootstrap, fresh_pg_database(pg_url, "bench_smoke") as url:
        # Checks itself that the database holds exactly 75 applications and outbox rows.
        saturated, *curve = await bench_submissions(bootstrap, url, tmp_path, 50, curve=SMOKE_CURVE)
    assert (saturated.name, saturated.baseline) == (SUBMISSIONS, BARE_INSERT)
    (half,) = (r for r in curve if r.name == SUBMISSIONS_HALF)
    assert half.p99_target_ms is not None
    _positive(saturated, 50)
    _positive(half, 25)
    _on_the_latency_curve(curve, of=SUBMISSIONS)
    for result in (saturated, *curve):
        assert result.latency_ms is not None
        assert 0 < result.latency_ms[0] <= result.latency_ms[1]
        assert "generator" in result.note


@pytest.mark.integration
async def test_eligibility_decides_each_application_once(pg_url: str, tmp_path: Path) -> None:
    seen: list[int] = []
    async with tansu(tmp_path) as bootstrap, fresh_pg_database(pg_url, "bench_smoke") as url:
        # Checks itself that each application got exactly one eligibility.assessed.
        result = await bench_eligibility(bootstrap, url, tmp_path, 50, on_progress=seen.append)
    assert (result.name, result.baseline) == (ELIGIBILITY, RAW_HOP)
    _positive(result, 50)
    assert seen[-1] == 50


@pytest.mark.integration
async def test_instances_in_one_group_decide_each_application_once(
    pg_url: str, tmp_path: Path
) -> None:
    @asynccontextmanager
    async def fresh(folder: Path) -> AsyncIterator[tuple[str, str]]:
        async with tansu(folder) as bootstrap, fresh_pg_database(pg_url, "bench_smoke") as url:
            yield bootstrap, url

    # Checks itself, per grid point, that each application got exactly one decision.
    results = await bench_scaling(fresh, tmp_path, 40, partitions=(1, 2), instances=(2,))
    assert [r.name for r in results] == [name_of(1, 2), name_of(2, 2)]
    for result in results:
        _positive(result, 40)
        assert result.baseline == RAW_HOP
        assert result.point is not None
        assert result.point.x == 2


@pytest.mark.integration
async def test_zone_allocations_answer_each_request_once(pg_url: str, tmp_path: Path) -> None:
    seen: list[int] = []
    async with tansu(tmp_path) as bootstrap, fresh_pg_database(pg_url, "bench_smoke") as url:
        # Checks itself: one outcome per allocation, and the capacity invariant in the database.
        result = await bench_zones(bootstrap, url, tmp_path, 50, on_progress=seen.append)
    assert (result.name, result.baseline, result.target) == (ZONES, RAW_HOP, HOP_TARGET)
    _positive(result, 50)
    assert seen[-1] == 50
    assert "50 held, 0 waitlisted" in result.note


@pytest.mark.integration
async def test_payouts_pay_each_tranche_once(pg_url: str, tmp_path: Path) -> None:
    seen: list[int] = []
    async with tansu(tmp_path) as bootstrap, fresh_pg_database(pg_url, "bench_smoke") as url:
        # Checks itself: one tranche.paid and one paid payment per tranche, the ledger balanced.
        result = await bench_payouts(bootstrap, url, tmp_path, 30, on_progress=seen.append)
    assert (result.name, result.baseline, result.target) == (PAYOUTS, RAW_HOP, HOP_TARGET)
    _positive(result, 30)
    assert seen[-1] == 30


def test_absolute_targets_are_rendered_next_to_the_ratio() -> None:
    base = Result(BARE_HTTP, 1000, 1.0)
    fast = Result(
        SUBMISSIONS,
        1200,
        1.0,
        baseline=BARE_HTTP,
        rate_target=1000.0,
        p99_target_ms=50.0,
        latency_ms=(5.0, 20.0),
    )
    console = Console(width=200, record=True)
    render(Outcome(results=[base, fast]), console)
    text = console.export_text()
    assert "5.0 / 20.0" in text
    assert ">= 1,000/s, p99 < 50 ms" in text
    assert "yes" in text
    slow = Result(
        SUBMISSIONS, 1200, 1.0, baseline=BARE_HTTP, p99_target_ms=50.0, latency_ms=(5.0, 60.0)
    )
    console = Console(width=200, record=True)
    render(Outcome(results=[base, slow]), console)
    assert "NO" in console.export_text()


def _record(event_id: str) -> Any:
    return SimpleNamespace(topic="t", partition=0, offset=0, headers=[("event_id", event_id)])


def _id(record: Any) -> str:
    return str(record.headers[0][1])


@pytest.mark.parametrize(
    ("arrived", "problem"),
    [
        (["a", "b"], "1 missing"),
        (["a", "b", "c", "c"], "1 duplicated"),
        (["a", "b", "c", "z"], "1 unexpected"),
    ],
)
def test_a_lost_duplicated_or_stray_message_fails_the_benchmark(
    arrived: list[str], problem: str
) -> None:
    with pytest.raises(BenchError, match=problem):
        assert_exactly_once("x", ["a", "b", "c"], [_record(i) for i in arrived], _id)


def test_exactly_once_passes_when_each_message_arrived_once() -> None:
    assert_exactly_once("x", ["a", "b", "c"], [_record(i) for i in "cab"], _id)


def test_ratios_are_taken_against_the_named_baseline_and_rendered() -> None:
    raw = Result(RAW_HOP, 1000, 1.0)
    hop = Result("kit hop (pg)", 100, 1.0, baseline=RAW_HOP, target=HOP_TARGET)
    orphan = Result("orphan", 10, 1.0, baseline="missing")
    assert ratio_of(hop, [raw, hop]) == pytest.approx(0.1)
    assert ratio_of(raw, [raw, hop]) is None
    assert ratio_of(orphan, [orphan]) is None
    console = Console(width=160, record=True)
    render(Outcome(results=[raw, hop, orphan]), console)
    text = console.export_text()
    assert "0.100 x raw hop" in text
    assert "NO" in text
    assert "no baseline" in text


def test_start_and_end_baselines_are_pooled() -> None:
    results = [
        Result(f"{RAW_HOP} (start)", 1000, 1.0),
        Result("kit hop (pg)", 100, 1.0, baseline=RAW_HOP),
        Result(f"{RAW_HOP} (end)", 1000, 3.0),
    ]
    pooled = pool_baselines(results)
    assert [r.name for r in pooled] == [
        RAW_HOP,
        f"{RAW_HOP} (start)",
        f"{RAW_HOP} (end)",
        "kit hop (pg)",
    ]
    assert pooled[0].rate == pytest.approx(500.0)  # 2000 messages in 4 seconds
    assert ratio_of(pooled[1], pooled) == pytest.approx(2.0)
    assert ratio_of(pooled[3], pooled) == pytest.approx(0.2)


def test_command_line_options() -> None:
    options = parse_args(["--only", "kit-pg", "--quick"])
    assert options.selected() == ["raw", "kit-pg"]  # the baseline always runs
    assert options.count("kit-pg") == QUICK_N
    options = parse_args(["--n", "123"])
    assert options.count("relay") == 123
    assert parse_args([]).count("raw") == DEFAULT_N["raw"]
    assert parse_args(["--only", "eligibility", "--only", "submissions"]).selected() == [
        "raw",
        "submissions",
        "eligibility",
    ]
    assert parse_args(["--quick"]).count("submissions") == QUICK_N
    with pytest.raises(SystemExit):
        parse_args(["--n", "0"])
    # The audit log's baseline is hashlib, measured inside the benchmark: no Kafka baselines.
    assert parse_args(["--only", "audit"]).selected() == ["audit"]
    # So do the submissions (bare apps) and end to end (a bare workflow).
    assert parse_args(["--only", "submissions", "--only", "end-to-end"]).selected() == [
        "submissions",
        "end-to-end",
    ]
    assert parse_args(["--only", "audit", "--only", "relay"]).selected() == [
        "raw",
        "relay",
        "audit",
    ]


@pytest.mark.integration
async def test_audit_log_benchmark_checks_its_tree(pg_url: str, tmp_path: Path) -> None:
    """Every audit figure is produced; the rebuild and the proofs are checked against the root."""
    seen: list[int] = []
    async with fresh_pg_database(pg_url, "bench_audit") as url:
        results = await bench_audit(tmp_path, 3_000, pg_url=url, on_progress=seen.append)
    names = [r.name for r in results]
    assert names == [
        SHA256,
        "audit verify (3,000)",
        "audit append (writer, in memory)",
        "audit rebuild",
        "inclusion proof (3,000 leaves)",
        "audit append (writer, PostgreSQL)",
    ]
    assert all(r.seconds > 0 for r in results)
    assert results[3].n == 3_000
    assert results[4].latency_ms is not None
    assert ratio_of(results[1], results) is not None
    assert seen[-1] == 3_000


def test_the_results_file_lists_every_figure_with_the_machine_and_time(tmp_path: Path) -> None:
    raw = Result(RAW_HOP, 1000, 1.0)
    hop = Result("kit hop (pg)", 300, 1.0, baseline=RAW_HOP, target=HOP_TARGET)
    elig = Result(ELIGIBILITY, 500, 1.0, baseline=RAW_HOP, target=HOP_TARGET, rate_target=2_000.0)
    http = Result(SUBMISSIONS, 900, 1.0, latency_ms=(3.0, 40.0), p99_target_ms=50.0)
    outcome = Outcome(results=[raw, hop, elig, http], failures=[Failure("relay", "stuck")])

    path = write_results(outcome, tmp_path / "bench" / "results.json")

    document = json.loads(path.read_text())
    assert document["machine"]["cpu_count"] == os.cpu_count()
    assert document["machine"]["python"].endswith(platform.python_version())
    assert datetime.fromisoformat(document["time"]).tzinfo is not None
    by_name = {entry["name"]: entry for entry in document["results"]}
    keys = {"name", "rate", "p50_ms", "p99_ms", "baseline", "ratio", "target", "met"}
    assert all(keys <= set(entry) for entry in document["results"])
    assert by_name[RAW_HOP]["baseline"] is None
    assert by_name[RAW_HOP]["met"] is None
    assert (by_name["kit hop (pg)"]["ratio"], by_name["kit hop (pg)"]["met"]) == (0.3, True)
    # Ratio met, absolute rate not: not met.
    assert (by_name[ELIGIBILITY]["ratio"], by_name[ELIGIBILITY]["met"]) == (0.5, False)
    assert by_name[ELIGIBILITY]["target"] == ">= 0.25 x, >= 2,000/s"
    assert (by_name[SUBMISSIONS]["p50_ms"], by_name[SUBMISSIONS]["p99_ms"]) == (3.0, 40.0)
    assert by_name[SUBMISSIONS]["met"] is True
    assert (by_name["relay"]["met"], by_name["relay"]["error"]) == (False, "stuck")


def test_charts_draw_the_figures_that_have_a_place_on_one(tmp_path: Path) -> None:
    def at(chart: str, series: str, x: float, rate: float) -> Result:
        return Result(
            f"{series} {x}", int(rate), 1.0, latency_ms=(1.0, 2.0), point=Point(chart, series, x)
        )

    results = [
        at("scaling", "1 partition", 2, 300),
        at("scaling", "1 partition", 1, 200),
        at("scaling", "6 partitions", 1, 250),
        at("latency", "bare insert", 400, 400),
        Result("no chart", 10, 1.0),
    ]
    written = write_charts(results, tmp_path / "bench")
    assert sorted(p.name for p in written) == ["latency.png", "scaling.png"]
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert write_charts([Result("no chart", 10, 1.0)], tmp_path / "none") == []
    with pytest.raises(KeyError):
        write_charts([at("nonesuch", "a", 1, 1)], tmp_path / "bad")


def test_the_command_line_names_the_results_file() -> None:
    assert parse_args([]).results == RESULTS_PATH
    assert parse_args(["--results", "x.json"]).results == Path("x.json")


@pytest.mark.integration
async def test_end_to_end_takes_every_application_to_an_accepted_offer(tmp_path: Path) -> None:
    # The whole embedded platform on free ports; fails itself unless every application's
    # offer is accepted.
    bare, end_to_end = await bench_end_to_end(tmp_path, 2)
    assert (bare.name, end_to_end.name, end_to_end.baseline) == (
        BARE_TEMPORAL,
        END_TO_END,
        BARE_TEMPORAL,
    )
    _positive(bare, 2 * ROUNDS)
    _positive(end_to_end, 2 * ROUNDS)
    assert "5 updates" in bare.note  # technical, security, finance and a committee of two
    assert "core-s per application" in end_to_end.note
