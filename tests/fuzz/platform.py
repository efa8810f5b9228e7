"""Every service with an HTTP API, served for real, in a thread of its own.

Each service runs its real app under uvicorn on a free port, on a PostgreSQL database of its
own, migrated and seeded by its lifespan as in production: HTTP answers are the ones a client
gets. The broker and Temporal addresses point at closed ports; no route needs the broker (writes
wait in the outbox), and a review decision that passed every check answers its documented 503.
Disbursement talks to the simulated rail served beside it.

The servers run on an event loop in a background thread, so synchronous tests (Schemathesis
drives Hypothesis, which is synchronous) and the matrix walk can call them over plain HTTP.
Messages a test needs a service to have seen are handed to that service's own consumer on its
loop (:meth:`ServedPlatform.deliver`), as the in-process tier does.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI

from contracts.envelope import Envelope
from services.applications.main import create_app as applications_app
from services.applications.settings import Settings as ApplicationsSettings
from services.audit.main import create_app as audit_app
from services.audit.settings import Settings as AuditSettings
from services.disbursement.main import create_app as disbursement_app
from services.disbursement.settings import Settings as DisbursementSettings
from services.eligibility.main import create_app as eligibility_app
from services.eligibility.settings import Settings as EligibilitySettings
from services.kit.consumer import Outcome
from services.kit.logging import configure_logging
from services.kit.runtime import Service
from services.rail.app import create_app as rail_app
from services.rail.settings import Settings as RailSettings
from services.review.main import create_app as review_app
from services.review.settings import Settings as ReviewSettings
from services.zones.main import create_app as zones_app
from services.zones.settings import Settings as ZonesSettings
from tests.inprocess import record_of
from tests.kit.helpers import fresh_database
from tests.support import free_port, serving

_T = TypeVar("_T")

#: Builders of the served apps, by service name, from the settings every one gets.
Builder = Callable[[dict[str, Any]], FastAPI]

#: The services with an HTTP API of their own (the portal serves pages; the worker has none).
SERVED = ("applications", "review", "zones", "disbursement", "audit", "eligibility", "rail")

#: A small body limit, so fuzzing stays cheap; the services' own limit rules are the same.
MAX_REQUEST_BYTES = 200_000


@dataclass
class ServedPlatform:
    """The running services: their base URLs and apps, and the loop they run on."""

    urls: dict[str, str] = field(default_factory=dict)
    apps: dict[str, FastAPI] = field(default_factory=dict)
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 60) -> _T:
        """Run ``coro`` on the services' loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def service(self, name: str) -> Service:
        service: Service = self.apps[name].state.service
        return service

    def deliver(
        self, name: str, envelope: Envelope[Any], *, consumer: str | None = None
    ) -> Outcome:
        """Hand ``envelope`` to ``name``'s consumer (the only one, or the one named)."""
        consumers = [c for c in self.service(name).consumers if consumer in (None, c.name)]
        assert len(consumers) == 1, [c.name for c in self.service(name).consumers]
        return self.run(consumers[0].process(record_of(envelope)))


def _builders(rail_url: str) -> dict[str, Builder]:
    return {
        "rail": lambda kw: rail_app(RailSettings(**kw)),
        "applications": lambda kw: applications_app(ApplicationsSettings(**kw)),
        "review": lambda kw: review_app(ReviewSettings(seed_demo_reviewers=True, **kw)),
        "zones": lambda kw: zones_app(ZonesSettings(**kw)),
        "disbursement": lambda kw: disbursement_app(DisbursementSettings(rail_url=rail_url, **kw)),
        "audit": lambda kw: audit_app(AuditSettings(**kw)),
        "eligibility": lambda kw: eligibility_app(EligibilitySettings(**kw)),
    }


def _nowhere() -> str:
    return f"127.0.0.1:{free_port()}"


@contextlib.contextmanager
def served_platform(pg_url: str, var_dir: Path) -> Iterator[ServedPlatform]:
    """Start every service of :data:`SERVED`; stop them all on exit."""
    platform = ServedPlatform()
    started = threading.Event()
    stop: asyncio.Event | None = None
    failure: list[BaseException] = []

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        configure_logging("tests", "WARNING")
        try:
            async with contextlib.AsyncExitStack() as stack:
                rail_port = free_port()
                builders = _builders(f"http://127.0.0.1:{rail_port}")
                for name in SERVED:
                    port = rail_port if name == "rail" else free_port()
                    database_url = await stack.enter_async_context(fresh_database(pg_url, name[:5]))
                    app = builders[name](
                        {
                            "var_dir": var_dir / name,
                            "kafka_bootstrap": _nowhere(),
                            "temporal_address": _nowhere(),
                            "database_url": database_url,
                            "port": port,
                            "max_request_bytes": MAX_REQUEST_BYTES,
                        }
                    )
                    await stack.enter_async_context(serving(app, port))
                    platform.apps[name] = app
                    platform.urls[name] = f"http://127.0.0.1:{port}"
                started.set()
                await stop.wait()
        except BaseException as exc:
            failure.append(exc)
            raise
        finally:
            started.set()

    def thread_main() -> None:
        asyncio.set_event_loop(platform.loop)
        with contextlib.suppress(BaseException):
            platform.loop.run_until_complete(main())
        platform.loop.close()

    thread = threading.Thread(target=thread_main, name="served-platform", daemon=True)
    thread.start()
    started.wait(timeout=180)
    try:
        if failure:
            raise RuntimeError(f"a service did not start: {failure[0]!r}") from failure[0]
        assert len(platform.urls) == len(SERVED), "the services did not start in time"
        yield platform
    finally:
        if stop is not None:
            platform.loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=60)
