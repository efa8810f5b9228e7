"""The OpenAPI document is enough to build a complete, valid application; drafts keep the limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.v1.applications import ApplicationContent
from services.applications.domain import check_submission
from services.applications.main import create_app
from services.applications.schemas import ApplicationContentDraft
from services.applications.settings import Settings

PREFIX = "/v1/applications"


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The service's OpenAPI document (building the app opens no connection)."""
    var = Path(tmp_path_factory.mktemp("openapi"))
    app = create_app(Settings(var_dir=var, kafka_bootstrap="127.0.0.1:1"))
    document: dict[str, Any] = app.openapi()
    return document


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref.rsplit("/", 1)[-1]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _reachable(openapi: dict[str, Any]) -> set[str]:
    schemas = openapi["components"]["schemas"]
    todo = [
        name
        for path, operations in openapi["paths"].items()
        if path.startswith(PREFIX)
        for name in _refs(operations)
    ]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_refs(schemas[name]))
    return seen


#: The kit's RFC 9457 problem models: shared by every service, documented by the kit.
KIT_SCHEMAS = {"Problem", "FieldError"}


def _documented(schema: dict[str, Any], schemas: dict[str, Any]) -> bool:
    """A property documents itself, or refers to a model that does (pydantic leaves the
    model's description and examples on the model rather than repeating them on the $ref)."""
    described = bool(schema.get("description"))
    exemplified = bool(schema.get("examples"))
    for name in _refs(schema):
        described = described or bool(schemas[name].get("description"))
        exemplified = exemplified or bool(schemas[name].get("examples"))
    return described and exemplified


def test_every_field_of_the_api_has_a_description_and_examples(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    reachable = _reachable(openapi) - KIT_SCHEMAS
    assert {"ApplicationContent", "ApplicationContentDraft", "ApplicationView", "Firm"} <= reachable
    assert "HTTPValidationError" not in reachable  # every 422 is documented as a problem
    undocumented = [
        f"{name}.{field}"
        for name in sorted(reachable)
        for field, schema in schemas[name].get("properties", {}).items()
        if not _documented(schema, schemas)
    ]
    assert undocumented == []
    models = [name for name in reachable if schemas[name].get("type") == "object"]
    assert [name for name in models if not schemas[name].get("description")] == []


def test_every_parameter_is_documented(openapi: dict[str, Any]) -> None:
    for path, operations in openapi["paths"].items():
        if not path.startswith(PREFIX):
            continue
        for method, operation in operations.items():
            assert operation.get("description"), f"{method} {path}"
            for parameter in operation.get("parameters", []):
                where = f"{method} {path} {parameter['name']}"
                assert parameter.get("description"), where
                assert parameter["schema"].get("examples") or parameter.get("examples"), where


def test_the_documented_example_is_a_complete_valid_application(openapi: dict[str, Any]) -> None:
    operation = openapi["paths"][f"{PREFIX}/submissions"]["post"]
    body = operation["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/ApplicationContent"}
    example = body["examples"]["complete"]["value"]
    ApplicationContent.model_validate(example)
    check_submission(example)  # at least one incentive, no impossible ownership
    assert operation["security"] == [{"bearer": []}]
    assert {p["name"] for p in operation["parameters"]} == {"Idempotency-Key"}


def test_bearer_authentication_is_documented(openapi: dict[str, Any]) -> None:
    scheme = openapi["components"]["securitySchemes"]["bearer"]
    assert scheme["scheme"] == "bearer"
    assert scheme["bearerFormat"] == "JWT"


def test_problem_responses_are_documented(openapi: dict[str, Any]) -> None:
    submit = openapi["paths"][f"{PREFIX}/{{application_id}}/submit"]["post"]["responses"]
    assert {"200", "401", "403", "404", "409", "413", "422"} <= set(submit)


def test_drafts_are_partial_at_any_depth_but_keep_every_limit() -> None:
    draft = ApplicationContentDraft.model_validate(
        {"firm": {"legal_name": "Acme"}, "commitments": {"training": {"engineers_per_year": 3}}}
    )
    assert draft.model_dump(mode="json", exclude_none=True) == {
        "firm": {"legal_name": "Acme"},
        "commitments": {"training": {"engineers_per_year": 3}},
    }
    with pytest.raises(ValidationError) as caught:
        ApplicationContentDraft.model_validate(
            {
                "firm": {"legal_name": "x" * 201, "foreign_ownership_pct": "100.5"},
                "proposal": {"investment_commitment": {"amount": "-1", "currency": "EUR"}},
                "incentives": {"grant": {"amount": {"amount": "1"}}},
                "surprise": True,
            }
        )
    kinds = {(".".join(map(str, e["loc"])), e["type"]) for e in caught.value.errors()}
    assert kinds == {
        ("firm.legal_name", "string_too_long"),
        ("firm.foreign_ownership_pct", "less_than_equal"),
        ("proposal.investment_commitment.amount", "greater_than"),
        ("incentives.grant.amount.currency", "missing"),  # money stays whole
        ("surprise", "extra_forbidden"),
    }
