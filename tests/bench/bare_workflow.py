"""The end-to-end baseline: a bare Temporal workflow with the signals, updates and activities
of one journey, in the order its history holds them.

Its input is the journey's steps: ``s`` a signal, ``u`` an update, ``a`` an activity. The run
goes through them in order: it waits for each signal, runs each activity (which does nothing),
and waits for each update; an update is handled only once the run has reached it, as a
reviewer decides a task only once it was assigned. The driver starts the workflow with its
first signal (signal-with-start, as the bridge does), then sends the other signals and updates
in order, each update waiting for its answer, and waits for the result: the Temporal work of
one journey without the platform around it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client

SIGNAL, UPDATE, ACTIVITY = "s", "u", "a"


@dataclass(frozen=True)
class Shape:
    """What one workflow's history holds, in order: ``s``, ``u`` and ``a`` steps."""

    steps: str

    @property
    def signals(self) -> int:
        return self.steps.count(SIGNAL)

    @property
    def updates(self) -> int:
        return self.steps.count(UPDATE)

    @property
    def activities(self) -> int:
        return self.steps.count(ACTIVITY)


@activity.defn(name="bench_no_op")
async def no_op() -> None:
    """Nothing: the activity round trip is what is measured."""


@workflow.defn(name="BenchBareJourney")
class BareApproval:
    """The steps in order; completes when all are done."""

    def __init__(self) -> None:
        self._signals = 0
        self._updates = 0
        #: Updates the run has reached so far.
        self._open_updates = 0

    @workflow.signal(name="fact")
    def fact(self, seq: int) -> None:
        """A fact arrived (submitted, eligibility, zone held, award opened, offer accepted)."""
        self._signals += 1

    @workflow.update(name="decide")
    async def decide(self, seq: int) -> int:
        """A decision, once the run reached it; answers how many so far."""
        await workflow.wait_condition(lambda: self._open_updates > seq)
        self._updates += 1
        return self._updates

    @workflow.run
    async def run(self, shape: Shape) -> int:
        """Each step in order: wait for a signal, run an activity, wait for an update."""
        signals = updates = 0
        for step in shape.steps:
            if step == SIGNAL:
                signals += 1
                await workflow.wait_condition(self._signalled(signals))
            elif step == UPDATE:
                updates += 1
                self._open_updates = updates
                await workflow.wait_condition(self._decided(updates))
            else:
                await workflow.execute_activity(no_op, start_to_close_timeout=timedelta(seconds=30))
        return self._updates

    def _signalled(self, n: int) -> Callable[[], bool]:
        return lambda: self._signals >= n

    def _decided(self, n: int) -> Callable[[], bool]:
        return lambda: self._updates >= n

    @staticmethod
    async def drive(client: Client, task_queue: str, workflow_id: str, shape: Shape) -> None:
        """Start one (signal-with-start), send its signals and updates in order, wait for it."""
        handle = await client.start_workflow(
            BareApproval.run,
            shape,
            id=workflow_id,
            task_queue=task_queue,
            start_signal="fact",
            start_signal_args=[0],
        )
        signals = updates = 0
        for step in shape.steps:
            if step == SIGNAL:
                if signals:  # the first came with the start
                    await handle.signal(BareApproval.fact, signals)
                signals += 1
            elif step == UPDATE:
                _ = await handle.execute_update(BareApproval.decide, updates)
                updates += 1
        await handle.result()
