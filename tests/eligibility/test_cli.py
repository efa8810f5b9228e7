"""``incentives rules check`` and ``incentives rules explain``, through Typer's test runner."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contracts import catalog
from services.cli.rules import EXIT_BAD_INPUT, EXIT_INVALID_RULES, app
from services.eligibility.rulefiles import SHIPPED_RULES_DIR, load_catalog
from tests.eligibility.builders import (
    PASSING_RULE,
    content_dict,
    money,
    new_application_id,
    rule_set_toml,
    submitted,
)

RULES_2026 = SHIPPED_RULES_DIR / "gaip-eligibility-2026.1.toml"


@pytest.fixture(params=["20", "80", "300"], ids=lambda c: f"COLUMNS={c}")
def runner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Every CLI test runs at several terminal widths: the output must not depend on them."""
    monkeypatch.setenv("COLUMNS", request.param)
    return CliRunner()


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


# --- check ----------------------------------------------------------------------------------


def test_check_the_shipped_rule_sets(runner: CliRunner) -> None:
    result = runner.invoke(app, ["check", str(SHIPPED_RULES_DIR)])
    assert result.exit_code == 0, result.output
    for rule_set in load_catalog().rule_sets:
        assert f"{rule_set.label}, effective from {rule_set.effective_from}" in result.stdout
        assert rule_set.sha256 in result.stdout
    assert "capacity_building" in result.stdout
    assert "OK: 3 rule set(s) valid." in result.stdout


def test_check_reports_every_problem_and_fails(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(
        rule_set_toml(
            PASSING_RULE
            + PASSING_RULE
            + '[[rules]]\nid = "broken"\nexpression = "proposal.local_jobs >"\nexplanation = "x"\n'
            + '[[rules]]\nid = "silent"\nexpression = "true"\n',
            effective_from='"2026-02-30"',
        )
    )
    result = runner.invoke(app, ["check", str(bad)])
    assert result.exit_code == EXIT_INVALID_RULES
    assert "invalid rule set" in result.stderr
    assert "duplicate rule id 'has_jobs'" in result.stderr
    assert "rule #3 'broken': CEL does not compile" in result.stderr
    assert "rule #4 'silent': no explanation" in result.stderr
    assert "must be a date (YYYY-MM-DD), got '2026-02-30'" in result.stderr
    assert "OK" not in result.stdout


def test_check_catches_versions_that_collide_across_files(
    runner: CliRunner, tmp_path: Path
) -> None:
    one, two = tmp_path / "one.toml", tmp_path / "two.toml"
    one.write_bytes(rule_set_toml(PASSING_RULE, version="1"))
    two.write_bytes(rule_set_toml(PASSING_RULE, version="2"))
    result = runner.invoke(app, ["check", str(one), str(two)])
    assert result.exit_code == EXIT_INVALID_RULES
    assert "one.toml and two.toml both take effect on 2026-01-01" in result.stderr


def test_check_a_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(tmp_path / "nope.toml")])
    assert result.exit_code == EXIT_INVALID_RULES
    assert "no such file or folder" in result.stderr


def test_check_shows_warnings_but_passes(runner: CliRunner, tmp_path: Path) -> None:
    risky = tmp_path / "risky.toml"
    risky.write_bytes(
        rule_set_toml(
            '[[rules]]\nid = "trains"\nexplanation = "No training."\n'
            'expression = "commitments.training.engineers_per_year > 5"\n'
        )
    )
    result = runner.invoke(app, ["check", str(risky)])
    assert result.exit_code == 0, result.output
    assert "warning" in result.stdout
    assert "'trains' errors on an application without optional fields" in result.stdout


# --- explain --------------------------------------------------------------------------------


