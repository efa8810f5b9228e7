"""SIGKILL of a random part of the embedded platform every few seconds, while the load runs.

The parts and their PIDs come from the supervisor's state file (``<var>/run/platform.json``), so
only processes the platform's own supervisor started are signalled, one PID at a time. The
supervisor notices each death and starts the part again (with its backoff); a killed broker
comes back empty and the services republish their outboxes to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.cli.embedded import kafka_ready, pid_alive
from services.cli.settings import SERVICE_NAMES, WEB_SERVICES
from services.cli.state import read_state

#: What ``demo chaos`` kills by default: every service on the journey, the worker, the rail
#: and the broker (the portal serves people, not the journey; Temporal keeps it on disk).
DEFAULT_PARTS: tuple[str, ...] = (*(n for n in SERVICE_NAMES if n not in WEB_SERVICES), "broker")
#: Everything that may be named with ``--parts``.
KILLABLE: frozenset[str] = frozenset({*SERVICE_NAMES, "broker", "temporal"})


def check_parts(parts: Sequence[str]) -> None:
    """Refuse an unknown part name (:class:`ValueError` naming the valid ones)."""
    unknown = sorted(set(parts) - KILLABLE)
    if unknown or not parts:
        raise ValueError(
            f"unknown part(s) {', '.join(unknown) or '(none given)'}; "
            f"choose among: {', '.join(sorted(KILLABLE))}"
        )


@dataclass(frozen=True)
class Kill:
    """One SIGKILL: which part, its PID, and when (seconds after the chaos began)."""

    part: str
    pid: int
    at: float


class Chaos:
    """Kills a random live part every ``every`` seconds until stopped.

    ``count``, when given, fixes how many kills the run makes: :meth:`run` stops after that
    many, and :meth:`until_enough` waits for them, so a run whose journeys rest sooner still
    makes them all, and a slow one makes no more.
    """

    def __init__(
        self,
        var_dir: Path,
        *,
        every: float,
        parts: Sequence[str],
        seed: int | None = None,
        in_turn: bool = False,
        count: int | None = None,
    ) -> None:
        check_parts(parts)
        self.var_dir = var_dir
        self.every = every
        self.parts = list(parts)
        #: Kill the parts in the order given, round after round, instead of at random.
        self.in_turn = in_turn
        self.random = random.Random(seed)
        self.kills: list[Kill] = []
        #: How many kills the run makes (None: until stopped).
        self.count = count
        self._enough = asyncio.Event()
        if not count:
            self._enough.set()
        self._stop = asyncio.Event()
        self._began = time.monotonic()

    async def until_enough(self, patience: float) -> bool:
        """Wait until :attr:`count` kills were made; whether they were within ``patience``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._enough.wait(), timeout=patience)
        return self._enough.is_set()

    def stop(self) -> None:
        """Stop killing (the kill under way, if any, completes)."""
        self._stop.set()

    async def run(self) -> None:
        """Kill one live part every ``every`` seconds, :attr:`count` times if given."""
        self._began = time.monotonic()
        while not self._stop.is_set() and not (self.count and self._enough.is_set()):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.every)
            if self._stop.is_set():
                return
            await self.kill_one()

    async def kill_one(self) -> Kill | None:
        """SIGKILL one of the chosen parts that is up (it runs and answers); None when none is.

        A part still starting after its last kill is left alone: killing it again before it
        serves would only keep it down, which is an outage, not a crash.
        """
        state = read_state(self.var_dir)
        if state is None:
            return None
        down = set(await self._down_now())
        alive = [
            record
            for record in state.parts
            if record.name in self.parts
            and record.is_ours()
            and pid_alive(record.pid)
            and record.name not in down
        ]
        if not alive:
            return None
        if self.in_turn:
            turn = self.parts[len(self.kills) % len(self.parts)]
            chosen = [record for record in alive if record.name == turn]
            if not chosen:
                return None  # its turn comes back once it runs again
            victim = chosen[0]
        else:
            victim = self.random.choice(alive)
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim.pid, signal.SIGKILL)
        kill = Kill(victim.name, victim.pid, time.monotonic() - self._began)
        self.kills.append(kill)
        if self.count and len(self.kills) >= self.count:
            self._enough.set()
        return kill

    async def _down_now(self) -> list[str]:
        async with httpx.AsyncClient(timeout=2.0) as client:
            return await self._down(client, count_killed=False)

    async def wait_all_back(self, patience: float) -> list[str]:
        """Wait until every part runs again and answers; the parts still down at the deadline."""
        deadline = time.monotonic() + patience
        down: list[str] = []
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                down = await self._down(client)
                if not down or time.monotonic() >= deadline:
                    return down
                await asyncio.sleep(0.5)

    async def _down(self, client: httpx.AsyncClient, *, count_killed: bool = True) -> list[str]:
        state = read_state(self.var_dir)
        if state is None:
            return ["platform"]
        down: list[str] = []
        killed = {k.pid for k in self.kills} if count_killed else set()
        for record in state.parts:
            if record.pid in killed or not pid_alive(record.pid):
                down.append(record.name)
            elif record.health_url:
                try:
                    ok = (await client.get(record.health_url)).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if not ok:
                    down.append(record.name)
            elif record.name == "broker" and not await kafka_ready(state.kafka_bootstrap):
                down.append(record.name)
        return down
