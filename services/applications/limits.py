"""A cap on request body size, enforced before anything parses the body."""

from __future__ import annotations

from http import HTTPStatus

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.kit.problems import problem_response


class _BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with a 413 problem, before anything parses them.

    A declared ``Content-Length`` over the limit is refused without reading the body; a chunked
    body is counted as it arrives and refused as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None:
            if declared > self.max_bytes:
                response = problem_response(
                    413,
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE.phrase,  # as the kit titles the other 413
                    detail=f"request body larger than {self.max_bytes} bytes",
                    instance=scope.get("path"),
                )
                await response(scope, receive, send)
                return
            # The server stops at the declared length, so there is nothing left to count.
            await self.app(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException reaches the app's problem handler from inside FastAPI's
                    # body parsing, so the client gets the same 413 problem.
                    raise _BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
