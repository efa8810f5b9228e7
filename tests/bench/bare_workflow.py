"""The end-to-end baseline: a bare Temporal workflow with the signals, updates and activities
of one approval.

It takes ``signals`` signals, runs ``activities`` activities that do nothing, one after the
other, and accepts ``updates`` updates, then completes: the Temporal work of one approval
without the platform around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client


@dataclass(frozen=True)
class Shape:
    """What one workflow's history holds."""

    signals: int
    updates: int
    activities: int


@activity.defn(name="bench_no_op")
async def no_op() -> None:
    """Nothing: the activity round trip is what is measured."""


@workflow.defn(name="BenchBareApproval")
class BareApproval:
    """Signals, then activities in sequence, and updates; completes when all are done."""

    def __init__(self) -> None:
        self._signals = 0
        self._updates = 0

    @workflow.signal(name="fact")
    def fact(self, seq: int) -> None:
        """A fact arrived (the approval's submitted / eligibility signals)."""
        self._signals += 1

    @workflow.update(name="decide")
    def decide(self, seq: int) -> int:
        """A decision (the approval's decide update); answers how many so far."""
        self._updates += 1
        return self._updates

    @workflow.run
    async def run(self, shape: Shape) -> int:
        """Wait for the signals, run the activities, wait for the updates."""
        await workflow.wait_condition(lambda: self._signals >= shape.signals)
        for _ in range(shape.activities):
            await workflow.execute_activity(no_op, start_to_close_timeout=timedelta(seconds=30))
        await workflow.wait_condition(lambda: self._updates >= shape.updates)
        return self._updates

    @staticmethod
    async def drive(client: Client, task_queue: str, workflow_id: str, shape: Shape) -> None:
        """Start one (signal-with-start), send its signals and updates, wait for its result."""
        handle = await client.start_workflow(
            BareApproval.run,
            shape,
            id=workflow_id,
            task_queue=task_queue,
            start_signal="fact",
            start_signal_args=[0],
        )
        for seq in range(1, shape.signals):
            await handle.signal(BareApproval.fact, seq)
        for seq in range(shape.updates):
            await handle.execute_update(BareApproval.decide, seq)
        await handle.result()
