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

from tests.tiers import refuse_in_unit_tier, starts
from tests.time_skipping import time_skipping_environment
from tests.workflows.scenarios import TASK_QUEUE, FakeDesk, Harness, harness


@starts("temporal")
@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping environment whose client speaks pydantic, shut down after the test."""
    refuse_in_unit_tier("the Temporal time-skipping test server")
    async with time_skipping_environment(pydantic_data_converter) as environment:
        yield environment


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
