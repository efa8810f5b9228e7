"""Where the platform's APIs listen, the tokens the demo uses, and requests that wait out a part.

A part killed under load answers nothing (a refused connection) or, while it starts, 503; both
are waited out here with capped backoff, and a request that changes something is retried with
its own ``Idempotency-Key``, so a retry after an unknown outcome never acts twice.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.cli.settings import PlatformSettings
from services.cli.state import read_state
from services.cli.token import issue
from services.kit.auth import Principal, Role

#: The parts whose HTTP APIs the demo uses.
API_PARTS = ("applications", "review", "disbursement", "zones", "audit", "rail")
#: The administrator the demo acts as (budgets, listings, checks).
ADMIN_ID = "demo.admin@gaip.example"
#: The auditor that reads the log.
AUDITOR_ID = "demo.auditor@gaip.example"
#: Statuses that mean "not now": a part is starting or a dependency is down.
_RETRY_STATUSES = frozenset({502, 503, 504})
#: Backoff between attempts, doubling from the first to the cap (seconds).
_BACKOFF_FIRST, _BACKOFF_CAP = 0.2, 3.0


class PartUnavailable(RuntimeError):
    """A part did not answer within the time allowed."""


@dataclass(frozen=True)
class Endpoints:
    """The base URL of each API."""

    urls: dict[str, str]

    @classmethod
    def of(cls, settings: PlatformSettings) -> Endpoints:
        """The ports recorded by the running platform in the var dir, else the settings'."""
        state = read_state(settings.resolved_var_dir())
        urls: dict[str, str] = {}
        for name in API_PARTS:
            record = state.part(name) if state else None
            port = record.port if record and record.port else settings.service_port(name)
            urls[name] = f"http://{settings.host}:{port}"
        return cls(urls)


@dataclass
class Tokens:
    """Development tokens, one per principal, issued once."""

    _issued: dict[tuple[str, str, str | None], str] = field(default_factory=dict)

    def header(self, role: Role, sub: str, firm_id: str | None = None) -> dict[str, str]:
        """The ``Authorization`` header of the principal."""
        key = (role.value, sub, firm_id)
        if key not in self._issued:
            principal = Principal(sub=sub, role=role, firm_id=firm_id)
            self._issued[key] = issue(principal)
        return {"Authorization": f"Bearer {self._issued[key]}"}

    def admin(self) -> dict[str, str]:
        return self.header(Role.ADMIN, ADMIN_ID)

    def auditor(self) -> dict[str, str]:
        return self.header(Role.AUDITOR, AUDITOR_ID)

    def firm(self, firm_id: str) -> dict[str, str]:
        return self.header(Role.FIRM, f"demo@{firm_id.lower()}.example", firm_id)

    def reviewer(self, reviewer_id: str) -> dict[str, str]:
        return self.header(Role.REVIEWER, reviewer_id)


class Api:
    """One HTTP client per part, with requests that wait out a part being down."""

    def __init__(
        self, endpoints: Endpoints, *, patience: float = 180.0, max_connections: int = 32
    ) -> None:
        self.endpoints = endpoints
        self.tokens = Tokens()
        self.patience = patience
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=16)
        self.clients = {
            name: httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits)
            for name, url in endpoints.urls.items()
        }
        #: Attempts that met a refused connection, a timeout or a 502/503/504, per part.
        self.retries: dict[str, int] = dict.fromkeys(endpoints.urls, 0)

    async def aclose(self) -> None:
        await asyncio.gather(*(client.aclose() for client in self.clients.values()))

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def request(
        self,
        part: str,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
        params: Any = None,
        idempotent: bool = False,
    ) -> httpx.Response:
        """The part's answer, once it gives one that is not "unavailable".

        A POST without ``idempotent`` gets an ``Idempotency-Key`` of its own, kept across its
        retries. Waits at most :attr:`patience` seconds, then raises :class:`PartUnavailable`.
        """
        headers = dict(headers or {})
        if method == "POST" and not idempotent and "Idempotency-Key" not in headers:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        client = self.clients[part]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.patience
        delay = _BACKOFF_FIRST
        last = "no answer"
        while True:
            try:
                response = await client.request(
                    method, path, headers=headers, json=json, params=params
                )
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code not in _RETRY_STATUSES:
                    return response
                last = f"{response.status_code} {response.text[:200]}"
            self.retries[part] += 1
            if loop.time() >= deadline:
                raise PartUnavailable(f"{part} {method} {path}: {last}")
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, _BACKOFF_CAP)

    async def get_json(
        self, part: str, path: str, *, headers: dict[str, str], params: Any = None
    ) -> Any:
        """A GET that must answer 200; its JSON body."""
        response = await self.request(part, "GET", path, headers=headers, params=params)
        if response.status_code != 200:
            raise PartUnavailable(f"{part} GET {path}: {response.status_code} {response.text}")
        return response.json()