def test_explain_content_rule_by_rule(runner: CliRunner, tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "app.json",
        content_dict({"proposal.sector": "other", "commitments.data_protection_attestation": None}),
    )
    result = runner.invoke(app, ["explain", str(path), "--at", "2026-06-01"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for rule in load_catalog().in_force(datetime(2026, 6, 1, tzinfo=UTC)).rules:
        assert rule.id in out
    assert "FAIL" in out
    assert "NEEDS INFO" in out
    assert "PASS" in out
    assert "Outcome: ineligible" in out
    assert "Missing fields: commitments.data_protection_attestation" in out
    assert "Rule set: gaip-eligibility 2026.1, effective from 2026-01-01" in out
    assert "in force on 2026-06-01, by --at" in out
    assert load_catalog().rule_sets[0].sha256 in out


def test_explain_counts_the_attestation_window_from_the_chosen_time(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = write_json(tmp_path / "app.json", content_dict())  # signed on 2026-11-20
    fresh = runner.invoke(app, ["explain", str(path), "--at", "2027-11-20", "--json"])
    assert fresh.exit_code == 0, fresh.output
    assert json.loads(fresh.stdout)["outcome"] == "eligible"
    stale = runner.invoke(app, ["explain", str(path), "--at", "2027-11-21", "--json"])
    decision = json.loads(stale.stdout)
    assert decision["outcome"] == "needs_information"
    assert [r["rule_id"] for r in decision["rule_results"] if not r["passed"]] == [
        "data_protection_attestation_current",
        "responsible_ai_attestation_current",
    ]


def test_explain_uses_the_submission_time_of_a_payload(runner: CliRunner, tmp_path: Path) -> None:
    envelope = submitted(
        new_application_id(),
        submitted_at=datetime(2027, 2, 1, tzinfo=UTC),
        changes={"proposal.investment_commitment": money("1200000")},
    )
    payload = tmp_path / "payload.json"
    payload.write_text(envelope.payload.model_dump_json())
    result = runner.invoke(app, ["explain", str(payload), "--json"])
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)
    assert decision["rule_set_version"] == "2027.1"
    assert decision["outcome"] == "ineligible"
    failed = [r for r in decision["rule_results"] if not r["passed"]]
    assert [r["rule_id"] for r in failed] == ["minimum_investment"]
    assert failed[0]["status"] == "failed"

    # --at overrides the submission time.
    result = runner.invoke(app, ["explain", str(payload), "--json", "--at", "2026-12-31"])
    assert json.loads(result.stdout)["outcome"] == "eligible"


def test_explain_a_whole_envelope(runner: CliRunner, tmp_path: Path) -> None:
    envelope = submitted(new_application_id(), submitted_at=datetime(2026, 11, 26, tzinfo=UTC))
    path = tmp_path / "envelope.json"
    path.write_bytes(catalog.encode(envelope))
    result = runner.invoke(app, ["explain", str(path)])
    assert result.exit_code == 0, result.output
    assert "Outcome: eligible" in result.stdout
    assert "by the submission time" in result.stdout


def test_explain_with_a_specific_rule_file(runner: CliRunner, tmp_path: Path) -> None:
    rules = tmp_path / "jobs.toml"
    rules.write_bytes(rule_set_toml(PASSING_RULE, rule_set_id="jobs-only", version="9"))
    app_file = write_json(tmp_path / "app.json", content_dict({"proposal.local_jobs": 0}))
    result = runner.invoke(app, ["explain", str(app_file), "--rules", str(rules), "--json"])
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)
    assert (decision["rule_set_id"], decision["rule_set_version"]) == ("jobs-only", "9")
    assert decision["rule_set_file"] == "jobs.toml"
    assert decision["outcome"] == "ineligible"
    assert decision["rule_results"][0]["explanation"] == "The proposal creates no local jobs."


def test_explain_refuses_an_invalid_application(runner: CliRunner, tmp_path: Path) -> None:
    data = content_dict({"firm.foreign_ownership_pct": "140"})
    del data["proposal"]["sector"]
    result = runner.invoke(app, ["explain", str(write_json(tmp_path / "a.json", data))])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "not a valid application" in result.stderr
    assert "firm.foreign_ownership_pct" in result.stderr
    assert "proposal.sector: Field required" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--at", "tomorrow"], EXIT_BAD_INPUT, "is not a date"),
        (["--at", "2025-01-01"], EXIT_INVALID_RULES, "no eligibility rule set is in force"),
        (["--rules", "/nonexistent/rules.toml"], EXIT_INVALID_RULES, "no such file or folder"),
    ],
)
def test_explain_option_errors(
    runner: CliRunner, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    path = write_json(tmp_path / "app.json", content_dict())
    result = runner.invoke(app, ["explain", str(path), *args])
    assert result.exit_code == code, result.output
    assert message in result.stderr


def test_explain_unreadable_files(runner: CliRunner, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    result = runner.invoke(app, ["explain", str(garbage)])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "not JSON" in result.stderr
    result = runner.invoke(app, ["explain", str(tmp_path / "missing.json")])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "cannot read the file" in result.stderr
