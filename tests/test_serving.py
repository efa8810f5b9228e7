"""``tests.support.serving``: a server that fails to start fails its test, and only its test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from services.kit.runtime import server_config
from tests.support import free_port, serving


@contextlib.asynccontextmanager
async def _failing_start(app: FastAPI) -> AsyncIterator[None]:
    raise RuntimeError("start-up fails")
    yield  # pragma: no cover


async def test_a_failed_start_up_is_a_failure_not_an_exit() -> None:
    # uvicorn answers a failed start-up with sys.exit(3); out of a task, asyncio would let it
    # through the event loop that later tests share.
    with pytest.raises(AssertionError, match="exited with 3"):
        async with serving(FastAPI(lifespan=_failing_start), free_port()):
            pass


async def test_the_loop_still_serves_after_a_failed_start_up() -> None:
    async with serving(FastAPI(), free_port()) as client:
        assert (await client.get("/docs")).status_code == 200


def test_servers_keep_idle_connections_past_the_clients_pools() -> None:
    """With equal keep-alive timeouts a client can send on a connection the server is closing."""
    expiry = httpx.Limits().keepalive_expiry
    assert expiry is not None
    assert server_config(FastAPI()).timeout_keep_alive > expiry
