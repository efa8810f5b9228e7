"""Consumer-group rebalances on Tansu: ``python -m tests.bench.rebalance [--reps N]``.

Two members of one group share a topic of :data:`PARTITIONS` partitions while a producer
writes one record per partition every :data:`TICK_S` seconds. Member A runs in this process;
member B is a separate process (``python -m tests.bench.rebalance member ...``) so that it can
be SIGKILLed like a crashed replica. Two scenarios, each under several consumer settings:

- **killed**: both members hold partitions; B is SIGKILLed. Measured: seconds until A holds
  every partition, and until A has consumed a record written after the kill on every
  partition (the group is whole again).
- **left mid-rebalance**: A holds every partition; B starts, and is SIGKILLed as soon as A is
  told to give up its partitions (the join B caused is under way). Measured the same way.
  This is where Tansu was seen to stall a join for more than 150 s.

Settings tried (:data:`VARIANTS`): the kit's (session 2 s, heartbeat 0.5 s), a longer session,
a short rebalance timeout, static membership (``group.instance.id``), and the round-robin
assignor. A run that does not recover within :data:`CAP_S` seconds counts as a stall.
Prints one line per run and a table of medians; writes them as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from services.kit.messaging import (
    CONSUMER_HEARTBEAT_INTERVAL_MS,
    CONSUMER_SESSION_TIMEOUT_MS,
    ensure_topics,
)
from tests.bench.common import tansu

PARTITIONS = 8
TICK_S = 0.05
#: Seconds after which a run that has not recovered counts as a stall.
CAP_S = 200.0


@dataclass(frozen=True)
class Variant:
    """Consumer settings under test."""

    name: str
    session_timeout_ms: int = CONSUMER_SESSION_TIMEOUT_MS
    heartbeat_interval_ms: int = CONSUMER_HEARTBEAT_INTERVAL_MS
    rebalance_timeout_ms: int | None = None
    static: bool = False
    assignor: str = "range"

    def options(self, member: str) -> dict[str, Any]:
        """aiokafka consumer options for member ``member``."""
        options: dict[str, Any] = {
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
            "partition_assignment_strategy": (
                (RoundRobinPartitionAssignor,)
                if self.assignor == "roundrobin"
                else (RangePartitionAssignor,)
            ),
            "auto_offset_reset": "latest",
        }
        if self.rebalance_timeout_ms is not None:
            options["rebalance_timeout_ms"] = self.rebalance_timeout_ms
        if self.static:
            options["group_instance_id"] = f"replica-{member}"
        return options

    def argv(self) -> list[str]:
        """The member subprocess's options for these settings."""
        argv = [
            "--session-timeout-ms",
            str(self.session_timeout_ms),
            "--heartbeat-interval-ms",
            str(self.heartbeat_interval_ms),
            "--assignor",
            self.assignor,
        ]
        if self.rebalance_timeout_ms is not None:
            argv += ["--rebalance-timeout-ms", str(self.rebalance_timeout_ms)]
        if self.static:
            argv.append("--static")
        return argv


VARIANTS: tuple[Variant, ...] = (
    Variant("kit (session 2 s, heartbeat 0.5 s)"),
    Variant("session 6 s, heartbeat 1 s", session_timeout_ms=6000, heartbeat_interval_ms=1000),
    Variant("rebalance timeout 3 s", rebalance_timeout_ms=3000),
    Variant("static membership", static=True),
    Variant("round-robin assignor", assignor="roundrobin"),
)


@dataclass
class Watch:
    """Member A's view: what it holds and the latest record time per partition."""

    assigned: set[int] = field(default_factory=set)
    revoked_at: float | None = None
    latest: dict[int, float] = field(default_factory=dict)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, watch: Watch) -> None:
        self.watch = watch

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.watch.revoked_at = time.monotonic()
        self.watch.assigned -= {tp.partition for tp in revoked}

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.watch.assigned |= {tp.partition for tp in assigned}


async def _produce(bootstrap: str, topic: str, stop: asyncio.Event) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        while not stop.is_set():
            stamp = str(time.monotonic()).encode()
            await asyncio.gather(
                *(producer.send_and_wait(topic, stamp, partition=p) for p in range(PARTITIONS))
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_S)
    finally:
        await producer.stop()


async def _consume(consumer: AIOKafkaConsumer, watch: Watch, stop: asyncio.Event) -> None:
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=100)
        for tp, records in batches.items():
            if records:
                watch.latest[tp.partition] = time.monotonic()


