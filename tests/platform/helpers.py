"""Helpers for tests that run ``incentives up`` as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from services.cli.embedded import free_ports, pid_alive
from services.cli.settings import SERVICE_NAMES
from services.cli.state import PartRecord, PlatformState, read_state
from tests.default_ports import assert_no_default_ports
from tests.tiers import refuse_in_unit_tier

STUB_PLATFORM = Path(__file__).with_name("stub_platform.py")


@dataclass
class PlatformRun:
    """Where a test platform lives: its var dir, ports and environment."""

    var_dir: Path
    ports: dict[str, int]
    env: dict[str, str]

    @classmethod
    def on_free_ports(cls, var_dir: Path) -> PlatformRun:
        """A platform in ``var_dir`` with every part on a free port and the embedded defaults.

        Every ``INCENTIVES_*`` variable of the calling shell is dropped, so services use their
        SQLite default under ``var_dir`` whatever the developer's environment says.
        """
        names = ["broker", "temporal", "temporal-ui", *SERVICE_NAMES]
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCENTIVES_")}
        env["INCENTIVES_VAR_DIR"] = str(var_dir)
        # Every command of the run (``status`` and ``down`` too) sees the run's ports, never
        # the defaults a developer's own platform may be listening on.
        for name, port in ports.items():
            env[f"INCENTIVES_{name.upper().replace('-', '_')}_PORT"] = str(port)
        return cls(var_dir, ports, env)

    def port_options(self) -> list[str]:
        """``--<part>-port N`` options for ``up``."""
        args: list[str] = []
        for name, port in self.ports.items():
            args += [f"--{name}-port", str(port)]
        return args

    def incentives(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``incentives ARGS`` (as ``python -m services.cli``) to completion."""
        refuse_in_unit_tier("the embedded platform")
        assert_no_default_ports(self.env)
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen_up(
        self, *, stubs: bool = False, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """Start ``incentives up`` in the foreground as a child process (output to a file)."""
        refuse_in_unit_tier("the embedded platform")
        assert_no_default_ports({**self.env, **(extra_env or {})})
        entry = [str(STUB_PLATFORM)] if stubs else ["-m", "services.cli"]
        with (self.var_dir / "up.out").open("w") as log:
            return subprocess.Popen(
                [sys.executable, *entry, "up", *self.port_options()],
                env={**self.env, **(extra_env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )

    def up_output(self) -> str:
        """Everything the foreground ``up`` printed so far."""
        return (self.var_dir / "up.out").read_text()

    def wait_ready(self, proc: subprocess.Popen[str] | None, timeout: float) -> PlatformState:
        """Wait until the state file says ready; fail early if ``proc`` (the supervisor) exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = read_state(self.var_dir)
            if state is not None and state.status == "ready":
                return state
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"up exited with {proc.returncode}:\n{self.up_output()}")
            time.sleep(0.2)
        raise AssertionError(f"platform not ready after {timeout} s")


@contextmanager
def stopped_afterwards(run: PlatformRun) -> Iterator[None]:
    """``incentives down`` on the way out if a platform still runs in ``run``'s var dir.

    A test that fails between ``up --detach`` and its own ``down`` leaves no platform behind
    to load the machine under the tests that follow.
    """
    try:
        yield
    finally:
        if read_state(run.var_dir) is not None:
            run.incentives("down", timeout=180)


def all_pids(state: PlatformState) -> list[int]:
    """The supervisor and every child recorded in ``state``."""
    return [state.supervisor_pid, *(part.pid for part in state.parts)]


def wait_all_gone(pids: list[int], timeout: float = 30) -> list[int]:
    """Wait until none of ``pids`` runs; return the ones still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if pid_alive(pid)]
        time.sleep(0.1)
    return alive


def wait_restarted(var_dir: Path, part: str, restarts: int = 1, timeout: float = 60) -> PartRecord:
    """Wait until the state in ``var_dir`` records ``part`` restarted ``restarts`` times."""
    deadline = time.monotonic() + timeout
    while True:
        state = read_state(var_dir)
        record = state.part(part) if state else None
        if record is not None and record.restarts >= restarts:
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"{part} not restarted {restarts} time(s) within {timeout}s")
        time.sleep(0.2)
