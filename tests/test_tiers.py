"""Tiers come from the fixtures a test uses, and the unit tier starts nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli.embedded import TansuBroker, free_port
from tests import tiers


class _Item:
    """Just what ``tiers.mark`` reads and writes of a collected test."""

    def __init__(self, *fixturenames: str) -> None:
        self.fixturenames = list(fixturenames)
        self.markers: list[str] = []

    def add_marker(self, marker: str) -> None:
        self.markers.append(marker)


def test_a_test_is_marked_with_what_its_fixtures_start() -> None:
    kafka_and_pg = _Item("tmp_path", "kafka_bootstrap", "pg_engine", "pg_url", "pg_admin_dsn")
    temporal = _Item("temporal_time_skipping")
    nothing = _Item("tmp_path", "in_process", "monkeypatch")
    tiers.mark([kafka_and_pg, temporal, nothing])  # type: ignore[list-item]
    assert kafka_and_pg.markers == ["kafka", "postgres", "integration"]
    assert temporal.markers == ["temporal", "integration"]
    assert nothing.markers == []


def test_only_known_tiers_can_be_declared() -> None:
    with pytest.raises(ValueError, match="unknown tier marker 'redis'"):
        tiers.starts("redis")


def test_under_the_unit_tier_starting_a_server_fails_the_test(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(tiers.TIER_VARIABLE, "unit")
    tiers.forbid_servers(monkeypatch)
    broker = TansuBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    with pytest.raises(pytest.fail.Exception, match="a Tansu broker is not started under make"):
        broker.start()
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL is not started"):
        tiers.refuse_in_unit_tier("PostgreSQL")


def test_outside_the_unit_tier_nothing_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tiers.TIER_VARIABLE, raising=False)
    tiers.refuse_in_unit_tier("PostgreSQL")  # returns: the full suite may start it
