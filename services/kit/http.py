"""The HTTP layer every service uses: callers, roles, problems, idempotency keys, body limits.

A service's routes take their plumbing from here and nowhere else:

- :data:`Caller` is the verified principal (a 401 problem otherwise); :func:`require_role`
  answers 403 to a principal whose role may not do something;
- :func:`problem_responses` declares error responses in OpenAPI, and :func:`success_headers`
  the headers a success sends (``Location``, ``Idempotent-Replayed``);
- :func:`idempotency_key` is the ``Idempotency-Key`` header parameter, with its rules;
- :class:`RequestGate` (installed by :meth:`services.kit.runtime.Service.create_app`) refuses
  a request without a valid token (401) and a body over the service's limit (413) before the
  body is read, let alone parsed;
- :func:`install_openapi` completes the OpenAPI document: every error is the ``Problem``
  schema under ``application/problem+json``, and the statuses every route can return (401,
  413, 422 (also for an unparseable body), 500) are declared where they apply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import Depends, FastAPI, Header, Request
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.kit.auth import Principal, TokenService, bearer_token, require_role
from services.kit.errors import IncentivesError, Reason
from services.kit.problems import (
    PROBLEM_JSON,
    FieldError,
    Problem,
    problem_response,
    problem_type,
)

#: Paths served to anyone: health, metrics, the API documents and their viewers.
PUBLIC_PATHS: Final = (
    "/health",
    "/metrics",
    "/asyncapi",
    "/asyncapi.json",
    "/openapi.json",
    "/docs",
    "/redoc",
)

#: The request header that makes a change safe to retry.
IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
#: The response header marking a replay of an idempotent request.
REPLAYED_HEADER: Final = "Idempotent-Replayed"
#: Printable ASCII without spaces: what an ``Idempotency-Key`` may contain.
IDEMPOTENCY_KEY_PATTERN: Final = r"^[\x21-\x7e]+$"

#: Where the gate leaves the verified principal for :func:`caller` (``request.state``).
_PRINCIPAL_STATE: Final = "principal"

# --- callers and roles ---------------------------------------------------------------------------


def bearer_scheme(description: str) -> HTTPBearer:
    """The bearer scheme as OpenAPI documents it (verification is :func:`caller`'s)."""
    return HTTPBearer(
        auto_error=False, bearerFormat="JWT", scheme_name="bearer", description=description
    )


async def caller(request: Request) -> Principal:
    """FastAPI dependency: the verified caller, or a 401 problem.

    The gate has already verified the token of every protected path; this reads its result.
    Run on the event loop: a sync dependency would go to FastAPI's thread pool.
    """
    principal: Principal | None = getattr(request.state, _PRINCIPAL_STATE, None)
    if principal is not None:
        return principal
    tokens: TokenService | None = getattr(request.app.state, "token_service", None)
    if tokens is None:  # a wiring mistake, not the client's fault
        raise RuntimeError("no TokenService installed; build the app with Service.create_app")
    return tokens.verify(bearer_token(request))


#: The verified caller of a route.
Caller = Annotated[Principal, Depends(caller)]

__all__ = [
    "IDEMPOTENCY_KEY_HEADER",
    "REPLAYED_HEADER",
    "Caller",
    "RequestGate",
    "bearer_scheme",
    "caller",
    "idempotency_key",
    "install_openapi",
    "location",
    "problem_responses",
    "require_role",
    "success_headers",
]


# --- the Idempotency-Key header ------------------------------------------------------------------


def idempotency_key(description: str, *, optional: bool = False) -> Any:
    """The ``Idempotency-Key`` header parameter: 8 to 200 printable ASCII characters."""
    return Header(
        alias=IDEMPOTENCY_KEY_HEADER,
        description=("Optional. " if optional else "") + description,
        examples=["5b0f6a4e-2c1d-4c8e-9e7a-1f2d3c4b5a69"],
        min_length=8,
        max_length=200,
        pattern=IDEMPOTENCY_KEY_PATTERN,
    )


#: What a path segment may carry unencoded besides letters, digits and ``-._~`` (RFC 3986 pchar).
_SEGMENT_SAFE: Final = "!$&'()*+,;=:@"


def location(base: str, *ids: str) -> str:
    """A ``Location`` value: ``base`` then each id as one percent-encoded path segment.

    Encoded, an id can neither break the header (non-Latin-1 or control characters) nor
    point at another resource (a ``/``).
    """
    return base.rstrip("/") + "".join("/" + quote(i, safe=_SEGMENT_SAFE) for i in ids)


# --- OpenAPI declarations ------------------------------------------------------------------------

_PROBLEM_SCHEMA: Final = {"$ref": "#/components/schemas/Problem"}

#: What each error status means, unless a route says better.
PROBLEM_DESCRIPTIONS: Final[dict[int, str]] = {
    401: "Missing or invalid credentials",
    403: "Role not allowed",
    404: "Not found",
    409: "Conflict with current state",
    413: "Request body larger than the limit",
    422: (
        "Validation failed: `errors` lists each field (a body that is not UTF-8 JSON has one "
        "entry, `pointer` `#`, type `json_invalid`)"
    ),
    500: "Unexpected error; it has been logged",
    502: "A dependency failed the request for an unexpected reason",
    503: "A dependency is unavailable; retry (see `Retry-After`)",
}

_HEADERS: Final[dict[str, dict[str, Any]]] = {
    "WWW-Authenticate": {
        "description": "The authentication scheme: `Bearer`.",
        "schema": {"type": "string", "examples": ["Bearer"]},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "string", "examples": ["1"]},
    },
    "Location": {
        "description": "The URL of the created resource.",
        "schema": {"type": "string", "examples": ["/v1/applications/app_3f2a9c0d41e84b6f"]},
    },
    REPLAYED_HEADER: {
        "description": (
            "`true` when this is the stored answer to an earlier request with the same "
            "`Idempotency-Key`; absent otherwise."
        ),
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Allow": {
        "description": "The methods the path accepts.",
        "schema": {"type": "string", "examples": ["GET, POST"]},
    },
}
_PROBLEM_HEADERS: Final = {401: ("WWW-Authenticate",), 503: ("Retry-After",)}


