"""The demo load's pure parts: synthetic content, stage times, the check's figures, part names,
and the chaos' count of kills (on child processes of the test itself)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts.v1.applications import ApplicationContent
from services.cli.demo.chaos import DEFAULT_PARTS, Chaos, check_parts
from services.cli.demo.checks import Report
from services.cli.demo.load import (
    GRANT,
    LoadRun,
    Tracked,
    demo_content,
    quantile,
    stage_spans,
    stage_times,
)
from services.cli.state import PartRecord, PlatformState, write_state

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def test_the_synthetic_application_is_complete_and_small() -> None:
    body = demo_content(7, "DEMO-abc-007", NOW)
    content = ApplicationContent.model_validate(body)
    assert content.firm.legal_name == "Demo Firm DEMO-abc-007"
    assert content.incentives.grant is not None
    assert content.incentives.grant.amount.amount == GRANT
    assert [(z.unit_type.value, z.quantity) for z in content.incentives.zone_space] == [
        ("office_seat", 1)
    ]
    attested = content.commitments.data_protection_attestation.attested_at
    assert (NOW - attested).days == 7


def test_stage_times_come_from_the_timeline_and_the_first_tranche() -> None:
    view = {
        "timeline": [
            {"at": "2026-12-02T10:00:00Z", "status": "submitted"},
            {"at": "2026-12-02T10:00:01Z", "status": "eligible"},
            {"at": "2026-12-02T10:00:03Z", "status": None},
            {"at": "2026-12-02T10:00:09Z", "status": "approved"},
            {"at": "2026-12-02T10:00:10Z", "status": "approved"},
        ],
        "award": {"tranches": [{"sequence": 1, "paid_at": "2026-12-02T10:00:12Z"}]},
    }
    assert stage_times(view) == {"eligible": 1.0, "approved": 9.0, "tranche 1 paid": 12.0}
    assert stage_times({"timeline": []}) == {}


def test_spans_run_from_the_first_submission_to_the_last_arrival() -> None:
    def view(submitted: str, approved: str | None) -> dict[str, object]:
        timeline = [{"at": f"2026-12-02T10:00:{submitted}Z", "status": "submitted"}]
        if approved is not None:
            timeline.append({"at": f"2026-12-02T10:00:{approved}Z", "status": "approved"})
        return {"timeline": timeline}

    views = [view("02", "07"), view("00", "05"), view("01", None)]
    assert stage_spans(views) == {"approved": 7.0}
    assert stage_spans([{"timeline": []}]) == {}


def test_an_application_past_the_until_stage_rests() -> None:
    run = LoadRun(None, 1, auto_review=True, accept_offers=True, until="offer_accepted")  # type: ignore[arg-type]
    app = Tracked(number=0, firm_id="DEMO-x-000")
    for status, rests in [("offered", False), ("offer_accepted", True), ("completed", True)]:
        app.status = status
        assert run.rests(app) is rests
    with pytest.raises(ValueError, match="until"):
        LoadRun(None, 1, until="tranche 1 paid")  # type: ignore[arg-type]


def test_a_view_is_read_again_only_when_the_listing_moved() -> None:
    app = Tracked(number=0, firm_id="DEMO-x-000")
    assert app.view_is_stale()
    app.view, app.listed_at = {"updated_at": "2026-12-02T10:00:01Z"}, "2026-12-02T10:00:01Z"
    assert not app.view_is_stale()
    app.listed_at = "2026-12-02T10:00:02Z"
    assert app.view_is_stale()


def test_quantiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert quantile(values, 0.5) == 50.0
    assert quantile(values, 0.99) == 99.0
    assert quantile([], 0.5) == 0.0


def test_a_report_is_clean_only_when_every_figure_is_empty() -> None:
    report = Report()
    assert report.clean
    assert len(report.figures()) == 9
    report.paid_twice.append("rail award_1/tranche-1")
    assert not report.clean


def test_unknown_parts_are_refused() -> None:
    check_parts(DEFAULT_PARTS)
    with pytest.raises(ValueError, match="nosuch"):
        check_parts(["broker", "nosuch"])
    with pytest.raises(ValueError, match="none given"):
        check_parts([])


async def test_chaos_makes_its_count_of_kills_and_no_more(tmp_path: Path) -> None:
    """``count``: the chaos SIGKILLs that many parts, :meth:`Chaos.until_enough` returns then,
    and :meth:`Chaos.run` ends by itself."""
    parts = ["rail", "audit", "zones"]  # no health URL: up while their process runs
    children = [subprocess.Popen(["sleep", "300"]) for _ in range(4)]
    try:
        write_state(
            tmp_path,
            PlatformState(
                supervisor_pid=os.getpid(),
                status="ready",
                var_dir=str(tmp_path),
                kafka_bootstrap="127.0.0.1:1",
                temporal_address="127.0.0.1:1",
                temporal_ui_url=None,
                started_at=NOW.isoformat(),
                parts=[
                    PartRecord(name, "service", child.pid, list(child.args), log="")
                    for name, child in zip([*parts, "review"], children, strict=True)
                ],
            ),
        )
        assert await Chaos(tmp_path, every=0.01, parts=["rail"]).until_enough(patience=0)
        chaos = Chaos(tmp_path, every=0.01, parts=[*parts, "review"], seed=1, in_turn=True, count=3)
        killing = asyncio.create_task(chaos.run())
        assert await chaos.until_enough(patience=30)
        await asyncio.wait_for(killing, timeout=30)  # ends after its third kill, unstopped
        assert children[3].poll() is None  # the fourth part was left alone
        assert [(kill.part, kill.pid) for kill in chaos.kills] == [
            (name, child.pid) for name, child in zip(parts, children[:3], strict=True)
        ]
        for child in children[:3]:  # killed (``pid_alive`` may have reaped them already)
            child.wait(timeout=10)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
