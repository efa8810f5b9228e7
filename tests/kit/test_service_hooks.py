"""The kit's Service runs a service's start and stop hooks around its own start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from services.kit.runtime import Service
from services.zones.main import MIGRATIONS
from services.zones.settings import Settings
from tests.support import free_port


def service(tmp_path: Path) -> Service:
    settings = Settings(var_dir=tmp_path, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    return Service(settings, migrations=MIGRATIONS)


async def test_start_hooks_run_in_order_once_migrated_and_stop_hooks_in_reverse(
    tmp_path: Path,
) -> None:
    svc = service(tmp_path)
    calls: list[str] = []

    async def first() -> None:
        async with svc.engine.connect() as connection:  # migrated: the kit's tables exist
            await connection.execute(text("SELECT count(*) FROM outbox"))
        calls.append("start 1")

    svc.on_start(first)
    svc.on_start(lambda: calls.append("start 2"))  # a plain callable works too
    svc.on_stop(lambda: calls.append("stop 1"))

    @svc.on_stop
    async def second_stop() -> None:
        calls.append("stop 2")

    app = svc.create_app(title="t", description="d")
    async with app.router.lifespan_context(app):
        assert calls == ["start 1", "start 2"]
    assert calls == ["start 1", "start 2", "stop 2", "stop 1"]


async def test_a_failing_start_hook_stops_start_up_and_still_runs_the_stop_hooks(
    tmp_path: Path,
) -> None:
    svc = service(tmp_path)
    stopped: list[str] = []

    async def broken() -> None:
        raise RuntimeError("seed failed")

    svc.on_start(broken)
    svc.on_stop(lambda: stopped.append("stop"))
    app = svc.create_app(title="t", description="d")
    with pytest.raises(RuntimeError, match="seed failed"):
        async with app.router.lifespan_context(app):
            pytest.fail("the app must not serve after a failed start hook")
    assert stopped == ["stop"]
    assert not svc.ready.is_set()


async def test_a_failing_stop_hook_does_not_keep_the_others_from_running(tmp_path: Path) -> None:
    svc = service(tmp_path)
    stopped: list[str] = []

    async def broken() -> None:
        raise RuntimeError("stop failed")

    svc.on_stop(lambda: stopped.append("last"))
    svc.on_stop(broken)
    app = svc.create_app(title="t", description="d")
    async with app.router.lifespan_context(app):
        pass
    assert stopped == ["last"]
