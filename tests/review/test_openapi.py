"""The desk's OpenAPI document is enough to use it: every field, parameter and route explained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from services.review.main import create_app
from services.review.settings import Settings

#: Schemas the kit and FastAPI contribute; the desk's own are checked here.
NOT_OURS = {"CheckResult", "Health", "Problem", "FieldError", "HTTPValidationError"}

DESK_PATHS = {
    "/v1/inbox": {"get"},
    "/v1/tasks/{task_id}": {"get"},
    "/v1/tasks/{task_id}/decision": {"post"},
    "/v1/supervisor/escalations": {"get"},
    "/v1/registry/reviewers": {"get", "post"},
    "/v1/registry/reviewers/{reviewer_id}": {"get", "put", "delete"},
    "/v1/registry/reviewers/{reviewer_id}/history": {"get"},
    "/internal/v1/candidates": {"get"},
}


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    app: FastAPI = create_app(Settings(var_dir=Path(tmp_path_factory.mktemp("openapi"))))
    return app.openapi()


def test_every_route_is_there_with_a_summary_and_a_description(spec: dict[str, Any]) -> None:
    for path, methods in DESK_PATHS.items():
        assert set(spec["paths"][path]) == methods, path
        for method in methods:
            operation = spec["paths"][path][method]
            assert operation["summary"], (path, method)
            assert operation["description"], (path, method)
            assert operation["security"] == [{"bearer": []}], (path, method)
            assert "401" in operation["responses"], (path, method)
            assert "403" in operation["responses"], (path, method)


def test_every_field_of_our_schemas_has_a_description_and_examples(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    missing = [
        f"{name}.{field}: {key}"
        for name, schema in schemas.items()
        if name not in NOT_OURS
        for field, prop in schema.get("properties", {}).items()
        for key in ("description", "examples")
        if key not in prop
    ]
    assert missing == []


def test_every_parameter_has_a_description_and_examples(spec: dict[str, Any]) -> None:
    for path in DESK_PATHS:
        for method, operation in spec["paths"][path].items():
            for parameter in operation.get("parameters", []):
                where = (path, method, parameter["name"])
                assert parameter.get("description"), where
                assert parameter["schema"].get("examples"), where


def test_errors_are_documented_as_problems_not_fastapis_default(spec: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    decision = spec["paths"]["/v1/tasks/{task_id}/decision"]["post"]
    assert {"401", "403", "404", "409", "422", "502", "503"} <= set(decision["responses"])
    assert set(decision["requestBody"]["content"]["application/json"]["examples"]) == {
        "approve",
        "reject",
        "request_information",
    }
    assert "application/problem+json" in decision["responses"]["409"]["content"]
