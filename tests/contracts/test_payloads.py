"""The v1 payload models: documentation on every field, examples that validate, invariants."""

from __future__ import annotations

import ast
import json
import typing
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError, create_model

from contracts.catalog import MESSAGE_TYPES, example_payloads
from contracts.envelope import UtcDatetime, utcnow
from contracts.v1.applications import (
    ATTESTATION_CLOCK_SKEW,
    ApplicationAmended,
    ApplicationSubmitted,
    Attestation,
)
from contracts.v1.disbursement import AwardOpened, BudgetExhausted, OpenAward
from contracts.v1.eligibility import EligibilityAssessed
from contracts.v1.review import ReviewInformationRequested, ReviewTaskAssigned

CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "contracts"


def _nested_models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from _nested_models(argument)


def _all_models() -> list[type[BaseModel]]:
    """Every model reachable from a registered payload, payloads included."""
    seen: dict[str, type[BaseModel]] = {}
    stack = list(MESSAGE_TYPES.values())
    while stack:
        model = stack.pop()
        if model.__qualname__ in seen:
            continue
        seen[model.__qualname__] = model
        for field in model.model_fields.values():
            stack.extend(_nested_models(field.annotation))
    return sorted(seen.values(), key=lambda model: model.__name__)


ALL_MODELS = _all_models()
ALL_FIELDS = [
    pytest.param(model, name, id=f"{model.__name__}.{name}")
    for model in ALL_MODELS
    for name in model.model_fields
]


def test_models_are_discovered() -> None:
    names = {model.__name__ for model in ALL_MODELS}
    assert {"Money", "ApplicationContent", "Firm", "ParentCompany", "Tranche"} <= names


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda model: model.__name__)
def test_every_model_forbids_unknown_fields_and_has_a_docstring(model: type[BaseModel]) -> None:
    assert model.model_config.get("extra") == "forbid"
    assert model.__doc__
    assert model.__doc__.strip()


@pytest.mark.parametrize(("model", "name"), ALL_FIELDS)
def test_every_field_has_a_description_and_examples(model: type[BaseModel], name: str) -> None:
    field = model.model_fields[name]
    assert field.description
    assert len(field.description) > 5
    assert field.examples


@pytest.mark.parametrize(("model", "name"), ALL_FIELDS)
def test_every_field_example_is_valid_json_for_the_field(model: type[BaseModel], name: str) -> None:
    field = model.model_fields[name]
    assert field.annotation is not None
    # A one-field model validates the example exactly as the field would, in JSON mode.
    probe = create_model("Probe", value=(field.annotation, field))
    for example in field.examples or ():
        probe.model_validate_json(json.dumps({"value": example}))


@pytest.mark.parametrize("message_type", sorted(MESSAGE_TYPES))
def test_every_message_type_has_valid_examples(message_type: str) -> None:
    examples = example_payloads(message_type)

    assert examples
    assert all(isinstance(example, MESSAGE_TYPES[message_type]) for example in examples)


@pytest.mark.parametrize("message_type", sorted(MESSAGE_TYPES))
def test_every_payload_names_its_application(message_type: str) -> None:
    # The application id is the record key: every payload must carry it.
    assert "application_id" in MESSAGE_TYPES[message_type].model_fields


def test_payload_models_are_frozen() -> None:
    payload = example_payloads("application.submitted")[0]
    with pytest.raises(ValidationError):
        payload.firm_id = "OTHER"  # type: ignore[attr-defined]


def test_unknown_payload_field_is_refused() -> None:
    data = example_payloads("application.withdrawn")[0].model_dump(mode="json")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        type(example_payloads("application.withdrawn")[0]).model_validate({**data, "x": 1})


