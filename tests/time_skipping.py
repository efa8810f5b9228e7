"""The Temporal time-skipping test server, started one way by every fixture and script using it.

sdk-core waits 5 s by default for the server to answer, which a loaded CI machine exceeds (the
server usually answers within about a second). It also waits that long when the server died at
once, its port taken between sdk-core's probe of a kernel-chosen port and the server's bind.
So the server gets :data:`STARTUP_TIMEOUT`, a port from :func:`free_port` (outside the kernel's
ephemeral range), and :data:`ATTEMPTS` tries, each on a fresh port, when it does not start.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from services.cli.embedded import free_port, temporal_test_server_binary

__all__ = ["ATTEMPTS", "STARTUP_TIMEOUT", "start_time_skipping", "time_skipping_environment"]

log = logging.getLogger(__name__)

#: How long sdk-core waits for the server to answer before giving up on one try.
STARTUP_TIMEOUT = timedelta(seconds=30)

#: How many times the server is started before its start-up error fails the caller.
ATTEMPTS = 3

#: What sdk-core's error says when the server did not answer within the start-up timeout.
_STARTUP_TIMEOUT_MESSAGE = "did not start within"


def is_startup_timeout(error: BaseException) -> bool:
    """Whether ``error`` is sdk-core's "the server did not start in time" (worth another try)."""
    return isinstance(error, RuntimeError) and _STARTUP_TIMEOUT_MESSAGE in str(error)


async def start_time_skipping(
    data_converter: DataConverter = DataConverter.default,
) -> WorkflowEnvironment:
    """A ``WorkflowEnvironment`` on a time-skipping test server of its own; shut it down after.

    Only the start-up timeout is tried again (logged each time); any other error fails at once.
    """
    for attempt in range(1, ATTEMPTS + 1):
        port = free_port()
        try:
            return await WorkflowEnvironment.start_time_skipping(
                data_converter=data_converter,
                port=port,
                test_server_existing_path=str(temporal_test_server_binary()),
                test_server_startup_timeout=STARTUP_TIMEOUT,
            )
        except RuntimeError as error:
            if attempt == ATTEMPTS or not is_startup_timeout(error):
                raise
            log.warning(
                "the Temporal time-skipping test server on port %d did not start "
                "(try %d of %d); starting it again on another port: %s",
                port,
                attempt,
                ATTEMPTS,
                error,
            )
    raise AssertionError("unreachable")


@asynccontextmanager
async def time_skipping_environment(
    data_converter: DataConverter = DataConverter.default,
) -> AsyncIterator[WorkflowEnvironment]:
    """:func:`start_time_skipping`, shut down on exit (before the interpreter exits: shutting it
    down at finalisation can crash the process)."""
    environment = await start_time_skipping(data_converter)
    try:
        yield environment
    finally:
        await environment.shutdown()
