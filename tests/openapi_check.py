"""Check live responses against a service's own OpenAPI document, with openapi-core.

:class:`ResponseChecker` wraps an httpx client: every response it returns has been validated
for the status and media type actually sent (body schema and declared headers), and is
recorded, so a test can also say which statuses its journey covered.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import httpx
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict


class _Request:
    def __init__(self, request: httpx.Request) -> None:
        self._request = request
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qs(request.url.query.decode())),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict({}),
        )

    @property
    def host_url(self) -> str:
        return f"{self._request.url.scheme}://{self._request.url.netloc.decode()}"

    @property
    def path(self) -> str:
        return self._request.url.path

    @property
    def method(self) -> str:
        return self._request.method.lower()

    @property
    def body(self) -> bytes | None:
        return self._request.content or None

    @property
    def content_type(self) -> str:
        return str(self._request.headers.get("content-type", ""))


class _Response:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def data(self) -> bytes:
        return self._response.content

    @property
    def status_code(self) -> int:
        return self._response.status_code

    @property
    def content_type(self) -> str:
        return str(self._response.headers.get("content-type", ""))

    @property
    def headers(self) -> Headers:
        return Headers(dict(self._response.headers))


class ResponseChecker:
    """Sends requests and validates each response against ``document``."""

    def __init__(self, client: httpx.AsyncClient, document: dict[str, Any]) -> None:
        self.client = client
        # Problems are JSON under their own media type, which openapi-core does not know.
        config = Config(extra_media_type_deserializers={"application/problem+json": json.loads})
        self.openapi = OpenAPI.from_dict(document, config=config)
        #: ``(method, path template or path, status)`` of every checked response.
        self.seen: list[tuple[str, str, int]] = []

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send the request; raise if its response does not match the document."""
        response = await self.client.request(method, url, **kwargs)
        self.openapi.validate_response(_Request(response.request), _Response(response))
        self.seen.append((method.upper(), response.request.url.path, response.status_code))
        return response

    def statuses(self) -> set[int]:
        """Every status code checked so far."""
        return {status for _, _, status in self.seen}