def test_naive_datetime_is_refused_in_payloads() -> None:
    data = example_payloads("application.submitted")[0].model_dump(mode="json")
    data["submitted_at"] = "2026-11-26T10:35:02"
    with pytest.raises(ValidationError, match="time-zone offset"):
        ApplicationSubmitted.model_validate(data)
    data["submitted_at"] = datetime(2026, 11, 26, 10, 35, 2)
    with pytest.raises(ValidationError, match="timezone"):
        ApplicationSubmitted.model_validate(data)


@pytest.mark.parametrize(
    "value",
    [525, 0, -1, 1764580502.5, True, "525", "1764580502", "2026-11-26", "10:35:02Z", "", None],
)
def test_a_date_time_is_an_rfc_3339_string_never_a_number(value: object) -> None:
    # Lax parsing would read 525 as 1970-01-01T00:08:45Z.
    adapter: TypeAdapter[datetime] = TypeAdapter(UtcDatetime)
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python(value)
    assert caught.value.errors()[0]["type"] == "date_time_format"
    with pytest.raises(ValidationError):
        adapter.validate_json(json.dumps(value))


def test_an_integer_attestation_date_is_refused_on_the_wire() -> None:
    attestation = '{"accepted": true, "signatory": "Dr. Jana Weber", "attested_at": 525}'
    with pytest.raises(ValidationError) as caught:
        Attestation.model_validate_json(attestation)
    assert [error["loc"] for error in caught.value.errors()] == [("attested_at",)]


@pytest.mark.parametrize(
    "value",
    ["2026-11-26T10:35:02Z", "2026-11-26T10:35:02.123456Z", "2026-11-26t10:35:02+04:00"],
)
def test_rfc_3339_strings_are_accepted(value: str) -> None:
    assert TypeAdapter(UtcDatetime).validate_python(value).utcoffset() == timedelta(0)


def test_an_attestation_signed_in_the_future_is_refused() -> None:
    later = utcnow() + ATTESTATION_CLOCK_SKEW + timedelta(minutes=1)
    with pytest.raises(ValidationError, match="in the future") as caught:
        Attestation(accepted=True, signatory="Dr. Jana Weber", attested_at=later)
    assert [error["loc"] for error in caught.value.errors()] == [("attested_at",)]
    assert caught.value.errors()[0]["type"] == "date_in_future"


def test_an_attestation_a_little_ahead_of_our_clock_is_tolerated() -> None:
    within_skew = utcnow() + ATTESTATION_CLOCK_SKEW - timedelta(seconds=30)
    signed = Attestation(accepted=True, signatory="Dr. Jana Weber", attested_at=within_skew)
    assert signed.attested_at == within_skew


def test_aware_datetimes_are_normalised_to_utc() -> None:
    data = example_payloads("application.submitted")[0].model_dump(mode="json")
    data["submitted_at"] = "2026-11-26T14:35:02+04:00"

    submitted = ApplicationSubmitted.model_validate(data)

    assert submitted.submitted_at.utcoffset() is not None
    assert submitted.submitted_at.isoformat() == "2026-11-26T10:35:02+00:00"


def test_submitted_content_carries_what_eligibility_and_review_need() -> None:
    submitted = example_payloads("application.submitted")[0]
    assert isinstance(submitted, ApplicationSubmitted)
    content = submitted.content

    assert content.firm.country_of_incorporation == "DE"
    assert content.firm.parent_companies[0].legal_name == "Acme Holdings SE"
    assert content.incentives.grant is not None
    assert content.incentives.grant.amount.currency == "EUR"
    assert {request.unit_type for request in content.incentives.zone_space} == {
        "gpu_rack_unit",
        "office_seat",
    }
    assert content.proposal.sector == "health"
    assert content.commitments.responsible_ai_attestation is not None


def test_impossible_percentage_is_refused() -> None:
    data = example_payloads("application.submitted")[0].model_dump(mode="json")
    data["content"]["firm"]["foreign_ownership_pct"] = "120"
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        ApplicationSubmitted.model_validate(data)


