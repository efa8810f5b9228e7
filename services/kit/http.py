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
- :class:`NulGate` (installed with it) refuses a request whose path parameters, query or JSON
  body carry the NUL character (U+0000), with a 422 naming each field: no text the program
  keeps can contain it, and PostgreSQL's text types cannot store it;
- :func:`install_openapi` completes the OpenAPI document: every error is the ``Problem``
  schema under ``application/problem+json``, and the statuses every route can return (401,
  413, 422 (also for an unparseable body), 500; 503 on a protected route, whose token check
  may need the OpenID provider's keys) are declared where they apply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from http import HTTPStatus
from typing import Annotated, Any, Final
from urllib.parse import parse_qsl, quote

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
    return await tokens.averify(bearer_token(request))


#: The verified caller of a route.
Caller = Annotated[Principal, Depends(caller)]

__all__ = [
    "IDEMPOTENCY_KEY_HEADER",
    "REPLAYED_HEADER",
    "Caller",
    "NulGate",
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


def install_openapi(app: FastAPI, *, authenticated: bool = True) -> None:
    """Complete ``app``'s OpenAPI document with the kit's error responses (see the module).

    ``authenticated=False`` is for an app that takes no tokens (the simulated rail): no 401.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            complete_openapi(generate(), authenticated=authenticated)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete_openapi(document: dict[str, Any], *, authenticated: bool = True) -> dict[str, Any]:
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
            _complete_operation(path, operation, authenticated=authenticated)
    return document


def _complete_operation(path: str, operation: dict[str, Any], *, authenticated: bool) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    wanted = [500]
    if operation.get("security") or (authenticated and not is_public_path(path)):
        # 503: the OpenID provider's keys could not be fetched to check the token.
        wanted += [401, 503]
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


def is_public_path(path: str) -> bool:
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
        public: Callable[[str], bool] = is_public_path,
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
                principal = await self.tokens.averify(bearer_token(request))
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
        headers=_REFUSAL_HEADERS.get(status),
    )
    await response(scope, receive, send)


#: The headers the gate's refusals carry, as their OpenAPI entries declare.
_REFUSAL_HEADERS: Final[dict[int, dict[str, str]]] = {
    401: {"WWW-Authenticate": "Bearer"},
    503: {"Retry-After": "1"},
}


def _content_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


# --- the NUL character: refused wherever a request can carry text ---------------------------------

#: The error type of a field that carries U+0000.
NUL_ERROR_TYPE: Final = "nul_character"
_NUL_MESSAGE: Final = "must not contain the NUL character (U+0000)"
#: How U+0000 appears in JSON text (a raw NUL byte is not JSON at all).
_JSON_NUL: Final = b"\\u0000"
#: Media types whose body :class:`NulGate` reads: JSON and its ``+json`` relatives.
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _nul_pointers(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every string (member name or value) in ``value`` that carries U+0000."""
    if isinstance(value, str):
        if "\x00" in value:
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                yield (*path, key)
            yield from _nul_pointers(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_pointers(item, (*path, str(index)))


def _body_error(path: tuple[str, ...]) -> dict[str, str]:
    escaped = [p.replace("~", "~0").replace("/", "~1") for p in path]
    return {
        "pointer": "#/" + "/".join(escaped) if escaped else "#",
        "field": ".".join(path) or "body",
        "message": _NUL_MESSAGE,
        "type": NUL_ERROR_TYPE,
    }


def _parameter_error(name: str) -> dict[str, str]:
    return {"parameter": name, "field": name, "message": _NUL_MESSAGE, "type": NUL_ERROR_TYPE}


_TEMPLATE_PARAMETER: Final = re.compile(r"\{([^}/]+)\}")


def _operation(scope: Scope) -> tuple[dict[str, str], set[str]] | None:
    """The path parameters and declared query names of the operation ``scope`` asks for.

    Read from the app's own OpenAPI document (the routes' public description), so only the
    parameters a route declares count; ``None`` when no documented operation matches (the app
    answers 404 or 405 itself).
    """
    app = scope.get("app")
    document = app.openapi() if isinstance(app, FastAPI) else {}
    method = str(scope.get("method", "")).lower()
    path = scope.get("path", "")
    for template, item in document.get("paths", {}).items():
        operation = item.get(method)
        if operation is None:
            continue
        names = _TEMPLATE_PARAMETER.findall(template)
        literal = _TEMPLATE_PARAMETER.split(template)[::2]
        pattern = "([^/]+)".join(re.escape(part) for part in literal)
        match = re.fullmatch(pattern, path)
        if match is None:
            continue
        query = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
        return dict(zip(names, match.groups(), strict=True)), query
    return None


class NulGate:
    """ASGI middleware: 422 for U+0000 in a path parameter, the query or a JSON body.

    No name, id or text of the program can contain the NUL character, SQLite and PostgreSQL
    disagree about storing it (PostgreSQL's text types refuse it), and in an id it would reach
    logs and headers. It is refused at the door, with one error per field, before the app runs.
    A JSON body is read only when it spells ``\\u0000`` somewhere, and then parsed to find the
    members; a body that is not JSON goes on to the app, which answers its own 422.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        errors = self._parameter_errors(scope)
        request = Request(scope)
        if scope.get("method") in _BODY_METHODS and _is_json(
            request.headers.get("content-type", "")
        ):
            try:
                body, receive = await _buffered(receive)
            except BodyTooLarge as exc:  # counted by the RequestGate around this gate
                phrase = HTTPStatus.REQUEST_ENTITY_TOO_LARGE.phrase
                await _refuse(scope, receive, send, 413, phrase, None, str(exc.detail))
                return
            if _JSON_NUL in body:
                errors += self._body_errors(body)
        if errors:
            await _refuse_fields(scope, receive, send, errors)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _parameter_errors(scope: Scope) -> list[dict[str, str]]:
        query = scope.get("query_string", b"").decode("latin-1")
        if "\x00" not in scope.get("path", "") and "%00" not in query:
            return []  # the common case: nothing to look up
        operation = _operation(scope)
        if operation is None:  # the app answers 404 or 405
            return []
        path_params, declared = operation
        names = [name for name, value in path_params.items() if "\x00" in value]
        for name, value in parse_qsl(query, keep_blank_values=True, errors="replace"):
            if name in declared and "\x00" in value and name not in names:
                names.append(name)
        return [_parameter_error(name) for name in names]

    @staticmethod
    def _body_errors(body: bytes) -> list[dict[str, str]]:
        try:
            document = json.loads(body)
        except ValueError:  # not JSON: the app says so, field by field
            return []
        return [_body_error(path) for path in _nul_pointers(document)]


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body, and a ``receive`` that hands it to the app as one message."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"", receive
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


async def _refuse_fields(
    scope: Scope, receive: Receive, send: Send, errors: list[dict[str, str]]
) -> None:
    response = problem_response(
        422,
        "Validation failed",
        type_=problem_type(Reason.VALIDATION_FAILED),
        detail=f"{len(errors)} field(s) failed validation",
        instance=scope.get("path"),
        errors=errors,
    )
    await response(scope, receive, send)
