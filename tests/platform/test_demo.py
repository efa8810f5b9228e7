"""The demo load's pure parts: synthetic content, stage times, the check's figures, part names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contracts.v1.applications import ApplicationContent
from services.cli.demo.chaos import DEFAULT_PARTS, check_parts
from services.cli.demo.checks import Report
from services.cli.demo.load import GRANT, demo_content, quantile, stage_times

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