def test_oversized_text_is_refused() -> None:
    data = example_payloads("application.submitted")[0].model_dump(mode="json")
    data["content"]["proposal"]["ai_use_case"] = "x" * 4001
    with pytest.raises(ValidationError, match="at most 4000"):
        ApplicationSubmitted.model_validate(data)


def test_amendment_cannot_predate_the_submission() -> None:
    data = example_payloads("application.amended")[0].model_dump(mode="json")
    data["amended_at"] = "2026-01-01T00:00:00Z"
    with pytest.raises(ValidationError, match="amended_at"):
        ApplicationAmended.model_validate(data)


def test_needs_information_must_name_the_missing_fields() -> None:
    data = example_payloads("eligibility.assessed")[0].model_dump(mode="json")
    data["outcome"] = "needs_information"
    with pytest.raises(ValidationError, match="missing fields"):
        EligibilityAssessed.model_validate(data)

    data["missing_fields"] = ["commitments.data_protection_attestation"]
    assert EligibilityAssessed.model_validate(data).outcome == "needs_information"


def test_eligibility_decision_records_rule_set_identity() -> None:
    assessed = example_payloads("eligibility.assessed")[0]
    assert isinstance(assessed, EligibilityAssessed)
    data = assessed.model_dump(mode="json")
    data["rule_set_sha256"] = "not-a-hash"
    with pytest.raises(ValidationError, match="rule_set_sha256"):
        EligibilityAssessed.model_validate(data)


def test_committee_tasks_carry_a_quorum_and_others_do_not() -> None:
    technical, committee = example_payloads("review.task_assigned")
    assert isinstance(committee, ReviewTaskAssigned)
    assert committee.quorum is not None
    assert (committee.quorum.required, committee.quorum.members) == (2, 3)

    data = technical.model_dump(mode="json")
    data["quorum"] = {"required": 2, "members": 3}
    with pytest.raises(ValidationError, match="quorum"):
        ReviewTaskAssigned.model_validate(data)

    data = committee.model_dump(mode="json")
    data["quorum"] = {"required": 4, "members": 3}
    with pytest.raises(ValidationError, match="exceed"):
        ReviewTaskAssigned.model_validate(data)


def test_information_request_must_ask_something_with_a_future_deadline() -> None:
    data = example_payloads("review.information_requested")[0].model_dump(mode="json")
    with pytest.raises(ValidationError, match="name fields or ask questions"):
        ReviewInformationRequested.model_validate({**data, "fields": [], "questions": []})
    with pytest.raises(ValidationError, match="respond_by"):
        ReviewInformationRequested.model_validate({**data, "respond_by": data["requested_at"]})


@pytest.mark.parametrize("model", [OpenAward, AwardOpened])
def test_tranches_must_add_up_to_the_award_total(model: type[BaseModel]) -> None:
    message_type = "award.open" if model is OpenAward else "award.opened"
    data = example_payloads(message_type)[0].model_dump(mode="json")

    data["tranches"][0]["amount"]["amount"] = "100000.01"
    with pytest.raises(ValidationError, match="add up"):
        model.model_validate(data)

    data["tranches"][0]["amount"] = {"amount": "100000.00", "currency": "USD"}
    with pytest.raises(ValidationError, match="currency"):
        model.model_validate(data)

    data = example_payloads(message_type)[0].model_dump(mode="json")
    data["tranches"][0]["sequence"] = 2
    with pytest.raises(ValidationError, match="sequences"):
        model.model_validate(data)


def test_budget_exhausted_is_a_real_shortfall() -> None:
    data = example_payloads("budget.exhausted")[0].model_dump(mode="json")
    data["available"] = data["requested"]
    with pytest.raises(ValidationError, match="less than requested"):
        BudgetExhausted.model_validate(data)


def test_contracts_import_nothing_from_services_or_workflows() -> None:
    for path in CONTRACTS_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] not in {"services", "workflows"}, (path, module)
