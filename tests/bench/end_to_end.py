"""End to end: applications per second from an HTTP submission to the firm's accepted offer.

The whole embedded platform runs as ``incentives up`` does it (every service, the worker, the
broker, the rail and the Temporal dev server in processes of their own, on free ports, with the
var dir in the benchmark's work dir). ``incentives demo load --auto-review --accept-offers
--until offer_accepted``, in a process of its own, submits :data:`N_DEFAULT` applications at
once (the demo's 8 requests of a kind in flight), decides every review task as its assigned
reviewer through the desk's API, and accepts each offer as its firm. Every journey passes the
award opened in disbursement (the grant reserved) before its offer is made; the figure runs
from the round's first submission to the last application's accepted offer, read from the
applications' timelines.

The baseline, on the platform's own dev server in the same run: a bare workflow of the same
shape (:mod:`tests.bench.bare_workflow`), the signals, updates and activities of one real
journey's history up to the offer's acceptance, in the order they came, driven for as many
applications, all at once, from this process. Rounds of the platform and of the bare workflow
take turns, so that load changing on a shared machine weighs on both alike.

The note gives the CPU seconds (user + system, from ``/proc``) each part of the platform and
the demo's driver spent per application over the platform's rounds, and the dev server and
this process (the bare worker and its clients) over the bare rounds.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from services.cli.state import read_state
from tests.bench.bare_workflow import ACTIVITY, SIGNAL, UPDATE, BareApproval, Shape, no_op
from tests.bench.common import BenchError, Result
from tests.platform.chaos_run import DemoRun, embedded_platform, run_demo
from tests.platform.helpers import PlatformRun

END_TO_END = "end to end (submission -> offer accepted)"
BARE_TEMPORAL = "bare temporal workflow (same shape)"
TARGET = 0.8
#: Applications per round.
N_DEFAULT = 20
#: Rounds of applications, each followed by as many bare workflows.
ROUNDS = 2
#: The last stage of the measured journey (a status of the firm's view).
UNTIL = "offer_accepted"
#: Seconds between two looks of the demo's driver at the applications (its reviewers look
#: twice as often): short enough that the driver's reaction adds little to a journey.
POLL_S = 0.25
#: Wall time allowed to the benchmark: the platform's start and stop, and every round (the
#: suite's per-benchmark timeout is raised to it).
TIMEOUT = 1800.0
#: The workflow type of a journey, and the event type of the firm's acceptance.
JOURNEY_WORKFLOW = "IncentiveApproval"
ACCEPTED = b"application.offer_accepted"

_STEPS = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: SIGNAL,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: UPDATE,
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: ACTIVITY,
}


# --- CPU of the parts ---------------------------------------------------------------------------


def _tree_cpu(pid: int, ticks: int, *, descendants: bool = True) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The fields after the command name, which is in parentheses and may hold spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    total = (int(fields[11]) + int(fields[12])) / ticks
    if not descendants:
        return total
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children = task.read_text().split()
        except OSError:
            continue
        total += sum(_tree_cpu(int(child), ticks) for child in children)
    return total


def parts_cpu(var_dir: Path) -> dict[str, float]:
    """CPU seconds so far of each part of the platform in ``var_dir``, and its supervisor.

    A part the supervisor restarted starts again from 0: :func:`cpu_delta` refuses that.
    """
    state = read_state(var_dir)
    if state is None:
        raise BenchError(f"no platform state in {var_dir}")
    ticks = os.sysconf("SC_CLK_TCK")
    # The supervisor's own figure leaves out its children: they are the parts.
    cpu = {part.name: _tree_cpu(part.pid, ticks) for part in state.parts}
    cpu["supervisor"] = _tree_cpu(state.supervisor_pid, ticks, descendants=False)
    cpu["restarts"] = float(sum(part.restarts for part in state.parts))
    return cpu


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What each part spent between two :func:`parts_cpu` readings."""
    if after["restarts"] != before["restarts"]:
        raise BenchError("a part of the platform died and was restarted during the round")
    return {name: after[name] - before[name] for name in after if name != "restarts"}


# --- the journey's shape ------------------------------------------------------------------------


async def journey_shape(client: Client) -> Shape:
    """The steps of one journey's history, up to and including the firm's acceptance."""
    async for execution in client.list_workflows(f'WorkflowType="{JOURNEY_WORKFLOW}"'):
        history = await client.get_workflow_handle(execution.id).fetch_history()
        steps: list[str] = []
        for event in history.events:
            step = _STEPS.get(event.event_type)
            if step is not None:
                steps.append(step)
            if step == SIGNAL and any(
                ACCEPTED in p.data
                for p in event.workflow_execution_signaled_event_attributes.input.payloads
            ):
                return Shape("".join(steps))
        raise BenchError(f"journey {execution.id}: no acceptance in its history")
    raise BenchError("no journey on the platform's dev server")


# --- the rounds ---------------------------------------------------------------------------------


@dataclass
class PlatformRound:
    """One round of applications through the platform."""

    seconds: float
    #: Seconds from the first submission to the last award opened (before the offer).
    to_award: float
    cpu: dict[str, float]
    decisions: int
    late: int


@dataclass
class BareRound:
    """One round of bare workflows."""

    seconds: float
    #: CPU seconds of the dev server and of this process (the worker and the clients).
    cpu: dict[str, float]


