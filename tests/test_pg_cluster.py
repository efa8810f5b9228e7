"""PostgreSQL for the suite: the configured server when it answers, else a throwaway cluster.

The fallback is forced by pointing the admin DSN at a closed port; the machine's own server is
never touched.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from services.cli.embedded import free_port
from tests import pg_cluster


def _closed_dsn() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"


async def _round_trip(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute("CREATE TABLE probe (n int); INSERT INTO probe VALUES (1), (2)")
        return [row["n"] for row in await conn.fetch("SELECT n FROM probe ORDER BY n")]
    finally:
        await conn.close()


@pytest.mark.integration
@pytest.mark.postgres
def test_nothing_answering_starts_a_usable_cluster_that_stops_afterwards() -> None:
    closed = _closed_dsn()
    if pg_cluster.find_binaries() is None:
        # A machine without the server binaries: the failure says what to install.
        with (
            pytest.raises(RuntimeError, match=r"initdb, pg_ctl"),
            pg_cluster.admin_dsn(closed, free_port()),
        ):
            pass
        return
    with pg_cluster.admin_dsn(closed, free_port()) as dsn:
        assert dsn != closed
        assert pg_cluster.answers(dsn)
        assert asyncio.run(_round_trip(dsn)) == [1, 2]
    assert not pg_cluster.answers(dsn)


def test_a_server_that_answers_is_used_as_configured(listening_port: int) -> None:
    configured = f"postgresql://postgres@127.0.0.1:{listening_port}/postgres"
    with pg_cluster.admin_dsn(configured, free_port()) as dsn:
        assert dsn == configured


def test_without_server_or_binaries_the_failure_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pg_cluster, "find_binaries", lambda: None)
    closed = _closed_dsn()
    with pytest.raises(RuntimeError) as caught, pg_cluster.admin_dsn(closed, free_port()):
        pass
    assert closed in str(caught.value)
    assert "apt-get install postgresql" in str(caught.value)


def test_the_preflight_stops_make_test_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pg_cluster, "PG_ADMIN_DSN", _closed_dsn())
    monkeypatch.setattr(pg_cluster, "find_binaries", lambda: None)
    assert pg_cluster.main() == 1
    assert "The tests need PostgreSQL" in capsys.readouterr().err


def test_the_preflight_passes_when_a_cluster_can_be_started(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pg_cluster, "PG_ADMIN_DSN", _closed_dsn())
    binaries = pg_cluster.ServerBinaries(pg_cluster.Path("initdb"), pg_cluster.Path("pg_ctl"))
    monkeypatch.setattr(pg_cluster, "find_binaries", lambda: binaries)
    assert pg_cluster.main() == 0
    assert "throwaway PostgreSQL cluster" in capsys.readouterr().out
