"""Async database engines: SQLite (embedded default) or PostgreSQL, chosen by URL.

Nothing here runs at import time; :func:`create_engine` is called by a service's composition root.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Table, event, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit.logging import get_logger
from services.kit.retry import wait_until_available

log = get_logger(__name__)

#: How long a SQLite writer waits for the lock before failing with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000
#: PostgreSQL connections older than this are replaced at checkout (seconds).
POOL_RECYCLE_S = 1800


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores ``timestamptz``. SQLite has no timezone support, so values are stored as
    naive UTC and made aware again on load; naive input is refused so local times never sneak in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def is_sqlite(url: str) -> bool:
    """Whether a database URL points at SQLite."""
    return make_url(url).get_backend_name() == "sqlite"


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (health checks, projections) proceed while the writer commits; the busy
    # timeout turns short lock waits into waits instead of errors; NORMAL sync is durable in WAL.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``).

    SQLite gets WAL, a busy timeout, and a single pooled connection: SQLite admits one writer at
    a time anyway, and funnelling the process through one connection avoids "database is locked"
    errors between our own tasks (the consumer holds it for one transaction per batch, and the
    outbox relay never holds it while it waits for the broker). The parent folder of the file
    is created if missing. PostgreSQL gets a pool without pre-ping (see below).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            echo=echo,
            pool_size=1,
            max_overflow=0,
            pool_timeout=30,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        return engine
    # No pre-ping: with asyncpg it costs a BEGIN/;/ROLLBACK round trip on every checkout. A
    # connection that died (server restart, failover) fails its first statement instead, which
    # SQLAlchemy sees as a disconnect and answers by discarding the whole pool; the message path
    # retries that as a transient error. Recycling bounds how old an idle connection gets, so
    # proxies and firewalls that drop idle connections are rarely met.
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=POOL_RECYCLE_S,
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (handlers read them afterwards)."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def insert_ignore(
    dialect: str, table: Table, values: dict[str, Any] | list[dict[str, Any]] | None = None
) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` of ``values`` into ``table``, for ``dialect``.

    Insert-or-ignore rather than select-then-insert: two writers racing on one key serialise
    on its lock, and the second inserts nothing (its result's ``rowcount`` is 0), where a
    select first would let both insert. ``dialect`` is the session's
    (``session.get_bind().dialect.name``): ``postgresql`` or ``sqlite``. Without ``values``,
    the statement takes them as execution parameters, so a hot path can build it once.
    """
    if dialect == "postgresql":
        statement: Any = pg_insert(table)
    elif dialect == "sqlite":
        statement = sqlite_insert(table)
    else:
        raise ValueError(f"unsupported database dialect {dialect!r}")
    if values is not None:
        statement = statement.values(values)
    return statement.on_conflict_do_nothing()


async def ping(engine: AsyncEngine, within: float = 2.0) -> None:
    """Raise if the database does not answer ``SELECT 1`` within ``within`` seconds."""
    async with asyncio.timeout(within), engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def wait_for_database(
    engine: AsyncEngine, *, interval: float = 1.0, deadline: float | None = None
) -> None:
    """Block until the database answers, logging one line (not a traceback) while it does not.

    ``deadline`` (seconds) bounds the wait; ``None`` waits forever, as a container would.
    """
    url = engine.url.render_as_string(hide_password=True)
    await wait_until_available(
        lambda: ping(engine), name=f"database {url}", interval=interval, deadline=deadline
    )
