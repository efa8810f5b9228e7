"""The record of a running embedded platform: ``<var>/run/platform.json``.

``incentives up`` writes it as parts start, so ``incentives down`` and ``incentives status`` work
from another shell, and a platform whose supervisor was killed can still be cleaned up.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from services.cli.embedded import pid_alive, process_cmdline

PartKind = Literal["infra", "service"]
PlatformStatus = Literal["starting", "ready", "stopping"]


@dataclass
class PartRecord:
    """One child process of the platform."""

    name: str
    kind: PartKind
    pid: int
    argv: list[str]
    log: str
    port: int | None = None
    #: The URL probed for health (services), or None for infrastructure (probed by protocol).
    health_url: str | None = None
    #: How many times the supervisor restarted it after it died.
    restarts: int = 0
    #: The exit code of its last death (negative: killed by that signal), if it died.
    last_exit: int | None = None

    def is_ours(self) -> bool:
        """Tell whether ``pid`` still runs the process we started (not a recycled PID).

        Where the command line cannot be read (not Linux), a live PID is trusted.
        """
        if not pid_alive(self.pid):
            return False
        cmdline = process_cmdline(self.pid)
        return cmdline is None or cmdline == self.argv


@dataclass
class PlatformState:
    """Everything ``down`` and ``status`` need to know about a running platform."""

    supervisor_pid: int
    status: PlatformStatus
    var_dir: str
    kafka_bootstrap: str
    temporal_address: str
    temporal_ui_url: str | None
    started_at: str
    parts: list[PartRecord] = field(default_factory=list)
    urls: dict[str, dict[str, str]] = field(default_factory=dict)
    #: The supervisor's command line, to tell it from a later process that reused its PID.
    supervisor_argv: list[str] | None = None

    def supervisor_alive(self) -> bool:
        """Tell whether the recorded supervisor still runs (and is not this process)."""
        if self.supervisor_pid == os.getpid() or not pid_alive(self.supervisor_pid):
            return False
        cmdline = process_cmdline(self.supervisor_pid)
        return cmdline is None or self.supervisor_argv is None or cmdline == self.supervisor_argv

    def to_json(self) -> str:
        """Serialise for the state file."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> PlatformState:
        """Parse the state file."""
        data: dict[str, Any] = json.loads(text)
        data["parts"] = [PartRecord(**part) for part in data.get("parts", [])]
        return cls(**data)

    def part(self, name: str) -> PartRecord | None:
        """The record of part ``name``, if started."""
        return next((p for p in self.parts if p.name == name), None)


def state_path(var_dir: Path) -> Path:
    """Where the state file of the platform using ``var_dir`` lives."""
    return var_dir / "run" / "platform.json"


def write_state(var_dir: Path, state: PlatformState) -> None:
    """Write the state file atomically, so a concurrent reader never sees half a document."""
    path = state_path(var_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(state.to_json())
    tmp.replace(path)


def read_state(var_dir: Path) -> PlatformState | None:
    """The recorded platform, or None when there is none (or the file is unreadable)."""
    try:
        return PlatformState.from_json(state_path(var_dir).read_text())
    except (OSError, ValueError, TypeError):
        return None


def remove_state(var_dir: Path) -> None:
    """Forget the recorded platform."""
    state_path(var_dir).unlink(missing_ok=True)
