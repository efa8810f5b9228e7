"""deploy/postgres/initdb really creates the roles and databases the stack connects to.

The script is run the way the postgres image runs it (bash, with POSTGRES_USER/POSTGRES_DB and
the passwords in the environment, psql on PATH) against a throwaway PostgreSQL cluster started
on a free port in a temporary folder, then the result is checked over TCP with password auth.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.compose_model import COMPOSE_FILE, INIT_SCRIPT, environment, load_yaml
from tests.support import free_port

pytestmark = pytest.mark.integration

#: Passwords with the characters most likely to break quoting (quotes, ;, $, @, spaces).
INCENTIVES_PASSWORD = "in'c\"en;tives $x @y"
TEMPORAL_PASSWORD = "tem'po\"ral; DROP ROLE x; --"


def postgres_bindir() -> Path:
    """The newest PostgreSQL server binaries installed on this machine."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    assert found, "PostgreSQL server binaries (initdb, pg_ctl) are required for this test"
    return Path(found).parent


@dataclass(frozen=True)
class Cluster:
    """A running throwaway cluster: superuser over its socket, everyone else over TCP."""

    socket_dir: Path
    port: int


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; CI runs as root, so drop to the postgres account."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """initdb + start a cluster owned by this test; stopped by the postmaster PID afterwards."""
    bindir = postgres_bindir()
    workdir = Path(tempfile.mkdtemp(prefix="incentives-pginit-"))
    if os.geteuid() == 0:
        shutil.chown(workdir, user="postgres")
    data = workdir / "data"
    port = free_port()
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "initdb"),
                "--pgdata",
                str(data),
                "--username",
                "postgres",
                "--auth-local",
                "trust",
                "--auth-host",
                "scram-sha-256",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1"
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "pg_ctl"),
                *("-D", str(data), "-o", options, "-l", str(workdir / "log")),
                *("-w", "-t", "60", "start"),
            ]
        ),
        check=True,
        capture_output=True,
        timeout=90,
    )
    pid = int((data / "postmaster.pid").read_text().splitlines()[0])
    try:
        yield Cluster(workdir, port)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)  # "fast" shutdown
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def initialised(cluster: Cluster) -> Cluster:
    """The cluster after the init script ran on it, as on a first container start."""
    env = {
        **os.environ,
        "PGHOST": str(cluster.socket_dir),
        "PGPORT": str(cluster.port),
        "POSTGRES_USER": "postgres",
        "POSTGRES_DB": "postgres",
        "INCENTIVES_DB_PASSWORD": INCENTIVES_PASSWORD,
        "TEMPORAL_DB_PASSWORD": TEMPORAL_PASSWORD,
    }
    result = subprocess.run(
        ["bash", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return cluster


def psql(
    cluster: Cluster, sql: str, *, user: str, database: str, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one statement; the superuser goes over the socket, other roles over TCP."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    host = str(cluster.socket_dir) if password is None else "127.0.0.1"
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run(
        [
            *("psql", "--no-psqlrc", "--quiet", "-At", "-v", "ON_ERROR_STOP=1"),
            *("-h", host, "-p", str(cluster.port), "-U", user, "-d", database, "-c", sql),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_databases_exist_with_the_owners_the_stack_expects(initialised: Cluster) -> None:
    """Every database named by docker-compose.yml exists, owned by the role that connects."""
    services = load_yaml(COMPOSE_FILE)["services"]
    expected: dict[str, str] = {}
    for name, spec in services.items():
        for key, value in environment(spec).items():
            if key.endswith("_DATABASE_URL"):
                match = re.match(r"[a-z+]+://(\w+):.*@[\w.-]+:\d+/(\w+)$", value)
                assert match, f"{name}.{key}"
                expected[match.group(2)] = match.group(1)
    temporal = environment(services["temporal"])
    expected[temporal["DBNAME"]] = temporal["POSTGRES_USER"]
    expected[temporal["VISIBILITY_DBNAME"]] = temporal["POSTGRES_USER"]
    assert len(expected) == 9  # seven processes, two Temporal stores

    result = psql(
        initialised,
        "SELECT datname || '=' || pg_get_userbyid(datdba) FROM pg_database",
        user="postgres",
        database="postgres",
    )
    assert result.returncode == 0, result.stderr
    actual = dict(line.split("=") for line in result.stdout.split())
    for database, owner in expected.items():
        assert actual.get(database) == owner, database


@pytest.mark.parametrize(
    ("user", "password", "database"),
    [
        ("incentives", INCENTIVES_PASSWORD, "applications"),
        ("incentives", INCENTIVES_PASSWORD, "audit"),
        ("temporal", TEMPORAL_PASSWORD, "temporal"),
        ("temporal", TEMPORAL_PASSWORD, "temporal_visibility"),
    ],
)
def test_owner_logs_in_with_its_password_and_can_create_schema(
    initialised: Cluster, user: str, password: str, database: str
) -> None:
    """Password auth over TCP works (quoting survived) and the owner may create tables, as
    Alembic and Temporal's schema tool must."""
    result = psql(
        initialised,
        "CREATE TABLE probe (id int); DROP TABLE probe; SELECT current_user",
        user=user,
        database=database,
        password=password,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == user


def test_other_roles_cannot_connect(initialised: Cluster) -> None:
    """CONNECT is revoked from PUBLIC: Temporal's role cannot open a service database."""
    result = psql(
        initialised, "SELECT 1", user="temporal", database="audit", password=TEMPORAL_PASSWORD
    )
    assert result.returncode != 0
    assert "permission denied" in result.stderr


def test_wrong_password_is_refused(initialised: Cluster) -> None:
    """Host connections really authenticate (scram-sha-256), so the password checks above count."""
    result = psql(initialised, "SELECT 1", user="incentives", database="audit", password="nope")
    assert result.returncode != 0
    assert "password authentication failed" in result.stderr


def test_script_refuses_to_run_without_passwords(cluster: Cluster) -> None:
    """A missing password stops the script before it touches the server."""
    env = {
        **os.environ,
        "PGHOST": str(cluster.socket_dir),
        "PGPORT": str(cluster.port),
        "TEMPORAL_DB_PASSWORD": "x",
    }
    env.pop("INCENTIVES_DB_PASSWORD", None)
    result = subprocess.run(
        ["bash", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "INCENTIVES_DB_PASSWORD" in result.stderr
