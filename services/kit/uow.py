"""The unit of work: one session, one transaction, one commit.

State changes, processed-message marks and outbox rows go through the same
:class:`UnitOfWork`, so they become durable together or not at all. Nothing else in a service
commits: route handlers call :meth:`UnitOfWork.commit` once at the end; the idempotent consumer
commits for its handlers (once per batch of messages). Leaving the block without committing
rolls back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from contracts import catalog
from contracts.envelope import Envelope, utcnow
from services.kit.db import UTCDateTime, insert_ignore
from services.kit.tables import OUTBOX, PROCESSED, ProcessedMessage

#: Marks a whole batch in one statement with one constant text, so PostgreSQL prepares it once
#: whatever the batch size (an IN/VALUES list would be a new statement per size).
_MARK_MANY_PG = sa.text(
    "INSERT INTO processed_messages (consumer, event_id, processed_at) "
    "SELECT CAST(:consumer AS VARCHAR), ids.event_id, :processed_at "
    "FROM unnest(CAST(:event_ids AS UUID[])) AS ids(event_id) "
    "ON CONFLICT DO NOTHING RETURNING event_id"
).bindparams(sa.bindparam("processed_at", type_=UTCDateTime))
#: SQLite has no arrays: a multi-row VALUES list, in chunks well under its variable limit.
_SQLITE_CHUNK = 300


class UnitOfWorkError(RuntimeError):
    """Misuse of a unit of work (used outside ``async with``, committed twice)."""


class UnitOfWork:
    """An async context manager owning one :class:`AsyncSession` and its transaction."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        on_outbox_committed: Callable[[], None] | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._on_outbox_committed = on_outbox_committed
        self._session: AsyncSession | None = None
        self._committed = False
        self._rolled_back = False
        self._outbox: list[dict[str, Any]] = []
        #: While set, :meth:`commit` refuses with this reason. The batch consumer sets it around
        #: its handlers: a handler committing mid-batch would make the batch's processed marks
        #: durable before the later handlers ran, and a retry would then skip (lose) them.
        self.commit_refused: str | None = None

    @property
    def session(self) -> AsyncSession:
        """The session; use it for the service's own reads and writes. Never commit it."""
        if self._session is None:
            raise UnitOfWorkError("use the unit of work inside `async with`")
        return self._session

    @property
    def committed(self) -> bool:
        """Whether :meth:`commit` has succeeded."""
        return self._committed

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise UnitOfWorkError("a unit of work is entered once")
        self._session = self._session_factory()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self.session
        try:
            if not self._committed:
                await session.rollback()
        finally:
            await session.close()

    def add_outbox(self, envelope: Envelope[Any], topic: str) -> None:
        """Stage ``envelope`` for publication on ``topic`` when (and only if) this unit commits.

        The record key is the envelope subject, so one application's messages stay ordered.
        Rows are plain dictionaries inserted with one Core ``executemany`` at commit: building
        ORM objects for write-only rows costs more than the insert itself.
        """
        if self._session is None:
            raise UnitOfWorkError("use the unit of work inside `async with`")
        self._outbox.append(
            {
                "topic": topic,
                "key": envelope.subject,
                "value": catalog.encode(envelope),
                "headers": [[name, value.decode()] for name, value in envelope.headers()],
                "event_id": envelope.event_id,
                "created_at": utcnow(),
                "published_at": None,
            }
        )

    @property
    def outbox_count(self) -> int:
        """How many outbox rows this unit has staged."""
        return len(self._outbox)

    async def mark_processed(self, consumer: str, event_id: uuid.UUID) -> bool:
        """Record that ``consumer`` handled ``event_id``; ``False`` if it already had.

        Insert-or-ignore rather than select-then-insert: with two deliveries racing (a
        rebalance), the second blocks on the first's key lock and then sees the conflict, so a
        message changes state once even under concurrency.
        """
        session = self.session
        dialect = session.get_bind().dialect.name
        # Core insert: the model's default_factory does not apply, so the time is set here.
        values = {"consumer": consumer, "event_id": event_id, "processed_at": utcnow()}
        result = await session.exec(insert_ignore(dialect, PROCESSED, values))
        return bool(result.rowcount)

    async def mark_processed_many(
        self, consumer: str, event_ids: Collection[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Record that ``consumer`` handled all of ``event_ids``; returns the ones that are new.

        One statement for a whole batch, with the same insert-or-ignore semantics as
        :meth:`mark_processed`. Ids are inserted in sorted order, so two consumers marking
        overlapping batches (a rebalance) take their key locks in the same order.
        """
        if not event_ids:
            return set()
        session = self.session
        ordered = sorted(set(event_ids))
        dialect = session.get_bind().dialect.name
        now = utcnow()
        if dialect == "postgresql":
            # Core on the session's connection: the same transaction, without the ORM layer.
            connection = await session.connection()
            result = await connection.execute(
                _MARK_MANY_PG, {"consumer": consumer, "event_ids": ordered, "processed_at": now}
            )
            return {row[0] for row in result}
        if dialect != "sqlite":  # pragma: no cover - only the two supported backends reach here
            raise UnitOfWorkError(f"unsupported database dialect {dialect!r}")
        connection = await session.connection()
        new: set[uuid.UUID] = set()
        for start in range(0, len(ordered), _SQLITE_CHUNK):
            chunk = ordered[start : start + _SQLITE_CHUNK]
            rows = [{"consumer": consumer, "event_id": e, "processed_at": now} for e in chunk]
            stmt = insert_ignore(dialect, PROCESSED, rows).returning(PROCESSED.c.event_id)
            new.update(row[0] for row in await connection.execute(stmt))
        return new

    async def is_processed(self, consumer: str, event_id: uuid.UUID) -> bool:
        """Whether ``consumer`` has already handled ``event_id`` (read-only check)."""
        found = await self.session.exec(
            select(ProcessedMessage.event_id).where(
                ProcessedMessage.consumer == consumer, ProcessedMessage.event_id == event_id
            )
        )
        return found.first() is not None

    async def commit(self) -> None:
        """Commit everything staged in this unit. Allowed once."""
        if self._committed:
            raise UnitOfWorkError("a unit of work commits once")
        if self._rolled_back:
            raise UnitOfWorkError("a rolled-back unit of work cannot commit")
        if self.commit_refused is not None:
            raise UnitOfWorkError(self.commit_refused)
        session = self.session
        if self._outbox:
            # One executemany for every staged row; asyncpg pipelines it in one round trip.
            connection = await session.connection()
            await connection.execute(sa.insert(OUTBOX), self._outbox)
        await session.commit()
        self._committed = True
        if self._outbox and self._on_outbox_committed is not None:
            # A hint only: the relay also polls, so a lost wake-up delays, never loses, a message.
            self._on_outbox_committed()

    async def rollback(self) -> None:
        """Discard everything staged so far; the unit can no longer commit."""
        self._rolled_back = True
        self._outbox.clear()
        await self.session.rollback()

    async def flush(self) -> None:
        """Write pending ORM changes and forget loaded objects, inside the open transaction.

        The batch consumer calls this after each handler so the next handler of the same
        transaction sees the database as a fresh session would: earlier ORM changes are visible
        to its Core queries (those do not autoflush), and no object an earlier handler loaded is
        served from the identity map instead of the rows. Cheap when nothing is pending.
        """
        session = self.session
        sync = session.sync_session
        if sync.new or sync.dirty or sync.deleted:
            await session.flush()
        if sync.identity_map:
            session.expunge_all()


class UnitOfWorkFactory:
    """Creates units of work bound to one database (and, optionally, one outbox relay)."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        on_outbox_committed: Callable[[], None] | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.on_outbox_committed = on_outbox_committed

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory, on_outbox_committed=self.on_outbox_committed)
