"""The unit of work: one session, one transaction, one commit.

State changes, processed-message marks and outbox rows go through the same
:class:`UnitOfWork`, so they become durable together or not at all. Nothing else in a service
commits: route handlers call :meth:`UnitOfWork.commit` once at the end; the idempotent consumer
commits for its handlers. Leaving the block without committing rolls back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from contracts import catalog
from contracts.envelope import Envelope, utcnow
from services.kit.tables import OutboxMessage, ProcessedMessage


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
        self._outbox_count = 0

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

    def add_outbox(self, envelope: Envelope[Any], topic: str) -> OutboxMessage:
        """Stage ``envelope`` for publication on ``topic`` when (and only if) this unit commits.

        The record key is the envelope subject, so one application's messages stay ordered.
        """
        row = OutboxMessage(
            topic=topic,
            key=envelope.subject,
            value=catalog.encode(envelope),
            headers=[[name, value.decode()] for name, value in envelope.headers()],
            event_id=envelope.event_id,
        )
        self.session.add(row)
        self._outbox_count += 1
        return row

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
        table = ProcessedMessage.__table__  # type: ignore[attr-defined]
        if dialect == "postgresql":
            stmt: Any = pg_insert(table).values(**values).on_conflict_do_nothing()
        elif dialect == "sqlite":
            stmt = sqlite_insert(table).values(**values).on_conflict_do_nothing()
        else:  # pragma: no cover - only the two supported backends reach here
            raise UnitOfWorkError(f"unsupported database dialect {dialect!r}")
        result = await session.exec(stmt)
        return bool(result.rowcount)

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
        await self.session.commit()
        self._committed = True
        if self._outbox_count and self._on_outbox_committed is not None:
            # A hint only: the relay also polls, so a lost wake-up delays, never loses, a message.
            self._on_outbox_committed()

    async def rollback(self) -> None:
        """Discard everything staged so far; the unit can no longer commit."""
        self._rolled_back = True
        await self.session.rollback()


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
