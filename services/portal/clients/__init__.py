"""One client per service API. Each call carries the signed-in person's own token, so every
service applies its own rules (a firm sees its own applications, a reviewer only their tasks).

A refusal comes back as :class:`Problem`, the RFC 9457 body the service sent; pages show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class FieldProblem:
    """One field-level error of a 422 problem."""

    field: str
    message: str


@dataclass
class Problem(Exception):
    """A service refused a request: its status and problem body."""

    status: int
    title: str
    detail: str
    reason: str | None = None
    errors: list[FieldProblem] = field(default_factory=list)
    body: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"


class Unavailable(Exception):
    """A service did not answer (down, or too slow)."""


def problem_of(response: httpx.Response) -> Problem:
    """The problem a failed response carries, whatever its shape."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    errors = [
        FieldProblem(
            field=str(e.get("field") or e.get("pointer") or ""), message=str(e.get("message", ""))
        )
        for e in body.get("errors", [])
        if isinstance(e, dict)
    ]
    return Problem(
        status=response.status_code,
        title=str(body.get("title") or response.reason_phrase),
        detail=str(body.get("detail") or ""),
        reason=body.get("reason"),
        errors=errors,
        body=body,
    )


class ApiClient:
    """Calls one service's API with a bearer token."""

    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self._http = http
        self._headers = {"Authorization": f"Bearer {token}"}

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
        text: bool = False,
    ) -> Any:
        """The decoded JSON answer (the body as text with ``text``; None for 204);
        :class:`Problem` for 4xx/5xx answers."""
        try:
            response = await self._http.request(
                method,
                path,
                json=json,
                params=params,
                headers={**self._headers, **(headers or {})},
            )
        except httpx.TransportError as exc:
            raise Unavailable(str(exc)) from exc
        if response.status_code >= 400:
            raise problem_of(response)
        if text:
            return response.text
        if response.status_code == 204 or not response.content:
            return None
        return response.json()
