"""RFC 9457 problem responses, including field-level validation detail."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI, Header, Query
from pydantic import BaseModel, ConfigDict, Field

from services.kit.errors import BusinessRefusal, DependencyUnavailable, NotFound
from services.kit.problems import PROBLEM_JSON, install_problem_handlers


class Grant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Decimal = Field(ge=0)
    purpose: str = Field(max_length=10)


class Draft(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    grant: Grant


@pytest.fixture
def app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/drafts")
    def create(draft: Draft, limit: int = Query(default=1, ge=1)) -> dict[str, str]:
        return {"title": draft.title}

    @app.get("/needs-header")
    def needs_header(idempotency_key: str = Header(min_length=8)) -> dict[str, str]:
        return {"key": idempotency_key}

    @app.get("/missing")
    def missing() -> None:
        raise NotFound("application app_1 not found")

    @app.get("/refused")
    def refused() -> None:
        raise BusinessRefusal("stage is closed", extensions={"stage": "finance"})

    @app.get("/unavailable")
    def unavailable() -> None:
        raise DependencyUnavailable("database down")

    @app.get("/bug")
    def bug() -> None:
        raise RuntimeError("internal detail that must not leak")

    return app


async def call(app: FastAPI, method: str, path: str, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path, **kwargs)  # type: ignore[arg-type]


async def test_validation_errors_have_field_level_pointers(app: FastAPI) -> None:
    body = {"title": "x", "grant": {"amount": "-5", "purpose": "p" * 20}, "extra": 1}
    response = await call(app, "POST", "/drafts?limit=0", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["type"] == "urn:incentives:problem:validation_failed"
    assert problem["title"] == "Validation failed"
    assert problem["instance"] == "/drafts"
    by_field = {error["field"]: error for error in problem["errors"]}
    assert by_field["grant.amount"]["pointer"] == "#/grant/amount"
    assert by_field["grant.purpose"]["pointer"] == "#/grant/purpose"
    assert by_field["extra"]["type"] == "extra_forbidden"
    assert by_field["limit"]["parameter"] == "limit"
    assert all(error["message"] for error in problem["errors"])


async def test_header_validation_names_the_header(app: FastAPI) -> None:
    response = await call(app, "GET", "/needs-header", headers={"idempotency-key": "short"})
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["header"] == "idempotency-key"


async def test_malformed_json_is_a_problem_not_a_500(app: FastAPI) -> None:
    response = await call(
        app, "POST", "/drafts", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("/missing", 404, "not_found"),
        ("/refused", 409, "business_refusal"),
        ("/unavailable", 503, "dependency_unavailable"),
    ],
)
async def test_kit_errors_map_to_problem_types(
    app: FastAPI, path: str, status: int, reason: str
) -> None:
    response = await call(app, "GET", path)
    assert response.status_code == status
    problem = response.json()
    assert problem["type"] == f"urn:incentives:problem:{reason}"
    assert problem["status"] == status
    assert problem["detail"]


async def test_extensions_are_rendered(app: FastAPI) -> None:
    assert (await call(app, "GET", "/refused")).json()["stage"] == "finance"


async def test_unknown_route_is_a_problem(app: FastAPI) -> None:
    response = await call(app, "GET", "/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_unexpected_errors_do_not_leak_details(app: FastAPI) -> None:
    response = await call(app, "GET", "/bug")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "internal detail" not in response.text
