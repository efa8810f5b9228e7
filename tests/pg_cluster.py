"""PostgreSQL for the test suite: the configured server, or a throwaway cluster of its own.

The fixtures use the server of ``INCENTIVES_TEST_PG_ADMIN_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``). When nothing answers there and the
PostgreSQL server binaries are installed (``initdb`` and ``pg_ctl`` on PATH or under
``/usr/lib/postgresql/*/bin``), the session starts a cluster of its own instead: ``initdb`` in a
temp dir, trust auth, a free port, stopped by ``pg_ctl`` at the end of the session.

``python -m tests.pg_cluster`` is the Makefile's preflight: it exits 1 with a message saying what
is missing when neither is available, so ``make test`` stops at once instead of failing late.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

#: Where PostgreSQL is expected; overridable for machines that run it elsewhere.
PG_ADMIN_DSN = os.environ.get(
    "INCENTIVES_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)

MISSING = (
    "The tests need PostgreSQL: nothing answers at {dsn}, and no PostgreSQL server binaries "
    "(initdb, pg_ctl) were found on PATH or under /usr/lib/postgresql/*/bin to start a "
    "throwaway cluster. Install them (Debian/Ubuntu: apt-get install postgresql) or run a "
    "server there (or set INCENTIVES_TEST_PG_ADMIN_DSN)."
)


def answers(dsn: str, timeout: float = 2.0) -> bool:
    """Whether something accepts TCP connections at the host and port of ``dsn``."""
    parts = urlsplit(dsn)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class ServerBinaries:
    """The two programs a throwaway cluster needs."""

    initdb: Path
    pg_ctl: Path


def find_binaries() -> ServerBinaries | None:
    """``initdb`` and ``pg_ctl`` from PATH, else from the newest ``/usr/lib/postgresql/*/bin``."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return ServerBinaries(Path(initdb), Path(pg_ctl))
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        candidates = ServerBinaries(Path(folder, "initdb"), Path(folder, "pg_ctl"))
        if candidates.initdb.exists() and candidates.pg_ctl.exists():
            return candidates
    return None


class ThrowawayCluster:
    """A PostgreSQL cluster in ``workdir`` on ``port``, trust auth for user ``postgres``.

    PostgreSQL refuses to run as root; under root the programs run as the ``postgres`` system
    user (which the server packages create), and the folder is handed to it.
    """

    def __init__(self, binaries: ServerBinaries, workdir: Path, port: int) -> None:
        self.binaries = binaries
        self.data = workdir / "data"
        self.log = workdir / "postgres.log"
        self.socket_dir = workdir / "socket"
        self.port = port
        self._user = "postgres" if os.geteuid() == 0 else None
        self.workdir = workdir

    @property
    def admin_dsn(self) -> str:
        """The maintenance database of the cluster."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str | Path) -> None:
        subprocess.run(
            [str(a) for a in args], check=True, capture_output=True, user=self._user, timeout=120
        )

    def start(self) -> None:
        """``initdb`` and start the server; returns once it accepts connections."""
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            for path in (self.workdir, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            self.binaries.initdb,
            "-D", self.data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync",
        )  # fmt: skip
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            self.binaries.pg_ctl, "-D", self.data, "-l", self.log, "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown) and wait for it."""
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._run(self.binaries.pg_ctl, "-D", self.data, "-m", "fast", "-w", "stop")

    @property
    def running(self) -> bool:
        """Whether ``pg_ctl status`` finds the server."""
        try:
            self._run(self.binaries.pg_ctl, "-D", self.data, "status")
        except subprocess.CalledProcessError:
            return False
        return True


@contextlib.contextmanager
def throwaway_cluster(binaries: ServerBinaries, port: int) -> Iterator[ThrowawayCluster]:
    """A started cluster in a fresh temp dir, stopped and removed when the block ends.

    The folder is made directly under the system temp dir: the ``postgres`` user must be able to
    reach it, which pytest's private (0700) temp folders do not allow.
    """
    workdir = Path(tempfile.mkdtemp(prefix="incentives-test-pg-"))
    cluster = ThrowawayCluster(binaries, workdir, port)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def admin_dsn(configured: str, port: int) -> Iterator[str]:
    """The configured server when it answers, else a throwaway cluster on ``port``."""
    if answers(configured):
        yield configured
        return
    binaries = find_binaries()
    if binaries is None:
        raise RuntimeError(MISSING.format(dsn=configured))
    with throwaway_cluster(binaries, port) as cluster:
        yield cluster.admin_dsn


def main() -> int:
    """Preflight: 0 when the tests can have PostgreSQL, 1 with what is missing otherwise."""
    if answers(PG_ADMIN_DSN):
        return 0
    if find_binaries() is not None:
        print(f"nothing answers at {PG_ADMIN_DSN}: the tests start a throwaway PostgreSQL cluster")
        return 0
    print(MISSING.format(dsn=PG_ADMIN_DSN), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
