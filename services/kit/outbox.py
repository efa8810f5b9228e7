"""The outbox relay: publishes committed outbox rows to Kafka, in id order, at least once.

Protocol per batch, in one session: read the oldest unpublished rows, publish them and wait for
the broker's acknowledgement of every one (``acks=all``), then mark them published and commit.
A crash before that commit republishes the batch on restart; consumers deduplicate on
``event_id``, so the effect is exactly once.

On PostgreSQL the rows are read ``FOR UPDATE`` and the transaction stays open across the
publish: a second relay on the same database (a replica of the service) waits for the first
one's batch instead of publishing it again, and then continues after it, so replicas neither
duplicate nor reorder each other's messages. Only the outbox rows of the batch are locked;
writers insert new rows undisturbed. On SQLite (one connection per process, one relay) the read
commits before the publish, so the connection is not held while the broker answers.

Wake-ups are debounced: a commit hint starts a cycle after a few milliseconds, so the commits
of concurrent requests share one cycle instead of paying one each.

Ordering: rows are published in ``id`` order and aiokafka keeps one in-flight request per
partition, so messages of one key (one application) arrive in the order they were committed,
provided the service serialises writes per application (it does, by locking the aggregate row).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from contracts.envelope import utcnow
from services.kit.db import UTCDateTime
from services.kit.logging import get_logger
from services.kit.messaging import Record
from services.kit.retry import wait_until_available
from services.kit.tables import OUTBOX

log = get_logger(__name__)

#: Sends records and returns once the broker acknowledged all of them; raises otherwise.
Publish = Callable[[Sequence[Record]], Awaitable[None]]
#: Wraps each batch: what must not run between a batch's publish and its mark waits for it.
Guard = Callable[[], AbstractAsyncContextManager[None]]
#: Told the commit times of rows the broker just acknowledged (for the relay latency metric).
OnPublished = Callable[[Sequence[datetime]], None]

#: Rows per cycle by default: one select, one publish burst, one update, one commit.
DEFAULT_BATCH_SIZE = 1000
#: How long a wake-up hint waits for more commits before the cycle starts (seconds).
DEFAULT_DEBOUNCE = 0.005

# Constant statements (the limit and the ids are parameters), so each is compiled and prepared
# once, whatever the batch size.
_UNPUBLISHED = (
    sa.select(
        OUTBOX.c.id,
        OUTBOX.c.topic,
        OUTBOX.c.key,
        OUTBOX.c.value,
        OUTBOX.c.headers,
        OUTBOX.c.created_at,
    )
    .where(OUTBOX.c.published_at.is_(None))
    .order_by(OUTBOX.c.id)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
_UNPUBLISHED_LOCKED = _UNPUBLISHED.with_for_update()
_MARK_PG = (
    sa.update(OUTBOX)
    .where(OUTBOX.c.id == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.BigInteger))))
    .values(published_at=sa.bindparam("now", type_=UTCDateTime))
)
_MARK = (
    sa.update(OUTBOX)
    .where(OUTBOX.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(published_at=sa.bindparam("now", type_=UTCDateTime))
)


def to_record(row: Any) -> Record:
    """The Kafka record for an outbox row (an ``OutboxMessage`` or a row of its table)."""
    key = row.key
    return Record(
        topic=row.topic,
        value=bytes(row.value),
        key=key.encode() if key is not None else None,
        headers=tuple([(name, value.encode()) for name, value in row.headers]),
    )


def _records(rows: Sequence[Any]) -> list[Record]:
    # The relay's hot loop: rows of _UNPUBLISHED unpacked positionally (cheaper than by name).
    return [
        Record(
            topic,
            bytes(value),
            key.encode() if key is not None else None,
            tuple([(name, text.encode()) for name, text in headers]),
        )
        for _id, topic, key, value, headers, _created_at in rows
    ]


class OutboxRelay:
    """Publishes a service's outbox; run it with :meth:`start` or drive it with :meth:`run_once`."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        publish: Publish,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        poll_interval: float = 0.5,
        max_backoff: float = 5.0,
        debounce: float = DEFAULT_DEBOUNCE,
        on_published: OnPublished | None = None,
        guard: Guard | None = None,
    ) -> None:
        """``guard``, when given, wraps every batch (select, publish, mark, commit)."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._session_factory = session_factory
        self._publish = publish
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._debounce = debounce
        self._on_published = on_published
        self._guard = guard
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published_total = 0
        #: Set while the background loop waits for a hint or its next poll, cleared while it
        #: publishes: a caller (a test) can wait for it instead of guessing with a sleep.
        self.idle = asyncio.Event()

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
            published = await self._publish_batch()
            total += published
            if published < self._batch_size:
                return total

    async def _publish_batch(self) -> int:
        """One cycle: select, publish, mark, commit. Returns the number of rows published."""
        if self._guard is None:
            return await self._batch()
        async with self._guard():
            return await self._batch()

    async def _batch(self) -> int:
        async with self._session_factory() as session:
            hold = session.get_bind().dialect.name == "postgresql"
            connection = await session.connection()
            rows = (
                await connection.execute(
                    _UNPUBLISHED_LOCKED if hold else _UNPUBLISHED, {"limit": self._batch_size}
                )
            ).all()
            if not rows:
                return 0
            if not hold:
                await session.commit()  # SQLite: free the only connection during the publish
            await self._publish(_records(rows))
            # The window between the publish above and this commit is where a crash causes a
            # republish; that duplicate is expected and absorbed by idempotent consumers.
            connection = await session.connection()
            await connection.execute(
                _MARK_PG if hold else _MARK, {"ids": [row[0] for row in rows], "now": utcnow()}
            )
            await session.commit()
        self.published_total += len(rows)
        if self._on_published is not None:
            self._on_published([row[5] for row in rows])
        return len(rows)

    async def run(self) -> None:
        """Publish forever: on every wake-up hint (debounced), and every ``poll_interval``."""
        while True:
            self._wakeup.clear()
            # Rows stay unpublished and are retried: one warning line when an outage starts,
            # one when publishing recovers, and a pause that doubles up to ``max_backoff``.
            published = await wait_until_available(
                self.run_once,
                name="outbox publishing",
                interval=self._poll_interval,
                max_interval=self._max_backoff,
                unavailable="failed",
                recovered="recovered",
            )
            if published:
                log.debug("outbox rows published", count=published)
            woken = False
            self.idle.set()
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll_interval):
                        woken = await self._wakeup.wait()
            finally:
                self.idle.clear()
            if woken and self._debounce > 0:
                # Let the commits racing this one land, so one cycle carries them all.
                await asyncio.sleep(self._debounce)

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
            connection = await session.connection()
            count = await connection.scalar(
                sa.select(sa.func.count())
                .select_from(OUTBOX)
                .where(OUTBOX.c.published_at.is_(None))
            )
            return int(count or 0)

    async def republish_since(self, since: datetime) -> int:
        """Queue every row created at or after ``since`` for publication again.

        For broker loss (Tansu keeps nothing across a restart): the rows are published again in
        id order and consumers drop what they had already processed. Returns the row count.
        """
        async with self._session_factory() as session:
            result: Any = await session.exec(
                sa.update(OUTBOX).where(OUTBOX.c.created_at >= since).values(published_at=None)
            )
            await session.commit()
        self.wake()
        return int(result.rowcount)
