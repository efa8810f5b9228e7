"""Where the checkpoint key comes from: generated once in dev mode, mandatory otherwise."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from services.audit.domain.checkpoint import Signer
from services.audit.keys import key_path, load_signer
from services.audit.settings import Settings
from services.cli.main import app as cli

LONG_SECRET = SecretStr("s" * 40)


def test_dev_mode_generates_the_key_once_under_the_var_dir(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    first = load_signer(settings)
    path = key_path(settings)
    assert path == tmp_path / "audit" / "signing.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_signer(settings)
    assert again.verifier.key_text() == first.verifier.key_text()
    assert first.name == "incentives.example/audit"


def test_outside_dev_mode_a_key_is_required(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="INCENTIVES_AUDIT_SIGNING_KEY is unset"):
        Settings(var_dir=tmp_path, dev_mode=False, jwt_secret=LONG_SECRET)
    key = Signer.generate("audit.example.org/log").key_text()
    settings = Settings(
        var_dir=tmp_path, dev_mode=False, jwt_secret=LONG_SECRET, signing_key=SecretStr(key)
    )
    signer = load_signer(settings)
    assert signer.name == "audit.example.org/log"
    assert not key_path(settings).exists()  # nothing generated
    assert key not in repr(settings)


def test_new_key_command_prints_a_usable_key() -> None:
    result = CliRunner().invoke(cli, ["audit", "new-key", "--name", "x.example/log"])
    assert result.exit_code == 0, result.output
    signer = Signer.from_text(result.stdout.strip())
    assert signer.name == "x.example/log"


def test_the_service_refuses_to_start_without_a_key_outside_dev_mode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from services.audit.main import main

    monkeypatch.setenv("INCENTIVES_DEV_MODE", "false")
    monkeypatch.setenv("INCENTIVES_JWT_SECRET", "s" * 40)
    monkeypatch.setenv("INCENTIVES_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("INCENTIVES_AUDIT_SIGNING_KEY", raising=False)
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 2
    assert not (tmp_path / "audit").exists()