def _journeys(run: PlatformRun, n: int, stall_timeout: float) -> PlatformRound:
    before = parts_cpu(run.var_dir)
    demo: DemoRun = run_demo(
        run,
        "load",
        "--applications",
        str(n),
        "--auto-review",
        "--accept-offers",
        "--until",
        UNTIL,
        "--poll-interval",
        str(POLL_S),
        "--stall-timeout",
        str(stall_timeout),
        timeout=stall_timeout + 60 * n,
    )
    cpu = cpu_delta(before, parts_cpu(run.var_dir))
    figures = demo.figures
    stages = figures.get("stages", {})
    reached = stages.get(UNTIL, {})
    if demo.returncode != 0 or reached.get("n") != n or figures.get("stuck"):
        raise BenchError(
            f"{reached.get('n', 0)} of {n} reached {UNTIL} (exit {demo.returncode}, "
            f"end states {figures.get('end_states')}):\n{demo.output[-3000:]}"
        )
    cpu["driver"] = float(figures["driver_cpu_s"])
    # An award opened a moment before its offer can miss the timeline's statuses (the offer came
    # first, on another topic); the award opens before its offer, so the offer is the bound then.
    opened = stages.get("award_opened") or {}
    if opened.get("n") != n:
        opened = stages["offered"]
    return PlatformRound(
        seconds=float(reached["last_s"]),
        to_award=float(opened["last_s"]),
        cpu=cpu,
        decisions=int(figures["decisions"]),
        late=int(figures["late_decisions"]),
    )


async def bench_bare_workflow(client: Client, var_dir: Path, n: int, shape: Shape) -> BareRound:
    """``n`` bare workflows of ``shape`` at once, from the first start to the last result."""
    task_queue = f"bench-bare-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, workflows=[BareApproval], activities=[no_op]):
        before, own = parts_cpu(var_dir)["temporal"], time.process_time()
        started = time.perf_counter()
        await asyncio.gather(
            *(
                BareApproval.drive(client, task_queue, f"bare-{uuid.uuid4()}", shape)
                for _ in range(n)
            )
        )
        seconds = time.perf_counter() - started
        cpu = {
            "temporal": parts_cpu(var_dir)["temporal"] - before,
            "bench": time.process_time() - own,
        }
    return BareRound(seconds, cpu)


def _per_app(rounds: list[dict[str, float]], applications: int) -> str:
    total: Counter[str] = Counter()
    for cpu in rounds:
        total.update(cpu)
    ordered = sorted(total.items(), key=lambda kv: -kv[1])
    every = sum(total.values())
    parts = ", ".join(f"{name} {seconds / applications:.2f}" for name, seconds in ordered)
    return f"{every / applications:.2f} core-s per application ({parts})"


async def bench_end_to_end(
    workdir: Path,
    n: int,
    *,
    stall_timeout: float = 180.0,
    on_progress: Callable[[int], None] | None = None,
) -> list[Result]:
    """The platform's rate to an accepted offer and the bare workflow's, in turns.

    :data:`ROUNDS` rounds of ``n`` applications, each followed by ``n`` bare workflows on the
    platform's dev server; each figure pools its rounds.
    """
    platform: AbstractContextManager[PlatformRun] = embedded_platform(workdir / "platform")
    run = await asyncio.to_thread(platform.__enter__)
    try:
        state = read_state(run.var_dir)
        assert state is not None
        client = await Client.connect(state.temporal_address)
        journeys: list[PlatformRound] = []
        bares: list[BareRound] = []
        shape: Shape | None = None
        for done in range(ROUNDS):
            journeys.append(await asyncio.to_thread(_journeys, run, n, stall_timeout))
            if shape is None:
                shape = await journey_shape(client)
            bares.append(await bench_bare_workflow(client, run.var_dir, n, shape))
            if on_progress is not None:
                on_progress(n * (done + 1))
    finally:
        await asyncio.to_thread(platform.__exit__, None, None, None)
    assert shape is not None
    total = n * ROUNDS
    each = ", ".join(
        f"{n / j.seconds:.2f}/s vs {n / b.seconds:.2f}/s"
        for j, b in zip(journeys, bares, strict=True)
    )
    to_award = sum(j.to_award for j in journeys)
    note = (
        f"{ROUNDS} rounds of {n} applications at once ({each}); the whole embedded platform "
        f"(`incentives up`), `incentives demo load --auto-review --accept-offers --until "
        f"{UNTIL}` in its own process, polling every {POLL_S} s; "
        f"{sum(j.decisions for j in journeys)} decisions "
        f"({sum(j.late for j in journeys)} late); to the last award opened "
        f"{total / to_award:.2f}/s; CPU {_per_app([j.cpu for j in journeys], total)}"
    )
    bare_note = (
        f"{shape.signals} signals, {shape.updates} updates, {shape.activities} activities per "
        f"workflow, in the order of a journey's history up to the offer's acceptance "
        f"({shape.steps}: s signal, u update, a activity); {n} at "
        f"once after each round of applications, on the platform's dev server; CPU "
        f"{_per_app([b.cpu for b in bares], total)}"
    )
    return [
        Result(BARE_TEMPORAL, total, sum(b.seconds for b in bares), note=bare_note),
        Result(
            END_TO_END,
            total,
            sum(j.seconds for j in journeys),
            baseline=BARE_TEMPORAL,
            target=TARGET,
            note=note,
        ),
    ]
