"""Alembic, configured in code: no ``alembic.ini`` anywhere.

Each service keeps its scripts in ``services/<name>/migrations`` with an ``env.py`` that just
calls :func:`run_env`. Services upgrade to head on start (:func:`upgrade_to_head`). Developers
create revisions with::

    python -m services.kit.migrations <service> revision --autogenerate -m "add ledger"
    python -m services.kit.migrations <service> upgrade head

(the database URL comes from the service's settings, i.e. its environment).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import CommandLine, Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from services.kit.db import UTCDateTime, create_engine, is_sqlite
from services.kit.tables import KIT_TABLES, BigIntId

__all__ = [
    "alembic_config",
    "create_kit_tables_v1",
    "drop_kit_tables_v1",
    "main",
    "run_env",
    "service_metadata",
    "upgrade_to_head",
]


def service_metadata(*tables: sa.Table) -> sa.MetaData:
    """A metadata holding the kit tables plus ``tables``: the autogenerate target of a service.

    SQLModel registers every table in one global metadata; copying the service's own tables out
    keeps one service's autogenerate from seeing another's tables.
    """
    metadata = sa.MetaData()
    for table in (*KIT_TABLES, *tables):
        table.to_metadata(metadata)
    return metadata


def alembic_config(script_location: Path, *, url: str | None = None) -> Config:
    """An Alembic config for a service's migrations folder, without any ini file."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("path_separator", "os")
    if url is not None:
        # ConfigParser interpolation: a literal "%" in a URL (encoded passwords) must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _lock_key(script_location: Path) -> int:
    digest = hashlib.sha256(str(script_location.resolve()).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _upgrade(connection: Connection, config: Config, revision: str, lock_key: int) -> None:
    if connection.dialect.name == "postgresql":
        # Replicas starting together would race to create the same tables; the first one
        # migrates while the others wait, then find nothing left to do.
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def upgrade_to_head(
    engine: AsyncEngine, script_location: Path, *, revision: str = "head"
) -> None:
    """Apply the service's migrations on ``engine``, in one transaction."""
    config = alembic_config(script_location)
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, config, revision, _lock_key(script_location))


def _configure_and_run(connection: Connection, target_metadata: sa.MetaData, context: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode recreates tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(url: str, target_metadata: sa.MetaData, context: Any) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_configure_and_run, target_metadata, context)
    finally:
        await engine.dispose()


def run_env(target_metadata: sa.MetaData) -> None:
    """The whole body of a service's ``migrations/env.py``."""
    from alembic import context

    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:  # called from upgrade_to_head: reuse its connection
        _configure_and_run(connection, target_metadata, context)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: set sqlalchemy.url or pass a connection")
    if context.is_offline_mode():
        context.configure(
            url=url,
            target_metadata=target_metadata,
            literal_binds=True,
            render_as_batch=is_sqlite(url),
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(url, target_metadata, context))


# --- frozen DDL of the kit tables, for services' migration scripts ---------------------------
# Migrations must not change when the models change later, so the kit tables' first version is
# spelled out here once. A later change to the kit tables gets a new pair of functions.


def create_kit_tables_v1() -> None:
    """Create ``outbox`` and ``processed_messages`` (call from a migration's ``upgrade``)."""
    from alembic import op

    op.create_table(
        "outbox",
        sa.Column("id", BigIntId, primary_key=True),
        sa.Column("topic", sa.String(length=249), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=True),
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )
    op.create_index("ix_outbox_created_at", "outbox", ["created_at"])
    op.create_table(
        "processed_messages",
        sa.Column("consumer", sa.String(length=200), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("processed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
    )


def drop_kit_tables_v1() -> None:
    """Drop what :func:`create_kit_tables_v1` created (call from ``downgrade``)."""
    from alembic import op

    op.drop_table("processed_messages")
    op.drop_index("ix_outbox_created_at", table_name="outbox")
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    op.drop_table("outbox")


# --- developer CLI ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m services.kit.migrations SERVICE <alembic command> [args...]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        print(__doc__)
        raise SystemExit(2)
    service, alembic_args = args[0], args[1:]
    package = importlib.import_module(f"services.{service}")
    settings_module = importlib.import_module(f"services.{service}.settings")
    settings = settings_module.Settings()
    script_location = Path(package.__file__ or "").parent / "migrations"
    cli = CommandLine(prog=f"python -m services.kit.migrations {service}")
    options = cli.parser.parse_args(alembic_args)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    cli.run_cmd(alembic_config(script_location, url=settings.database_url), options)


if __name__ == "__main__":
    main()