def _problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description or PROBLEM_DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
        "content": {PROBLEM_JSON: {"schema": dict(_PROBLEM_SCHEMA)}},
    }
    headers = {name: _HEADERS[name] for name in _PROBLEM_HEADERS.get(status, ())}
    if headers:
        response["headers"] = headers
    return response


def problem_responses(
    *statuses: int, descriptions: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for a route's error statuses, as problem documents.

    401, 413, 422 and 500 need not be listed: :func:`install_openapi` adds them wherever
    they apply.
    """
    described = descriptions or {}
    return {status: _problem_response(status, described.get(status)) for status in statuses}


def success_headers(
    status: int, *, location: bool = False, replayed: bool = False
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entry declaring the headers a success response sends."""
    names = [n for n, on in (("Location", location), (REPLAYED_HEADER, replayed)) if on]
    return {status: {"headers": {name: _HEADERS[name] for name in names}}}


def install_openapi(app: FastAPI) -> None:
    """Complete ``app``'s OpenAPI document with the kit's error responses (see the module)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            complete_openapi(generate())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """Add the problem schemas and every generic error status to ``document`` (in place)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (Problem, FieldError):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            _complete_operation(path, operation)
    return document


def _complete_operation(path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    wanted = [500]
    if operation.get("security") or not _is_public(path):
        wanted.append(401)
    if operation.get("requestBody"):
        wanted += [413, 422]
    if operation.get("parameters"):
        wanted.append(422)
    for status in wanted:
        responses.setdefault(str(status), _problem_response(status))
    for code, response in responses.items():
        content = response.get("content") or {}
        if code[0] in "45" and _is_problem(content):
            response["content"] = {PROBLEM_JSON: {"schema": dict(_PROBLEM_SCHEMA)}}
            for name in _PROBLEM_HEADERS.get(int(code), ()):
                response.setdefault("headers", {}).setdefault(name, _HEADERS[name])


def _is_problem(content: Mapping[str, Any]) -> bool:
    """Whether a response's content is a problem (FastAPI puts ``model=Problem`` under JSON)."""
    if PROBLEM_JSON in content:
        return True
    schema = content.get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


def _is_public(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PUBLIC_PATHS)


# --- the gate: credentials and body size, before the body --------------------------------------


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` when a streamed body passes the limit (a 413 problem)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class RequestGate:
    """ASGI middleware: 401 without a valid token, 413 over ``max_body_bytes``, before the body.

    For every path but :data:`PUBLIC_PATHS`, the bearer token is verified from the headers
    before the app runs; a missing or invalid one is answered at once and the body is never
    received. A declared ``Content-Length`` over the limit is refused the same way; a chunked
    body is counted as it arrives and refused as soon as it passes the limit. The verified
    principal is left in ``request.state`` for :func:`caller`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tokens: TokenService,
        max_body_bytes: int,
        public: Callable[[str], bool] = _is_public,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.max_body_bytes = max_body_bytes
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)  # headers only: the body is not touched
        if not self.public(scope.get("path", "")):
            try:
                principal = self.tokens.verify(bearer_token(request))
            except IncentivesError as exc:
                await _refuse(scope, receive, send, exc.status, exc.title, exc.reason, exc.detail)
                return
            scope.setdefault("state", {})[_PRINCIPAL_STATE] = principal
        declared = _content_length(request.headers)
        if declared is not None and declared > self.max_body_bytes:
            await _refuse(
                scope,
                receive,
                send,
                413,
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE.phrase,
                None,
                f"request body larger than {self.max_body_bytes} bytes",
            )
            return
        if declared is not None:
            # The server stops at the declared length: nothing is left to count.
            await self.app(scope, receive, send)
            return
        received = 0
        limit = self.max_body_bytes

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises an HTTPException from its body parsing, so the app's
                    # problem handler answers it as it answers the declared case.
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counting_receive, send)


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    title: str,
    reason: Reason | None,
    detail: str | None,
) -> None:
    response = problem_response(
        status,
        title,
        type_=problem_type(reason) if reason else "about:blank",
        detail=detail,
        instance=scope.get("path"),
        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None,
    )
    await response(scope, receive, send)


def _content_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
