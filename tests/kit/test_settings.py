"""Settings: env prefixes, defaults, and the refusal of insecure secrets outside dev mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.audit.settings import Settings as AuditSettings
from services.kit.settings import DEV_JWT_SECRET, CommonSettings

STRONG = "x" * 48


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("INCENTIVES_"):
            monkeypatch.delenv(name)


def test_defaults_are_safe_embedded_defaults() -> None:
    settings = CommonSettings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.temporal_address == "127.0.0.1:7233"
    assert settings.dev_mode is True
    assert settings.jwt_secret.get_secret_value() == DEV_JWT_SECRET


def test_default_secret_refused_outside_dev_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCENTIVES_DEV_MODE", "false")
    with pytest.raises(ValidationError, match="refusing to start"):
        CommonSettings()


def test_short_secret_refused_outside_dev_mode() -> None:
    with pytest.raises(ValidationError, match="refusing to start"):
        CommonSettings(dev_mode=False, jwt_secret="too-short")


def test_strong_secret_accepted_outside_dev_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCENTIVES_DEV_MODE", "0")
    monkeypatch.setenv("INCENTIVES_JWT_SECRET", STRONG)
    settings = CommonSettings()
    assert settings.dev_mode is False
    assert settings.jwt_secret.get_secret_value() == STRONG
    assert STRONG not in repr(settings)


def test_service_settings_refuse_default_secret_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCENTIVES_DEV_MODE", "false")
    with pytest.raises(ValidationError, match="refusing to start"):
        AuditSettings()


def test_service_reads_common_and_own_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("INCENTIVES_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("INCENTIVES_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("INCENTIVES_AUDIT_PORT", "18003")
    monkeypatch.setenv("INCENTIVES_PORT", "1")  # not a service setting: ignored
    settings = AuditSettings()
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.port == 18003
    assert settings.database_url == f"sqlite+aiosqlite:///{(tmp_path / 'audit.db').resolve()}"


def test_default_port_and_explicit_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql+asyncpg://postgres@db:5432/audit"
    monkeypatch.setenv("INCENTIVES_AUDIT_DATABASE_URL", url)
    settings = AuditSettings()
    assert settings.port == 8003
    assert settings.database_url == url


def test_constructor_keywords_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCENTIVES_KAFKA_BOOTSTRAP", "from-env:9092")
    settings = AuditSettings(kafka_bootstrap="from-code:9092", port=0)
    assert settings.kafka_bootstrap == "from-code:9092"
    assert settings.port == 0


def test_one_worker_by_default_and_several_only_on_postgresql(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert AuditSettings().workers == 1
    monkeypatch.setenv("INCENTIVES_AUDIT_WORKERS", "2")
    with pytest.raises(ValidationError, match="needs PostgreSQL"):
        AuditSettings()
    monkeypatch.setenv("INCENTIVES_AUDIT_DATABASE_URL", "postgresql+asyncpg://u@h/audit")
    assert AuditSettings().workers == 2