def _member(bootstrap: str, topic: str, group: str, variant: Variant) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.bench.rebalance",
            "member",
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--group",
            group,
            *variant.argv(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


async def _wait(condition: Any, cap: float) -> float | None:
    """Seconds until ``condition()`` holds, or None after ``cap``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > cap:
            return None
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def one_run(bootstrap: str, variant: Variant, scenario: str) -> dict[str, Any]:
    """One measured run of ``scenario`` (``killed`` or ``mid-rebalance``) under ``variant``."""
    try:
        async with asyncio.timeout(2 * CAP_S + 180):
            return await _one_run(bootstrap, variant, scenario)
    except TimeoutError:
        return {"variant": variant.name, "scenario": scenario, "stalled": True, "hung": True}


async def _one_run(bootstrap: str, variant: Variant, scenario: str) -> dict[str, Any]:
    topic = f"rebalance-{uuid.uuid4().hex[:8]}"
    group = f"group-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [(topic, PARTITIONS)])
    watch = Watch()
    stop = asyncio.Event()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, **variant.options("a"))
    consumer.subscribe([topic], listener=_Listener(watch))
    await consumer.start()
    producing = asyncio.create_task(_produce(bootstrap, topic, stop))
    consuming = asyncio.create_task(_consume(consumer, watch, stop))
    member: subprocess.Popen[str] | None = None
    result: dict[str, Any] = {"variant": variant.name, "scenario": scenario}
    try:
        alone = await _wait(lambda: len(watch.assigned) == PARTITIONS, 60)
        if alone is None:
            result["error"] = "member A never held every partition"
            return result
        result["first_join_s"] = round(alone, 2)
        watch.revoked_at = None
        member = _member(bootstrap, topic, group, variant)
        if scenario == "killed":
            shared = await _wait(lambda: 0 < len(watch.assigned) < PARTITIONS, 60)
            if shared is None:
                result["error"] = "member B never got partitions"
                return result
            result["join_s"] = round(shared, 2)
            await asyncio.sleep(1.0)  # both consume for a moment
        else:
            begun = await _wait(lambda: watch.revoked_at is not None, 60)
            if begun is None:
                result["error"] = "B's join never began a rebalance"
                return result
        os.kill(member.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        held = await _wait(lambda: len(watch.assigned) == PARTITIONS, CAP_S)
        resumed = await _wait(
            lambda: (
                len(watch.assigned) == PARTITIONS
                and all(watch.latest.get(p, 0) > killed_at for p in range(PARTITIONS))
            ),
            CAP_S,
        )
        result["all_assigned_s"] = None if held is None else round(held, 2)
        result["resumed_s"] = None if resumed is None else round(time.monotonic() - killed_at, 2)
        result["stalled"] = held is None or resumed is None
        return result
    finally:
        stop.set()
        if member is not None and member.poll() is None:
            member.kill()
        if member is not None:
            member.wait()
        for task in (producing, consuming):
            with contextlib.suppress(Exception):
                await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), 15)


async def _member_main(args: argparse.Namespace) -> None:
    variant = Variant(
        "member",
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=args.heartbeat_interval_ms,
        rebalance_timeout_ms=args.rebalance_timeout_ms,
        static=args.static,
        assignor=args.assignor,
    )
    consumer = AIOKafkaConsumer(
        args.topic, bootstrap_servers=args.bootstrap, group_id=args.group, **variant.options("b")
    )
    await consumer.start()
    print("started", flush=True)
    while True:
        await consumer.getmany(timeout_ms=100)


async def _main(
    reps: int, scenarios: list[str], variants: list[Variant], json_path: Path | None
) -> int:
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rebalance-") as tmp:
        async with tansu(Path(tmp)) as bootstrap:
            for scenario in scenarios:
                for variant in variants:
                    for _ in range(reps):
                        result = await one_run(bootstrap, variant, scenario)
                        print(json.dumps(result), flush=True)
                        results.append(result)
    print()
    print(
        f"{'scenario':<14} {'variant':<36} {'runs':>4} {'stalls':>6} {'assigned p50':>12} "
        f"{'resumed p50':>11} {'resumed max':>11}"
    )
    for scenario in scenarios:
        for variant in variants:
            runs = [
                r for r in results if r["scenario"] == scenario and r["variant"] == variant.name
            ]
            ok = [r for r in runs if not r.get("stalled") and "error" not in r]
            assigned = [r["all_assigned_s"] for r in ok]
            resumed = [r["resumed_s"] for r in ok]
            print(
                f"{scenario:<14} {variant.name:<36} {len(runs):>4} {len(runs) - len(ok):>6} "
                f"{statistics.median(assigned) if assigned else float('nan'):>12.2f} "
                f"{statistics.median(resumed) if resumed else float('nan'):>11.2f} "
                f"{max(resumed) if resumed else float('nan'):>11.2f}"
            )
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the measurements (or, as ``member``, be member B)."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.rebalance")
    sub = parser.add_subparsers(dest="command")
    member = sub.add_parser("member")
    member.add_argument("--bootstrap", required=True)
    member.add_argument("--topic", required=True)
    member.add_argument("--group", required=True)
    member.add_argument("--session-timeout-ms", type=int, default=CONSUMER_SESSION_TIMEOUT_MS)
    member.add_argument("--heartbeat-interval-ms", type=int, default=CONSUMER_HEARTBEAT_INTERVAL_MS)
    member.add_argument("--rebalance-timeout-ms", type=int, default=None)
    member.add_argument("--static", action="store_true")
    member.add_argument("--assignor", default="range")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--scenario", action="append", choices=["killed", "mid-rebalance"], default=None
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--variant",
        action="append",
        choices=[v.name for v in VARIANTS],
        default=None,
        help="only these settings (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.command == "member":
        asyncio.run(_member_main(args))
        return 0
    variants = [v for v in VARIANTS if args.variant is None or v.name in args.variant]
    scenarios = args.scenario or ["killed", "mid-rebalance"]
    return asyncio.run(_main(args.reps, scenarios, variants, args.json))


if __name__ == "__main__":
    sys.exit(main())
