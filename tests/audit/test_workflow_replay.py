"""``incentives audit workflows --from``: stored histories replayed against the current code.

The recorded scenario histories of ``tests/workflows/histories`` stand for the stored ones; a
history edited so that the code no longer issues what it records stands for a
non-deterministic change. Also the export formats that carry histories (bundle and JSON
Lines) and the CSV export, on hand-made bundles.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.audit.domain.leaves import leaf_bytes
from services.cli.export_formats import (
    CSV_COLUMNS,
    bundle_from_jsonl,
    csv_text,
    jsonl_lines,
    workflows_from_jsonl,
)
from services.cli.main import app as cli
from tests.support import free_port

HISTORIES = Path(__file__).parents[1] / "workflows" / "histories"
INELIGIBLE = HISTORIES / "ineligible.json"


@pytest.fixture(params=["20", "80", "300"], ids=lambda c: f"COLUMNS={c}")
def runner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The output must not depend on the terminal's width."""
    monkeypatch.setenv("COLUMNS", request.param)
    return CliRunner()


def flat(output: str) -> str:
    return " ".join(output.split())


def tampered(path: Path) -> dict[str, Any]:
    """The history with its first activity renamed: the code schedules another one."""
    history: dict[str, Any] = json.loads(path.read_text())
    for event in history["events"]:
        if event["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED":
            event["activityTaskScheduledEventAttributes"]["activityType"]["name"] = "send_fax"
            return history
    raise AssertionError(f"{path.name} schedules no activity")


def test_every_stored_history_replays(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every history once, at one width: the tests below vary the width on one or two histories.
    monkeypatch.setenv("COLUMNS", "80")
    result = CliRunner().invoke(cli, ["audit", "workflows", "--from", str(HISTORIES)])
    assert result.exit_code == 0, result.output
    count = len(list(HISTORIES.glob("*.json")))
    assert f"OK every one of the {count} run(s) replays" in flat(result.output)


def test_a_non_deterministic_history_is_reported(runner: CliRunner, tmp_path: Path) -> None:
    folder = tmp_path / "histories"
    folder.mkdir()
    (folder / "app_changed.json").write_text(json.dumps(tampered(INELIGIBLE)))
    (folder / "app_fine.json").write_text(INELIGIBLE.read_text())
    result = runner.invoke(cli, ["audit", "workflows", "--from", str(folder)])
    assert result.exit_code == 1, result.output
    [failure] = [line for line in result.output.splitlines() if line.startswith("FAIL")]
    assert failure.startswith("FAIL app_changed run ")
    assert "Nondeterminism" in failure
    assert "send_fax" in failure
    assert "NON-DETERMINISTIC" in result.output
    assert "ok" in result.output  # the other run replays


def test_nothing_to_replay_is_bad_input(runner: CliRunner, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runner.invoke(cli, ["audit", "workflows", "--from", str(empty)]).exit_code == 2
    other = tmp_path / "other.json"
    other.write_text('{"hello": "world"}')
    result = runner.invoke(cli, ["audit", "workflows", "--from", str(other)])
    assert result.exit_code == 2
    assert "holds no workflow history" in flat(result.output)


def _bundle(workflows: list[dict[str, Any]]) -> dict[str, Any]:
    leaf = leaf_bytes(
        "applications.events",
        b"app_x",
        (("type", b"application.submitted"),),
        json.dumps(
            {
                "event_id": "e1",
                "type": "application.submitted",
                "occurred_at": "2026-12-01T10:00:00Z",
                "actor": {"kind": "firm", "id": "alice"},
                "payload": {"revision": 1},
            }
        ).encode(),
    )
    return {
        "format": "incentives.audit.bundle/v1",
        "application_id": "app_x",
        "verifier_key": "k",
        "checkpoint": "c",
        "entries": [
            {
                "index": 0,
                "leaf": base64.b64encode(leaf).decode(),
                "topic": "applications.events",
                "logged_at": "2026-12-01T10:00:01Z",
                "inclusion_proof": [],
            }
        ],
        "workflows": workflows,
    }


def _runs(*paths: Path) -> list[dict[str, Any]]:
    return [
        {"workflow_id": p.stem, "run_id": f"run-{p.stem}", "history": json.loads(p.read_text())}
        for p in paths
    ]


def test_a_bundles_histories_replay(runner: CliRunner, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(_bundle(_runs(INELIGIBLE))))
    result = runner.invoke(cli, ["audit", "workflows", "--from", str(bundle)])
    assert result.exit_code == 0, result.output
    changed = _runs(INELIGIBLE)
    changed[0]["history"] = tampered(INELIGIBLE)
    bundle.write_text(json.dumps(_bundle(changed)))
    assert runner.invoke(cli, ["audit", "workflows", "--from", str(bundle)]).exit_code == 1


def test_json_lines_carry_the_bundle_and_the_histories(runner: CliRunner, tmp_path: Path) -> None:
    bundle = _bundle(_runs(INELIGIBLE, HISTORIES / "offer_lapsed.json"))
    lines = [json.loads(line) for line in jsonl_lines(bundle)]
    assert lines[0]["source"] == "bundle"
    [log] = [line for line in lines if line["source"] == "log"]
    assert log["key"] == "app_x"
    assert log["headers"] == {"type": "application.submitted"}
    assert log["record"]["type"] == "application.submitted"
    events = [line for line in lines if line["source"] == "workflow"]
    assert len(events) == sum(len(r["history"]["events"]) for r in bundle["workflows"])
    assert [e["event_id"] for e in events if e["workflow_id"] == "ineligible"] == list(
        range(1, len(bundle["workflows"][0]["history"]["events"]) + 1)
    )
    text = "".join(f"{line}\n" for line in jsonl_lines(bundle))
    again = bundle_from_jsonl(text)
    assert again["entries"] == bundle["entries"]
    assert {k: again[k] for k in ("format", "application_id", "verifier_key", "checkpoint")} == {
        k: bundle[k] for k in ("format", "application_id", "verifier_key", "checkpoint")
    }
    assert workflows_from_jsonl(text) == [
        {"workflow_id": r["workflow_id"], "run_id": r["run_id"], "history": r["history"]}
        for r in bundle["workflows"]
    ]
    path = tmp_path / "export.jsonl"
    path.write_text(text)
    result = runner.invoke(cli, ["audit", "workflows", "--from", str(path)])
    assert result.exit_code == 0, result.output
    assert "OK every one of the 2 run(s) replays" in flat(result.output)


def test_csv_has_a_row_per_record_and_workflow_event() -> None:
    bundle = _bundle(_runs(INELIGIBLE))
    rows = list(csv.DictReader(io.StringIO(csv_text(bundle))))
    assert tuple(rows[0]) == CSV_COLUMNS
    log, *events = rows
    assert (log["source"], log["application_id"], log["index"]) == ("log", "app_x", "0")
    assert (log["type"], log["actor"], log["event_id"]) == (
        "application.submitted",
        "firm alice",
        "e1",
    )
    assert json.loads(log["detail"]) == {"revision": 1}
    assert len(events) == len(bundle["workflows"][0]["history"]["events"])
    assert events[0]["type"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED"
    assert events[0]["run_id"] == "run-ineligible"
    assert "workflowExecutionStartedEventAttributes" in json.loads(events[0]["detail"])


def test_an_unreachable_temporal_is_bad_input(runner: CliRunner) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = runner.invoke(cli, ["audit", "workflows", "app_x", "--temporal", address])
    assert result.exit_code == 2
    assert f"Temporal at {address} is unreachable" in flat(result.output)
