"""Each service's Alembic migrations build exactly the schema its models describe."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.kit.db import create_engine
from services.kit.migrations import upgrade_to_head
from tests.kit.helpers import fresh_database

SERVICES = ["applications", "eligibility", "zones", "disbursement", "review", "audit"]


def _diff(connection: sa.Connection, metadata: sa.MetaData) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def _check(name: str, url: str) -> None:
    main = importlib.import_module(f"services.{name}.main")
    models = importlib.import_module(f"services.{name}.models")
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine, main.MIGRATIONS)
        await upgrade_to_head(engine, main.MIGRATIONS)  # idempotent on restart
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff, models.metadata())
    finally:
        await engine.dispose()
    assert diff == []


@pytest.mark.parametrize("name", SERVICES)
async def test_migrations_match_models_on_sqlite(name: str, tmp_path: Path) -> None:
    await _check(name, f"sqlite+aiosqlite:///{tmp_path / f'{name}.db'}")


@pytest.mark.integration
@pytest.mark.parametrize("name", SERVICES)
async def test_migrations_match_models_on_postgres(name: str, pg_url: str) -> None:
    async with fresh_database(pg_url, f"mig_{name}") as url:
        await _check(name, url)
