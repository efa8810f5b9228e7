"""``incentives token``: prints a token the services accept, signed with the configured key."""

from __future__ import annotations

from datetime import timedelta

import pytest
import typer
from pydantic import SecretStr
from typer.testing import CliRunner

from services.cli.console import make_app
from services.cli.token import token
from services.kit.auth import MAX_TOKEN_LIFETIME, Role, TokenService
from services.kit.errors import Unauthorized
from services.kit.settings import DEV_JWT_SECRET


@pytest.fixture
def cli() -> typer.Typer:
    """The command as the ``incentives`` app registers it."""
    app = make_app()
    app.command()(token)
    return app


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INCENTIVES_JWT_SECRET", raising=False)
    monkeypatch.delenv("INCENTIVES_DEV_MODE", raising=False)
    monkeypatch.delenv("INCENTIVES_JWT_MAX_LIFETIME", raising=False)


def test_a_token_of_the_longest_lifetime_passes_the_services_check(cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["--role", "auditor", "--ttl", "30d"])
    assert result.exit_code == 0, result.output
    tokens = TokenService(SecretStr(DEV_JWT_SECRET), max_lifetime=MAX_TOKEN_LIFETIME)
    assert tokens.verify(result.stdout.strip()).role is Role.AUDITOR


def test_the_lifetime_setting_caps_what_the_command_mints(
    cli: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INCENTIVES_JWT_MAX_LIFETIME", "PT1H")
    refused = CliRunner().invoke(cli, ["--role", "auditor", "--ttl", "2h"])
    assert refused.exit_code == 2
    assert refused.stdout == ""
    assert "--ttl: a token may live at most 1:00:00, not 2:00:00" in refused.stderr
    strict = TokenService(SecretStr(DEV_JWT_SECRET), max_lifetime=timedelta(hours=1))
    for args in (["--ttl", "1h"], []):  # the 8-hour default shrinks to the maximum
        minted = CliRunner().invoke(cli, ["--role", "auditor", *args])
        assert minted.exit_code == 0, minted.output
        assert strict.verify(minted.stdout.strip()).role is Role.AUDITOR


def test_a_firm_token_names_the_firm_and_the_user(cli: typer.Typer) -> None:
    result = CliRunner().invoke(
        cli, ["--role", "firm", "--firm", "ACME", "--user", "alice@acme.example"]
    )
    assert result.exit_code == 0, result.output
    principal = TokenService(SecretStr(DEV_JWT_SECRET)).verify(result.stdout.strip())
    assert principal.role is Role.FIRM
    assert principal.firm_id == "ACME"
    assert principal.sub == "alice@acme.example"
    assert principal.qualified_role == "firm:ACME"


def test_staff_tokens_and_the_qualified_firm_role(cli: typer.Typer) -> None:
    verify = TokenService(SecretStr(DEV_JWT_SECRET)).verify
    reviewer = CliRunner().invoke(cli, ["--role", "reviewer", "--ttl", "30m"])
    assert verify(reviewer.stdout.strip()).role is Role.REVIEWER
    firm = CliRunner().invoke(cli, ["--role", "firm:GLOBEX"])
    assert verify(firm.stdout.strip()).firm_id == "GLOBEX"


def test_the_configured_secret_signs(cli: typer.Typer, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "a-production-like-secret-of-sufficient-length-42"
    monkeypatch.setenv("INCENTIVES_JWT_SECRET", secret)
    monkeypatch.setenv("INCENTIVES_DEV_MODE", "false")
    result = CliRunner().invoke(cli, ["--role", "auditor"])
    assert result.exit_code == 0, result.output
    assert TokenService(SecretStr(secret)).verify(result.stdout.strip()).role is Role.AUDITOR
    with pytest.raises(Unauthorized):
        TokenService(SecretStr(DEV_JWT_SECRET)).verify(result.stdout.strip())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "emperor"], "unknown role"),
        (["--role", "firm"], "needs --firm"),
        (["--role", "firm", "--firm", "AC ME"], "without spaces"),
        (["--role", "reviewer", "--firm", "ACME"], "firm only"),
        (["--role", "firm:ACME", "--firm", "GLOBEX"], "disagree"),
        (["--role", "admin", "--ttl", "forever"], "--ttl"),
        (["--role", "admin", "--ttl", "90d"], "at most 30 days"),
    ],
)
def test_mistakes_are_explained(cli: typer.Typer, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr


def test_an_insecure_secret_outside_dev_mode_is_refused(
    cli: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INCENTIVES_DEV_MODE", "false")
    result = CliRunner().invoke(cli, ["--role", "admin"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "refusing to start" in result.stderr
