"""Stateful property tests against a real (SQLite) database: a fresh copy per example.

Migrating a database for every example would dominate the run, so :class:`TemplateDatabase`
migrates and seeds one file per process and :class:`DatabaseMachine` copies it for each
example, with an event loop of its own (hypothesis drives state machines synchronously).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hypothesis.stateful import RuleBasedStateMachine

from services.kit.db import create_engine, create_session_factory
from services.kit.migrations import upgrade_to_head
from services.kit.uow import UnitOfWork, UnitOfWorkFactory


class TemplateDatabase:
    """A database file migrated with ``migrations`` and seeded by ``seed``, made once."""

    def __init__(self, migrations: Path, seed: Callable[[UnitOfWork], Awaitable[Any]]) -> None:
        self.migrations = migrations
        self.seed = seed
        self._path: Path | None = None

    def path(self) -> Path:
        if self._path is None:
            path = Path(tempfile.mkdtemp(prefix="template-db-")) / "t.db"
            asyncio.run(self._make(path))
            self._path = path
        return self._path

    async def _make(self, path: Path) -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        try:
            await upgrade_to_head(engine, self.migrations)
            async with UnitOfWorkFactory(create_session_factory(engine))() as uow:
                await self.seed(uow)
                await uow.commit()
            async with engine.connect() as conn:  # fold the WAL into the file before copying
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            await engine.dispose()


class DatabaseMachine(RuleBasedStateMachine):
    """A state machine with its own copy of ``template`` and its own event loop."""

    template: TemplateDatabase

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.folder = Path(tempfile.mkdtemp(prefix="machine-db-"))
        shutil.copy(self.template.path(), self.folder / "t.db")
        self.engine = create_engine(f"sqlite+aiosqlite:///{self.folder / 't.db'}")
        self.uow = UnitOfWorkFactory(create_session_factory(self.engine))

    def teardown(self) -> None:
        self.loop.run_until_complete(self.engine.dispose())
        self.loop.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def await_(self, coroutine: Awaitable[Any]) -> Any:
        """Run ``coroutine`` on the machine's loop."""

        async def run() -> Any:
            return await coroutine

        return self.loop.run_until_complete(run())

    def in_unit(self, work: Callable[[UnitOfWork], Awaitable[Any]]) -> Any:
        """Run ``work`` in one unit of work and commit it."""

        async def unit() -> Any:
            async with self.uow() as uow:
                result = await work(uow)
                await uow.commit()
                return result

        return self.loop.run_until_complete(unit())

    def rows(self, sql: str) -> list[Any]:
        """Rows of a raw query."""

        async def read() -> list[Any]:
            async with self.engine.connect() as conn:
                return list(await conn.exec_driver_sql(sql))

        rows: list[Any] = self.await_(read())
        return rows
