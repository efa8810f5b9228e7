"""Fixtures of the workflow tests: a time-skipping test server per test, its pydantic client,
and a test worker with fake activities.

Each test gets a server of its own (it starts in about 0.1 s): its clock moves only for that
test, and nothing a test leaves behind (a run with a pending timer or activity) can hold the
clock of another. The session's ``temporal_time_skipping`` fixture stays for other packages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from services.cli.embedded import temporal_test_server_binary
from tests.tiers import refuse_in_unit_tier, starts
from tests.workflows.scenarios import TASK_QUEUE, FakeDesk, Harness, harness


@starts("temporal")
@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping environment whose client speaks pydantic, shut down after the test."""
    refuse_in_unit_tier("the Temporal time-skipping test server")
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(temporal_test_server_binary()),
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture
def client(env: WorkflowEnvironment) -> Client:
    """The environment's client: handles it creates unlock the clock while awaiting a result."""
    return env.client


@pytest.fixture
def desk() -> FakeDesk:
    """The fake review desk answering the candidates activity (the demo roster)."""
    return FakeDesk()


@pytest.fixture
async def h(client: Client, env: WorkflowEnvironment, desk: FakeDesk) -> AsyncIterator[Harness]:
    """A worker with the fake activities; whatever a test leaves running is terminated after it."""
    async with harness(client, env, TASK_QUEUE, desk) as running:
        yield running
