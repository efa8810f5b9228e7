"""The outbox relay: publishes committed outbox rows to Kafka, in id order, at least once.

Protocol per batch: read the oldest unpublished rows, publish them and wait for the broker's
acknowledgement (``acks=all``), then mark them published. A crash before the mark republishes
the batch on restart; consumers deduplicate on ``event_id``, so the effect is exactly once.
No database transaction is held open while talking to Kafka.

Ordering: rows are published in ``id`` order and aiokafka keeps one in-flight request per
partition, so messages of one key (one application) arrive in the order they were committed,
provided the service serialises writes per application (it does, by locking the aggregate row).
One relay runs per service database; a second one would only cause duplicate deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from contracts.envelope import utcnow
from services.kit.logging import get_logger
from services.kit.messaging import Record
from services.kit.tables import OutboxMessage

log = get_logger(__name__)

#: Sends records and returns once the broker acknowledged all of them; raises otherwise.
Publish = Callable[[Sequence[Record]], Awaitable[None]]


def to_record(row: OutboxMessage) -> Record:
    """The Kafka record for an outbox row."""
    return Record(
        topic=row.topic,
        value=row.value,
        key=row.key.encode() if row.key is not None else None,
        headers=tuple((name, value.encode()) for name, value in row.headers),
    )


class OutboxRelay:
    """Publishes a service's outbox; run it with :meth:`start` or drive it with :meth:`run_once`."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        publish: Publish,
        *,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        max_backoff: float = 5.0,
    ) -> None:
        self._session_factory = session_factory
        self._publish = publish
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published_total = 0

    def wake(self) -> None:
        """Hint that rows were just committed; the relay publishes them without waiting a poll."""
        self._wakeup.set()

    @property
    def running(self) -> bool:
        """Whether the background task is alive."""
        return self._task is not None and not self._task.done()

    async def run_once(self) -> int:
        """Publish the whole unpublished backlog now; returns the number of rows published."""
        total = 0
        while True:
            async with self._session_factory() as session:
                rows = (
                    await session.exec(
                        select(OutboxMessage)
                        .where(col(OutboxMessage.published_at).is_(None))
                        .order_by(col(OutboxMessage.id))
                        .limit(self._batch_size)
                    )
                ).all()
            if not rows:
                return total
            await self._publish([to_record(row) for row in rows])
            # The window between the publish above and this mark is where a crash causes a
            # republish; that duplicate is expected and absorbed by idempotent consumers.
            await self._mark_published([row.id for row in rows if row.id is not None])
            total += len(rows)
            self.published_total += len(rows)
            if len(rows) < self._batch_size:
                return total

    async def _mark_published(self, ids: list[int]) -> None:
        async with self._session_factory() as session:
            await session.exec(
                update(OutboxMessage)
                .where(col(OutboxMessage.id).in_(ids))
                .values(published_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            await session.commit()

    async def run(self) -> None:
        """Publish forever: on every wake-up hint, and every ``poll_interval`` regardless."""
        backoff = self._poll_interval
        failing = False
        while True:
            self._wakeup.clear()
            try:
                published = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Rows stay unpublished and are retried; log the first failure of an outage
                # with its traceback, then quietly back off until it recovers.
                if not failing:
                    log.warning("outbox publish failed; will retry", exc_info=exc)
                    failing = True
                backoff = min(backoff * 2, self._max_backoff)
                await asyncio.sleep(backoff)
                continue
            if failing:
                log.info("outbox publishing recovered")
                failing = False
            backoff = self._poll_interval
            if published:
                log.debug("outbox rows published", count=published)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._poll_interval)

    def start(self) -> asyncio.Task[None]:
        """Start :meth:`run` as a background task (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name="outbox-relay")
        return self._task

    async def stop(self) -> None:
        """Cancel the background task and wait for it; unpublished rows stay for the next run."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def pending(self) -> int:
        """How many rows wait for publication."""
        async with self._session_factory() as session:
            result = await session.exec(
                select(func.count())
                .select_from(OutboxMessage)
                .where(col(OutboxMessage.published_at).is_(None))
            )
            return int(result.one())

    async def republish_since(self, since: datetime) -> int:
        """Queue every row created at or after ``since`` for publication again.

        For broker loss (Tansu keeps nothing across a restart): the rows are published again in
        id order and consumers drop what they had already processed. Returns the row count.
        """
        async with self._session_factory() as session:
            result = await session.exec(
                update(OutboxMessage)
                .where(col(OutboxMessage.created_at) >= since)
                .values(published_at=None)
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        self.wake()
        return int(result.rowcount)
