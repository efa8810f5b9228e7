"""Every service's OpenAPI document passes an outside validator and tells the whole truth.

``openapi-spec-validator`` checks each document against the OpenAPI specification; the checks
below hold what the validator cannot know: errors are problem documents under
``application/problem+json``, and the headers the services send are declared.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from services.kit.problems import PROBLEM_JSON

#: Every composition root, by its module, with its settings class's module.
SERVICES = {
    "applications": ("services.applications.main", "services.applications.settings"),
    "eligibility": ("services.eligibility.main", "services.eligibility.settings"),
    "zones": ("services.zones.main", "services.zones.settings"),
    "disbursement": ("services.disbursement.main", "services.disbursement.settings"),
    "review": ("services.review.main", "services.review.settings"),
    "audit": ("services.audit.main", "services.audit.settings"),
    "worker": ("workflows.worker", "workflows.settings"),
}


def document(name: str, var_dir: Path) -> dict[str, Any]:
    main, settings = SERVICES[name]
    settings_cls = importlib.import_module(settings).Settings
    app = importlib.import_module(main).create_app(settings_cls(var_dir=var_dir))
    spec: dict[str, Any] = app.openapi()
    return spec


@pytest.fixture(scope="module", params=sorted(SERVICES))
def spec(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return document(request.param, Path(tmp_path_factory.mktemp(request.param)))


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    ]


def test_the_document_is_valid_openapi(spec: dict[str, Any]) -> None:
    validate(spec)


def test_errors_are_problems_under_problem_json(spec: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert {"Problem", "FieldError"} <= set(spec["components"]["schemas"])
    for path, method, operation in operations(spec):
        for status, response in operation["responses"].items():
            if status[0] not in "45" or (path == "/health" and status == "503"):
                continue  # /health answers its report, degraded or not
            assert response["content"] == {
                PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
            }, (path, method, status)


def test_every_status_a_route_can_send_is_documented(spec: dict[str, Any]) -> None:
    for path, method, operation in operations(spec):
        statuses = set(operation["responses"])
        where = (path, method)
        assert "500" in statuses, where
        if operation.get("security"):
            assert "401" in statuses, where
            assert "WWW-Authenticate" in operation["responses"]["401"]["headers"], where
        if "requestBody" in operation:
            assert {"413", "422"} <= statuses, where
        if operation.get("parameters"):
            assert "422" in statuses, where
        if "503" in statuses and path != "/health":
            assert "Retry-After" in operation["responses"]["503"]["headers"], where


def test_sent_headers_are_declared(spec: dict[str, Any]) -> None:
    for path, method, operation in operations(spec):
        responses = operation["responses"]
        if "201" in responses:
            assert "Location" in responses["201"].get("headers", {}), (path, method)
        keyed = any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))
        if keyed and path.startswith("/v1/applications"):
            (success,) = (code for code in responses if code.startswith("2"))
            assert "Idempotent-Replayed" in responses[success]["headers"], (path, method)
