"""The committed JSON Schemas: in sync with the models, valid, guarded against breaking changes."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, create_model

from contracts import schemas_tool
from contracts.catalog import MESSAGE_TYPES, encode, envelope_model, example_payloads, make_envelope
from contracts.envelope import Actor, Envelope
from contracts.schemas_tool import (
    EXIT_BREAKING,
    EXIT_DRIFT,
    EXIT_OK,
    INDEX_FILE,
    SCHEMA_DIR,
    BreakingChange,
    find_breaking_changes,
    find_breaking_changes_in_catalog,
    find_drift,
    generate_files,
    generate_schema,
    main,
)
from contracts.v1.applications import ApplicationWithdrawn

REPO_ROOT = Path(__file__).resolve().parents[2]


def _kinds(changes: list[BreakingChange]) -> set[tuple[str, str]]:
    return {(change.path, change.kind) for change in changes}


@pytest.fixture(scope="module")
def submitted_schema() -> dict[str, Any]:
    return generate_schema("application.submitted")


@pytest.fixture
def schema_copy(tmp_path: Path) -> Path:
    """A private copy of the committed schema directory."""
    directory = tmp_path / "v1"
    directory.mkdir()
    for path in SCHEMA_DIR.glob("*.json"):
        (directory / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    return directory


# --- the committed tree --------------------------------------------------------------------------


def test_committed_schemas_match_the_models() -> None:
    assert find_drift(SCHEMA_DIR, generate_files()) == []


def test_check_passes_on_the_committed_tree(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == EXIT_OK
    assert "OK" in capsys.readouterr().out


def test_check_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "contracts.schemas_tool", "check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == EXIT_OK, result.stdout + result.stderr


def test_there_is_one_schema_per_message_type_plus_headers_and_an_index() -> None:
    files = {path.name for path in SCHEMA_DIR.glob("*.json")}
    assert files == {f"{message_type}.json" for message_type in MESSAGE_TYPES} | {
        INDEX_FILE,
        "headers.json",
        "dlq-headers.json",
    }

    index = json.loads((SCHEMA_DIR / INDEX_FILE).read_text(encoding="utf-8"))
    assert {entry["type"] for entry in index["messages"]} == set(MESSAGE_TYPES)
    assert {entry["kind"] for entry in index["messages"]} == {"event", "command"}


@pytest.mark.parametrize("message_type", sorted(MESSAGE_TYPES))
def test_committed_schema_is_valid_and_accepts_real_messages(message_type: str) -> None:
    schema = json.loads((SCHEMA_DIR / f"{message_type}.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)

    assert schema["properties"]["type"]["const"] == message_type
    for example in schema["examples"]:
        validator.validate(example)
    for payload in example_payloads(message_type):
        envelope = make_envelope(
            message_type,
            payload,
            subject=str(getattr(payload, "application_id", "")),
            actor=Actor.system("tests"),
            producer="tests",
            correlation_id=uuid.uuid4(),
        )
        validator.validate(json.loads(encode(envelope)))


def test_committed_schema_refuses_float_money() -> None:
    schema = json.loads((SCHEMA_DIR / "award.open.json").read_text(encoding="utf-8"))
    message = copy.deepcopy(schema["examples"][0])
    message["payload"]["total"]["amount"] = 250000.0

    assert not Draft202012Validator(schema).is_valid(message)


# --- compatibility: the pure function ------------------------------------------------------------


def test_identical_schemas_are_compatible(submitted_schema: dict[str, Any]) -> None:
    assert find_breaking_changes(submitted_schema, copy.deepcopy(submitted_schema)) == []


def test_removed_v1_field_is_breaking(submitted_schema: dict[str, Any]) -> None:
    new = copy.deepcopy(submitted_schema)
    firm = new["$defs"]["Firm"]
    del firm["properties"]["legal_name"]
    firm["required"].remove("legal_name")

    changes = find_breaking_changes(submitted_schema, new)

    assert _kinds(changes) == {("$.payload.content.firm.legal_name", "removed_property")}


def test_removed_optional_field_is_breaking_too(submitted_schema: dict[str, Any]) -> None:
    new = copy.deepcopy(submitted_schema)
    del new["$defs"]["IncentivesRequested"]["properties"]["fast_track"]

    changes = find_breaking_changes(submitted_schema, new)

    assert _kinds(changes) == {("$.payload.content.incentives.fast_track", "removed_property")}


def test_removed_field_of_a_shared_definition_is_reported_everywhere_it_is_used(
    submitted_schema: dict[str, Any],
) -> None:
    new = copy.deepcopy(submitted_schema)
    money = new["$defs"]["Money"]
    del money["properties"]["currency"]
    money["required"].remove("currency")

    paths = {change.path for change in find_breaking_changes(submitted_schema, new)}

    assert paths == {
        "$.payload.content.incentives.grant.amount.currency",
        "$.payload.content.proposal.investment_commitment.currency",
    }


def test_new_required_field_is_breaking(submitted_schema: dict[str, Any]) -> None:
    new = copy.deepcopy(submitted_schema)
    proposal = new["$defs"]["Proposal"]
    proposal["properties"]["city"] = {"type": "string", "description": "Where."}
    proposal["required"].append("city")

    changes = find_breaking_changes(submitted_schema, new)

    assert _kinds(changes) == {("$.payload.content.proposal.city", "new_required")}


def test_optional_field_made_required_is_breaking(submitted_schema: dict[str, Any]) -> None:
    new = copy.deepcopy(submitted_schema)
    new["$defs"]["Firm"]["required"].append("parent_companies")

    changes = find_breaking_changes(submitted_schema, new)

    assert _kinds(changes) == {("$.payload.content.firm.parent_companies", "new_required")}


def test_changed_type_is_breaking(submitted_schema: dict[str, Any]) -> None:
    new = copy.deepcopy(submitted_schema)
    new["$defs"]["Proposal"]["properties"]["local_jobs"] = {"type": "string"}

    changes = find_breaking_changes(submitted_schema, new)

    assert _kinds(changes) == {("$.payload.content.proposal.local_jobs", "changed_type")}
    assert "integer" in changes[0].detail
    assert "string" in changes[0].detail


def test_field_that_no_longer_accepts_null_is_breaking(submitted_schema: dict[str, Any]) -> None:
    new = copy.deepcopy(submitted_schema)
    commitments = new["$defs"]["Commitments"]["properties"]
    commitments["training"] = {"$ref": "#/$defs/TrainingCommitment"}

    changes = find_breaking_changes(submitted_schema, new)

    assert _kinds(changes) == {("$.payload.content.commitments.training", "changed_type")}


def test_narrowed_enum_is_breaking(submitted_schema: dict[str, Any]) -> None:
    new = copy.deepcopy(submitted_schema)
    new["$defs"]["Sector"]["enum"].remove("other")

    changes = find_breaking_changes(submitted_schema, new)

    assert _kinds(changes) == {("$.payload.content.proposal.sector", "narrowed_enum")}
    assert "other" in changes[0].detail


def test_tightened_constraint_is_breaking(submitted_schema: dict[str, Any]) -> None:
    new = copy.deepcopy(submitted_schema)
    new["$defs"]["Proposal"]["properties"]["ai_use_case"]["maxLength"] = 100

    changes = find_breaking_changes(submitted_schema, new)

    assert _kinds(changes) == {("$.payload.content.proposal.ai_use_case", "tightened_constraint")}


def test_additive_and_widening_changes_are_compatible(submitted_schema: dict[str, Any]) -> None:
    new = copy.deepcopy(submitted_schema)
    proposal = new["$defs"]["Proposal"]
    # A new optional field.
    proposal["properties"]["city"] = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    # A widened type (integer -> integer or null) and a relaxed bound.
    proposal["properties"]["local_jobs"] = {
        "anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]
    }
    proposal["properties"]["ai_use_case"]["maxLength"] = 8000
    # A new enum value and new annotations.
    new["$defs"]["Sector"]["enum"].append("energy")
    new["$defs"]["Firm"]["description"] = "Reworded."
    new["$defs"]["Firm"]["properties"]["legal_name"]["examples"] = ["Other GmbH"]

    assert find_breaking_changes(submitted_schema, new) == []


def test_breaking_changes_are_found_in_hand_written_schemas() -> None:
    old = {
        "type": "object",
        "properties": {
            "a": {"type": "string"},
            "b": {"type": "integer"},
            "c": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
        },
        "required": ["a"],
        "$defs": {"Item": {"type": "object", "properties": {"x": {"type": "number"}}}},
    }
    new = {
        "type": "object",
        "properties": {
            "b": {"type": "integer"},
            "c": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
            "d": {"type": "string"},
        },
        "required": ["d"],
        "$defs": {"Item": {"type": "object", "properties": {"x": {"type": "boolean"}}}},
    }

    assert _kinds(find_breaking_changes(old, new)) == {
        ("$.a", "removed_property"),
        ("$.d", "new_required"),
        ("$.c[].x", "changed_type"),
    }


def test_map_values_are_compared() -> None:
    def schema(value_type: str) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "labels": {"type": "object", "additionalProperties": {"type": value_type}}
            },
        }

    assert find_breaking_changes(schema("string"), schema("string")) == []
    assert _kinds(find_breaking_changes(schema("string"), schema("integer"))) == {
        ("$.labels.*", "changed_type")
    }


def test_closing_an_open_object_is_breaking() -> None:
    old = {"type": "object", "properties": {"a": {"type": "string"}}}
    new = {**old, "additionalProperties": False}

    assert _kinds(find_breaking_changes(old, new)) == {("$", "closed_object")}


def test_integer_to_number_is_a_widening() -> None:
    old = {"type": "object", "properties": {"n": {"type": "integer"}}}
    new = {"type": "object", "properties": {"n": {"type": "number"}}}

    assert find_breaking_changes(old, new) == []
    assert _kinds(find_breaking_changes(new, old)) == {("$.n", "changed_type")}


def test_recursive_schemas_terminate() -> None:
    def tree(child_type: str) -> dict[str, Any]:
        return {
            "$ref": "#/$defs/Node",
            "$defs": {
                "Node": {
                    "type": "object",
                    "properties": {
                        "name": {"type": child_type},
                        "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                    },
                }
            },
        }

    assert find_breaking_changes(tree("string"), tree("string")) == []
    assert _kinds(find_breaking_changes(tree("string"), tree("integer"))) == {
        ("$.name", "changed_type")
    }


def test_removed_message_type_is_breaking() -> None:
    schema = generate_schema("zone.refused")

    result = find_breaking_changes_in_catalog({"zone.refused": schema}, {})

    assert [change.kind for change in result["zone.refused"]] == ["removed_message_type"]
    assert find_breaking_changes_in_catalog({}, {"zone.refused": schema}) == {}


# --- the command line ----------------------------------------------------------------------------


def _without_field(model: type[BaseModel], field_name: str) -> type[BaseModel]:
    """A copy of ``model`` as if a developer had deleted ``field_name`` from it."""
    fields: dict[str, Any] = {
        name: (info.annotation, info)
        for name, info in model.model_fields.items()
        if name != field_name
    }
    slim: type[BaseModel] = create_model(model.__name__, __config__=model.model_config, **fields)
    return slim


def test_check_fails_when_a_v1_field_is_removed_from_a_model(
    schema_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    slim = _without_field(ApplicationWithdrawn, "reason")

    def patched(message_type: str) -> type[Envelope[Any]]:
        if message_type == "application.withdrawn":
            return Envelope[slim]  # type: ignore[valid-type]
        return envelope_model(message_type)

    monkeypatch.setattr(schemas_tool, "envelope_model", patched)

    assert main(["--dir", str(schema_copy), "check"]) == EXIT_BREAKING
    err = capsys.readouterr().err
    assert "application.withdrawn: $.payload.reason: property removed [removed_property]" in err

    # `write` refuses to bake the break into the baseline...
    before = (schema_copy / "application.withdrawn.json").read_text(encoding="utf-8")
    assert main(["--dir", str(schema_copy), "write"]) == EXIT_BREAKING
    assert (schema_copy / "application.withdrawn.json").read_text(encoding="utf-8") == before

    # ...unless explicitly told to, and then a check against the old baseline still fails.
    assert main(["--dir", str(schema_copy), "write", "--allow-breaking"]) == EXIT_OK
    assert main(["--dir", str(schema_copy), "check"]) == EXIT_OK
    assert main(["--dir", str(schema_copy), "check", "--against", str(SCHEMA_DIR)]) == (
        EXIT_BREAKING
    )


def test_check_reports_drift_separately_from_breaking_changes(
    schema_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = schema_copy / "zone.refused.json"
    schema = json.loads(target.read_text(encoding="utf-8"))
    schema["description"] = "Edited by hand."
    target.write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
    (schema_copy / "review.escalated.json").unlink()

    drift = find_drift(schema_copy, generate_files())

    assert {(item.file, item.kind) for item in drift} == {
        ("zone.refused.json", "changed"),
        ("review.escalated.json", "missing"),
    }
    assert main(["--dir", str(schema_copy), "check"]) == EXIT_DRIFT
    out = capsys.readouterr().out
    assert "zone.refused.json differs from the models" in out
    assert "review.escalated.json is generated but not committed" in out
    assert "run `python -m contracts.schemas_tool write`" in out

    assert main(["--dir", str(schema_copy), "write"]) == EXIT_OK
    assert find_drift(schema_copy, generate_files()) == []
    assert main(["--dir", str(schema_copy), "check"]) == EXIT_OK


def test_a_committed_schema_no_longer_generated_is_a_removed_type(
    schema_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (schema_copy / "zone.teleported.json").write_text(
        json.dumps(generate_schema("zone.refused")), encoding="utf-8"
    )

    assert [(d.file, d.kind) for d in find_drift(schema_copy, generate_files())] == [
        ("zone.teleported.json", "unexpected")
    ]
    assert main(["--dir", str(schema_copy), "check"]) == EXIT_BREAKING
    assert "zone.teleported: $: message type removed" in capsys.readouterr().err
    assert main(["--dir", str(schema_copy), "write"]) == EXIT_BREAKING
    assert main(["--dir", str(schema_copy), "write", "--allow-breaking"]) == EXIT_OK
    assert not (schema_copy / "zone.teleported.json").exists()


def test_check_against_an_older_baseline_finds_a_removed_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A baseline in which zone.refused still had a field the current models no longer have.
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    schema = generate_schema("zone.refused")
    schema["$defs"]["ZoneRefused"]["properties"]["zone_id"] = {"type": "string"}
    (baseline / "zone.refused.json").write_text(json.dumps(schema), encoding="utf-8")

    assert main(["check", "--against", str(baseline)]) == EXIT_BREAKING
    assert "zone.refused: $.payload.zone_id: property removed" in capsys.readouterr().err


def test_check_with_a_missing_baseline_fails(tmp_path: Path) -> None:
    assert main(["check", "--against", str(tmp_path / "absent")]) == EXIT_BREAKING


def _header_validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("caused", [False, True], ids=["origin", "caused"])
def test_envelope_headers_match_the_committed_header_schema(caused: bool) -> None:
    payload = example_payloads("application.withdrawn")[0]
    envelope = make_envelope(
        "application.withdrawn",
        payload,
        subject=payload.application_id,  # type: ignore[attr-defined]
        actor=Actor.system("applications"),
        producer="applications",
        correlation_id=uuid.uuid4(),
        causation_id=uuid.uuid4() if caused else None,
    )
    headers = {name: value.decode() for name, value in envelope.headers()}
    assert len(headers) == len(envelope.headers())
    errors = [e.message for e in _header_validator("headers").iter_errors(headers)]
    assert errors == []
    # A message without a cause carries no causation header at all, not an empty one.
    assert ("causation_id" in headers) is caused
    for name, value in headers.items():
        assert value == str(getattr(envelope, name))


def test_header_schema_refuses_an_empty_causation_id() -> None:
    headers = {
        "event_id": str(uuid.uuid4()),
        "type": "application.submitted",
        "schema_version": "1",
        "correlation_id": str(uuid.uuid4()),
        "causation_id": "",
        "producer": "applications",
    }
    assert not _header_validator("headers").is_valid(headers)
    del headers["causation_id"]
    assert _header_validator("headers").is_valid(headers)
