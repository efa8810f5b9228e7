"""Helpers shared by the test packages that run services under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from services.cli.embedded import TansuBroker, TemporalDevServer, free_port, free_ports
from services.kit.runtime import server_config

__all__ = [
    "Attempts",
    "free_port",
    "healthy",
    "running_broker",
    "serving",
    "temporal_dev_server",
]


@asynccontextmanager
async def running_broker(log_path: Path) -> AsyncIterator[TansuBroker]:
    """A Tansu broker of the caller's own on a free port, answering; stopped on the way out.

    The readiness probe's refused connections are expected; aiokafka logs each as an error, so
    its logger is quiet while the probe runs. Stopping (SIGTERM, wait, SIGKILL) runs off the
    event loop, which stays responsive.
    """
    broker = TansuBroker(port=free_port(), log_path=log_path)
    broker.start()
    try:
        quiet = logging.getLogger("aiokafka")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            await broker.wait_ready(timeout_s=20.0)
        finally:
            quiet.setLevel(level)
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)


def temporal_dev_server(folder: Path) -> TemporalDevServer:
    """A Temporal dev server (not started) on free ports, its SQLite file and log in ``folder``."""
    grpc_port, http_port, metrics_port = free_ports(3)
    return TemporalDevServer(
        port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        db_path=folder / "temporal.db",
        log_path=folder / "temporal.log",
    )


@asynccontextmanager
async def serving(
    app: FastAPI, port: int, *, timeout: float = 30
) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app`` with uvicorn on ``port`` (lifespan included) and yield a client for it.

    Returns once the server listens; a server that stops during start-up re-raises its error.
    """
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=port))
    task = asyncio.create_task(_serve(server))
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=timeout
        ) as client:
            await _wait_listening(client, task)
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait({task}, timeout=30)
        if not task.done():
            task.cancel()
            raise AssertionError("the server did not stop within 30 s")
        _server_outcome(task)


async def _serve(server: uvicorn.Server) -> None:
    """``server.serve()``, its ``sys.exit`` turned into an ordinary failure.

    asyncio lets a task's ``SystemExit`` out of the event loop itself, and the loop is shared
    by later tests: one failed start-up would fail every test after it.
    """
    try:
        await server.serve()
    except SystemExit as exc:
        raise AssertionError(
            f"the server exited with {exc.code} (uvicorn: start-up or shutdown failed; "
            f"its log above says why)"
        ) from None


def _server_outcome(task: asyncio.Task[Any]) -> None:
    """Re-raise what stopped the server."""
    task.result()


async def _wait_listening(client: httpx.AsyncClient, task: asyncio.Task[Any]) -> None:
    for _ in range(300):
        if task.done():
            _server_outcome(task)  # re-raise what stopped the server
            raise AssertionError("the server stopped during start-up")
        with contextlib.suppress(httpx.TransportError):
            await client.get("/health")
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the server did not start listening")


async def healthy(client: httpx.AsyncClient) -> bool:
    """Whether the service answers 200 on /health."""
    with contextlib.suppress(httpx.TransportError):
        return (await client.get("/health")).status_code == 200
    return False


class Attempts:
    """Counts the calls of a wrapped coroutine function, so a test waits for a number of attempts
    (of a connection, say) instead of sleeping for a time it hopes is long enough."""

    def __init__(self) -> None:
        self.count = 0
        self._called = asyncio.Event()

    def wrap(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """``call``, counting each invocation before it runs."""

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            self._called.set()
            return await call(*args, **kwargs)

        return counted

    async def reach(self, count: int, *, timeout: float = 30) -> None:
        """Return once ``count`` calls were made; fail the test after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while self.count < count:
                self._called.clear()
                await self._called.wait()


async def topic_names(bootstrap: str) -> set[str]:
    """The topics the broker at ``bootstrap`` holds now."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()
