"""What docker-compose.yml passes is what the code actually reads.

The Compose commands are parsed by the real ``incentives`` CLI, and each container's environment
is loaded by the real settings class of the process it runs, so a renamed option, prefix or
field breaks this test instead of a deployment.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.audit.domain.checkpoint import Signer
from services.cli.main import app
from services.cli.settings import SERVICE_NAMES, SIMULATORS, service_module
from tests.deploy.compose_model import (
    CLUSTER_FILE,
    COMPOSE_FILE,
    SERVICE_PORTS,
    environment,
    interpolate,
    load_yaml,
    merge_compose,
)

#: A signing key in the format the audit service reads (a fixed seed: a stand-in, not a secret).
AUDIT_KEY = Signer.from_seed("incentives.example/audit", bytes(32)).key_text()

#: Stand-ins for the .env secrets; the JWT key is long enough for production mode.
SECRETS = {
    "INCENTIVES_JWT_SECRET": "k" * 64,
    "POSTGRES_PASSWORD": "p" * 32,
    "INCENTIVES_DB_PASSWORD": "d" * 32,
    "TEMPORAL_DB_PASSWORD": "t" * 32,
    "INCENTIVES_AUDIT_SIGNING_KEY": AUDIT_KEY,
    "INCENTIVES_PORTAL_SESSION_SECRET": "s" * 32,
    "INCENTIVES_OIDC_ISSUER": "https://login.example.org/realms/incentives",
    "INCENTIVES_OIDC_AUDIENCE": "incentives-api",
    "INCENTIVES_PORTAL_OIDC_CLIENT_ID": "incentives-portal",
    "INCENTIVES_PORTAL_OIDC_CLIENT_SECRET": "c" * 32,
}


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    """The services of the base Compose file."""
    return load_yaml(COMPOSE_FILE)["services"]


def settings_class(name: str) -> Any:
    """The pydantic-settings class that process ``name`` builds from its environment."""
    package = service_module(name).rsplit(".", 1)[0]
    return importlib.import_module(f"{package}.settings").Settings


def test_compose_runs_exactly_the_clis_processes() -> None:
    """One container per process ``incentives serve`` knows (simulators aside), and no other."""
    assert set(SERVICE_NAMES) - SIMULATORS == set(SERVICE_PORTS)


@pytest.mark.parametrize(
    "compose_file", [COMPOSE_FILE, CLUSTER_FILE], ids=["base", "kafka-cluster"]
)
def test_the_cli_accepts_every_compose_command(compose_file: Path) -> None:
    """Each command line parses: subcommand, arguments and options exist in the CLI.

    ``--help`` is appended so nothing runs; an unknown command or option still fails parsing
    (exit code 2) before help is printed.
    """
    base = load_yaml(COMPOSE_FILE)
    model = base if compose_file == COMPOSE_FILE else merge_compose(base, load_yaml(CLUSTER_FILE))
    runner = CliRunner()
    commands = {
        name: spec["command"] for name, spec in model["services"].items() if "build" in spec
    }
    assert commands
    for name, command in commands.items():
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, f"{name}: {command}\n{result.output}"
        if command[0] == "serve":
            assert command[1] in SERVICE_NAMES, name


@pytest.mark.parametrize("name", sorted(SERVICE_PORTS))
def test_container_environment_configures_the_process(
    name: str, services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process's own settings class, fed the container environment, binds every interface
    on its planned port, uses its PostgreSQL database and the in-network broker and Temporal,
    and accepts the production-mode secret."""
    env = {key: interpolate(value, SECRETS) for key, value in environment(services[name]).items()}
    for key in list(os.environ):
        if key.startswith("INCENTIVES_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    if name == "portal":
        # A client of the APIs, no database; people sign in through the OpenID provider.
        portal = settings_class(name)()
        assert (portal.host, portal.port) == ("0.0.0.0", SERVICE_PORTS[name])
        assert portal.dev_mode is False
        assert portal.sign_in == "oidc"
        assert portal.oidc_issuer == SECRETS["INCENTIVES_OIDC_ISSUER"]
        assert portal.oidc_client_id == SECRETS["INCENTIVES_PORTAL_OIDC_CLIENT_ID"]
        assert portal.oidc_client_secret is not None
        assert (
            portal.oidc_client_secret.get_secret_value()
            == SECRETS["INCENTIVES_PORTAL_OIDC_CLIENT_SECRET"]
        )
        assert (
            portal.session_secret.get_secret_value() == SECRETS["INCENTIVES_PORTAL_SESSION_SECRET"]
        )
        assert portal.applications_url == "http://applications:8001"
        assert portal.review_url == "http://review:8002"
        assert portal.jwt_secret.get_secret_value() == SECRETS["INCENTIVES_JWT_SECRET"]
        return

    settings = settings_class(name)()

    assert settings.service_name == name
    assert settings.host == "0.0.0.0"
    assert settings.port == SERVICE_PORTS[name]
    assert settings.database_url == env[f"INCENTIVES_{name.upper()}_DATABASE_URL"]
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.dev_mode is False
    assert settings.kafka_bootstrap == "kafka:9094"
    assert settings.temporal_address == "temporal:7233"
    assert settings.jwt_secret.get_secret_value() == SECRETS["INCENTIVES_JWT_SECRET"]
    assert settings.oidc_issuer == SECRETS["INCENTIVES_OIDC_ISSUER"]
    assert settings.oidc_audience == SECRETS["INCENTIVES_OIDC_AUDIENCE"]
