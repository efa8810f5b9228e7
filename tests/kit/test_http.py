"""The kit's HTTP layer on a real service app: the gate, problems for bad bodies, 405s, 401s.

The desk's app is called in process, without its lifespan: everything here is refused before
a route could reach the database or Temporal.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from starlette.types import Message

from services.kit.auth import ALGORITHM, AUDIENCE, ISSUER
from services.kit.problems import PROBLEM_JSON
from services.kit.settings import DEV_JWT_SECRET
from services.review.main import create_app
from services.review.settings import Settings
from tests.review.helpers import ADMIN, NOVAK, reviewer

LIMIT = 64 * 1024
CHUNK = 64 * 1024
#: What an attacker offers: 100 MB, streamed.
OFFERED = 100 * 1024 * 1024


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    settings = Settings(var_dir=Path(tmp_path_factory.mktemp("gate")), max_request_bytes=LIMIT)
    return create_app(settings)


class Upload:
    """An ASGI ``receive`` offering a large body in chunks, counting what the app took."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.taken = 0

    async def __call__(self) -> Message:
        size = min(CHUNK, self.total - self.taken)
        self.taken += size
        return {"type": "http.request", "body": b"x" * size, "more_body": self.taken < self.total}


async def post(
    app: FastAPI, path: str, headers: dict[str, str], upload: Upload
) -> tuple[int, dict[str, str], Any]:
    """POST ``upload`` to ``path`` straight through ASGI; the status, headers and JSON body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, upload, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], response_headers, json.loads(body) if body else None


DECISION = "/v1/tasks/task_abc/decision"
JSON = {"content-type": "application/json", "idempotency-key": "k" * 20}


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_anonymous_large_decision_is_refused_without_reading_its_body(
    app: FastAPI, declared: bool
) -> None:
    upload = Upload(OFFERED)
    headers = {**JSON, **({"content-length": str(OFFERED)} if declared else {})}
    status, response_headers, problem = await post(app, DECISION, headers, upload)
    assert status == 401
    assert response_headers["content-type"] == PROBLEM_JSON
    assert response_headers["www-authenticate"] == "Bearer"
    assert problem["type"] == "urn:incentives:problem:unauthorized"
    assert upload.taken == 0


async def test_a_declared_body_over_the_limit_is_refused_without_reading_it(app: FastAPI) -> None:
    upload = Upload(OFFERED)
    headers = {**JSON, **reviewer(NOVAK), "content-length": str(OFFERED)}
    status, response_headers, problem = await post(app, DECISION, headers, upload)
    assert status == 413
    assert response_headers["content-type"] == PROBLEM_JSON
    assert problem["status"] == 413
    assert upload.taken == 0


async def test_a_streamed_body_is_cut_off_at_the_limit(app: FastAPI) -> None:
    upload = Upload(OFFERED)
    status, response_headers, problem = await post(
        app, DECISION, {**JSON, **reviewer(NOVAK)}, upload
    )
    assert status == 413
    assert response_headers["content-type"] == PROBLEM_JSON
    assert str(LIMIT) in problem["detail"]
    assert upload.taken <= LIMIT + CHUNK


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.mark.parametrize(
    ("path", "method", "allowed"),
    [
        ("/v1/registry/reviewers", "PATCH", {"GET", "POST"}),
        ("/v1/registry/reviewers/rev.novak@gaip.example", "POST", {"GET", "PUT", "DELETE"}),
        ("/v1/tasks/task_abc/decision", "GET", {"POST"}),
    ],
)
async def test_405_names_every_method_of_the_path(
    client: httpx.AsyncClient, path: str, method: str, allowed: set[str]
) -> None:
    response = await client.request(method, path, headers=ADMIN)
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM_JSON
    assert set(response.headers["allow"].split(", ")) == allowed


@pytest.mark.parametrize(
    "body",
    [b'{"reviewer_id": ', b"\xff\xfe\x00not utf-8", b"[1, 2", b"\x80"],
    ids=["truncated", "utf-16-ish", "unclosed", "lone-continuation-byte"],
)
async def test_an_unparseable_body_is_a_documented_problem_without_a_byte_offset(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.post(
        "/v1/registry/reviewers",
        content=body,
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["type"] == "urn:incentives:problem:validation_failed"
    (error,) = problem["errors"]
    assert error["pointer"] == "#"
    assert error["type"] == "json_invalid"
    assert error["message"]


@pytest.mark.parametrize(
    "claims",
    [
        {"role": "wizard"},
        {"role": "firm"},
        {"role": "reviewer", "firm_id": "ACME"},
        {"role": "reviewer", "sub": ""},
    ],
    ids=["unknown-role", "firm-without-firm-id", "staff-with-firm-id", "empty-sub"],
)
async def test_401_details_do_not_expose_validation_internals(
    client: httpx.AsyncClient, claims: dict[str, Any]
) -> None:
    now = int(time.time())
    token = jwt.encode(
        {
            "sub": "someone@example.org",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 600,
            **claims,
        },
        DEV_JWT_SECRET,
        algorithm=ALGORITHM,
    )
    response = await client.get("/v1/inbox", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    detail = response.json()["detail"]
    for internal in ("pydantic", "input_value", "input_type", "validation error for", "[type="):
        assert internal not in detail
    assert detail.startswith("invalid token claims")


async def test_public_paths_need_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/asyncapi.json")).status_code == 200


@pytest.mark.parametrize(
    ("body", "pointers"),
    [
        ({"reviewer_id": "rev.x", "name": "Dr.\u0000X", "roles": ["technical"]}, ["#/name"]),
        (
            {"reviewer_id": "rev.x", "name": "X", "roles": ["technical"], "affiliations": ["\0"]},
            ["#/affiliations/0"],
        ),
        ({"reviewer_id": "rev.x", "name": "X", "roles": ["technical"], "a/\0": 1}, ["#/a~1\0"]),
    ],
    ids=["value", "list-item", "member-name"],
)
async def test_a_nul_character_in_a_body_is_a_422_on_the_member(
    client: httpx.AsyncClient, body: dict[str, Any], pointers: list[str]
) -> None:
    response = await client.post("/v1/registry/reviewers", json=body, headers=ADMIN)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    errors = response.json()["errors"]
    assert [e["pointer"] for e in errors] == pointers
    assert {e["type"] for e in errors} == {"nul_character"}


async def test_an_escaped_backslash_before_u0000_is_no_nul(client: httpx.AsyncClient) -> None:
    body = b'{"reviewer_id": "a/b", "name": "C:\\\\u0000", "roles": ["technical"]}'
    response = await client.post(
        "/v1/registry/reviewers",
        content=body,
        headers={**ADMIN, "content-type": "application/json"},
    )
    # Refused for the id only: the name is the six characters `C:\u0000`, no NUL in it.
    assert response.status_code == 422
    assert [e["pointer"] for e in response.json()["errors"]] == ["#/reviewer_id"]


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/v1/registry/reviewers/rev%00novak", "reviewer_id"),
        ("/v1/tasks/task%00x", "task_id"),
        ("/v1/inbox?reviewer_id=rev%00novak", "reviewer_id"),
    ],
)
async def test_a_nul_character_in_a_parameter_is_a_422_naming_it(
    client: httpx.AsyncClient, path: str, parameter: str
) -> None:
    response = await client.get(path, headers=ADMIN)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    (error,) = response.json()["errors"]
    assert (error["parameter"], error["type"]) == (parameter, "nul_character")


async def test_an_undeclared_query_parameter_is_ignored_as_before(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/registry/reviewers?whatever=%00", headers=ADMIN)
    assert response.status_code != 422


async def test_a_nul_character_without_a_token_is_still_a_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/tasks/task%00x")
    assert response.status_code == 401
