"""RFC 9457 problem details for every error a service returns over HTTP.

:func:`install_problem_handlers` makes a FastAPI app answer ``application/problem+json`` for:

- the kit's errors (:mod:`services.kit.errors`): status and ``type`` from the class;
- request validation errors: 422 with ``errors: [{pointer|parameter|header, field, message,
  type}]``, one entry per failed field (``pointer`` is a JSON Pointer into the body);
- a body that is not UTF-8 JSON: the same 422, with one entry pointing at the whole body
  (``#``, type ``json_invalid``), never at a byte offset;
- Starlette/FastAPI ``HTTPException`` (404 for unknown routes, 405 with an ``Allow`` header
  listing every method of the path, ...);
- anything else: 500 with a generic detail (the traceback goes to the log, not to the client).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from services.kit.errors import IncentivesError, Reason
from services.kit.logging import get_logger

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:incentives:problem:"

_HTTP_REASONS: dict[int, Reason] = {
    400: Reason.VALIDATION_FAILED,
    401: Reason.UNAUTHORIZED,
    403: Reason.FORBIDDEN,
    404: Reason.NOT_FOUND,
    409: Reason.CONFLICT,
    422: Reason.VALIDATION_FAILED,
}


def problem_type(reason: str) -> str:
    """The problem ``type`` URI for a reason code."""
    return f"{TYPE_PREFIX}{reason}"


class FieldError(BaseModel):
    """One failed field in a validation problem."""

    model_config = ConfigDict(extra="forbid")

    pointer: str | None = Field(
        default=None,
        description="JSON Pointer (RFC 6901) to the offending member of the request body.",
        examples=["#/grant/amount/amount"],
    )
    parameter: str | None = Field(
        default=None,
        description="Name of the offending query or path parameter.",
        examples=["limit"],
    )
    header: str | None = Field(
        default=None, description="Name of the offending header.", examples=["Idempotency-Key"]
    )
    field: str = Field(description="Dotted path of the field.", examples=["grant.amount.amount"])
    message: str = Field(
        description="What is wrong, for humans.", examples=["Input should be greater than 0"]
    )
    type: str = Field(description="Machine-readable error kind.", examples=["greater_than"])


class Problem(BaseModel):
    """An RFC 9457 problem details document."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(
        default="about:blank",
        description="URI identifying the problem type.",
        examples=["urn:incentives:problem:validation_failed"],
    )
    title: str = Field(description="Short summary of the problem type.", examples=["Not found"])
    status: int = Field(description="HTTP status code.", examples=[404])
    detail: str | None = Field(
        default=None,
        description="Explanation specific to this occurrence.",
        examples=["application app_01HZX3Q8W6 not found"],
    )
    instance: str | None = Field(
        default=None,
        description="URI reference of this occurrence (the request path).",
        examples=["/v1/applications/app_01HZX3Q8W6"],
    )
    errors: list[FieldError] | None = Field(
        default=None, description="Field-level details of a validation problem."
    )


def problem_response(
    status: int,
    title: str,
    *,
    type_: str = "about:blank",
    detail: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """A ``application/problem+json`` response."""
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    body.update({k: v for k, v in extensions.items() if v is not None})
    return JSONResponse(
        jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def field_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Convert FastAPI/pydantic error dicts into :class:`FieldError` dicts."""
    out: list[dict[str, str]] = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        where, path = (loc[0], loc[1:]) if loc else ("body", [])
        entry: dict[str, str] = {
            "field": ".".join(path) or where,
            "message": str(err.get("msg", "invalid")),
            "type": str(err.get("type", "value_error")),
        }
        if where == "body":
            # JSON Pointer escaping (RFC 6901): "~" -> "~0", "/" -> "~1".
            escaped = [p.replace("~", "~0").replace("/", "~1") for p in path]
            entry["pointer"] = "#/" + "/".join(escaped) if escaped else "#"
        elif where == "header":
            entry["header"] = path[0] if path else ""
        else:  # query, path, cookie
            entry["parameter"] = path[0] if path else where
        out.append(entry)
    return out


async def _kit_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IncentivesError)
    if exc.status >= 500:
        log.error("request failed", path=request.url.path, exc_info=exc)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if exc.status == 503:
        headers = {"Retry-After": "1"}
    return problem_response(
        exc.status,
        exc.title,
        type_=problem_type(exc.reason),
        detail=exc.detail,
        instance=request.url.path,
        headers=headers,
        **exc.extensions,
    )


#: FastAPI's detail for a body it could not decode (not UTF-8, for one).
_UNPARSEABLE = "There was an error parsing the body"


def _validation_problem(
    request: Request, detail: str, errors: list[dict[str, str]]
) -> JSONResponse:
    return problem_response(
        422,
        "Validation failed",
        type_=problem_type(Reason.VALIDATION_FAILED),
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )


def malformed_body(request: Request, message: str) -> JSONResponse:
    """The 422 problem for a body that is not UTF-8 JSON: it points at the whole body."""
    error = {"pointer": "#", "field": "body", "message": message, "type": "json_invalid"}
    return _validation_problem(request, f"the request body cannot be parsed: {message}", [error])


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    raw = exc.errors()
    undecodable = [err for err in raw if err.get("type") == "json_invalid"]
    if undecodable:
        # FastAPI reports the byte offset as the location; it is not a member of the body.
        err = undecodable[0]
        reason = (err.get("ctx") or {}).get("error", "invalid JSON")
        position = err.get("loc", ("body",))[-1]
        where = f" at byte {position}" if isinstance(position, int) else ""
        return malformed_body(request, f"not valid JSON: {reason}{where}")
    errors = field_errors(raw)
    return _validation_problem(request, f"{len(errors)} field(s) failed validation", errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _UNPARSEABLE:
        return malformed_body(request, "not valid UTF-8 JSON")
    reason = _HTTP_REASONS.get(exc.status_code)
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    return problem_response(
        exc.status_code,
        _title_for(exc.status_code),
        type_=problem_type(reason) if reason else "about:blank",
        detail=str(exc.detail) if exc.detail else None,
        instance=request.url.path,
        headers=headers or None,
    )


#: The methods an ``Allow`` header may name.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app accepts on the request's path.

    Starlette answers 405 from the first route whose path matches, so its ``Allow`` names that
    route's methods only, while FastAPI has one route per operation. Each method is asked of
    the app's routes as they match requests.
    """
    routes = request.app.router.routes
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in routes):
            allowed.append(method)
    return allowed


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", path=request.url.path, exc_info=exc)
    return problem_response(
        500,
        "Internal error",
        type_=problem_type(Reason.INTERNAL),
        detail="an unexpected error occurred; it has been logged",
        instance=request.url.path,
    )


def _title_for(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def install_problem_handlers(app: FastAPI) -> None:
    """Make ``app`` answer every error as RFC 9457 problem details."""
    app.add_exception_handler(IncentivesError, _kit_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
