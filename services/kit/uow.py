"""The unit of work: one session, one transaction, one commit.

State changes, processed-message marks and outbox rows go through the same
:class:`UnitOfWork`, so they become durable together or not at all. Nothing else in a service
commits: route handlers call :meth:`UnitOfWork.commit` once at the end; the idempotent consumer
commits for its handlers (once per batch of messages). Leaving the block without committing
rolls back.

Writes can be *staged* instead of executed: :meth:`UnitOfWork.insert`, :meth:`insert_once` and
:meth:`upsert` collect rows, and :meth:`commit` writes each table's rows with one multi-row
statement (before the outbox rows, in the same transaction). A batch of messages then costs a
few statements in all, instead of a few per message: that is what makes a consumer fast.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY as pg_array
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from contracts import catalog
from contracts.envelope import Envelope, utcnow
from services.kit import tracing
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
#: SQLite has no arrays: an executemany, which SQLAlchemy pages into multi-row VALUES.
_MARK_MANY_SQLITE = insert_ignore("sqlite", PROCESSED).returning(PROCESSED.c.event_id)
#: SQLite's IN lists are read in chunks well under its variable limit.
_SQLITE_CHUNK = 300
#: Largest multi-row insert-or-ignore statement (the one staged write that needs RETURNING, so
#: multi-row VALUES rather than executemany). Larger sets are written in several statements,
#: and every statement has a power-of-two row count: a statement's text depends on its row
#: count, and PostgreSQL prepares each text once per connection, so few distinct sizes keep
#: the prepared-statement cache warm whatever the batch sizes are.
_MAX_ROWS_PER_STATEMENT = 256

#: How a staged row is written (see :meth:`UnitOfWork.insert`, ``insert_once``, ``upsert``).
_Mode = Literal["insert", "insert_once", "upsert"]


@dataclass
class _StagedTable:
    """Rows staged for one table and one way of writing them, in staging order."""

    table: sa.Table
    mode: _Mode
    key: tuple[str, ...]
    #: Plain inserts: every row. insert_once/upsert: one row per key (first or last staged).
    rows: list[dict[str, Any]] = field(default_factory=list)
    by_key: dict[tuple[Any, ...], int] = field(default_factory=dict)
    #: insert_once: the keys the database inserted (filled by the flush).
    inserted: set[tuple[Any, ...]] = field(default_factory=set)


def _power_of_two_chunks(rows: Sequence[dict[str, Any]]) -> Iterable[Sequence[dict[str, Any]]]:
    """``rows`` in consecutive chunks whose sizes are powers of two (largest first)."""
    start, left = 0, len(rows)
    while left:
        size = min(_MAX_ROWS_PER_STATEMENT, 1 << (left.bit_length() - 1))
        yield rows[start : start + size]
        start, left = start + size, left - size


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
        #: Outbox rows that depend on an insert_once row: (outbox index, staged table, key).
        self._outbox_conditions: list[tuple[int, _StagedTable, tuple[Any, ...]]] = []
        self._staged: dict[tuple[str, _Mode, tuple[str, ...]], _StagedTable] = {}
        #: Scratch space of this transaction for the handlers: what a batch handler's
        #: ``preload`` read (and locked), what an earlier message of the batch decided. A new
        #: unit of work (a retry, a split batch) starts empty, so nothing leaks from a rolled
        #: back transaction.
        self.memo: dict[Any, Any] = {}
        #: While set, :meth:`commit` refuses with this reason. The batch consumer sets it around
        #: its handlers: a handler committing mid-batch would make the batch's processed marks
        #: durable before the later handlers ran, and a retry would then skip (lose) them.
        self.commit_refused: str | None = None
        self._before_commit: list[Callable[[], Awaitable[None]]] = []

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
        self._outbox.append(self._outbox_row(envelope, topic))

    @staticmethod
    def _outbox_row(envelope: Envelope[Any], topic: str) -> dict[str, Any]:
        headers = [[name, value.decode()] for name, value in envelope.headers()]
        if tracing.enabled():
            # The writer's span context, kept with the row: a republish sends the same bytes.
            headers.extend([name, value] for name, value in tracing.trace_headers())
        return {
            "topic": topic,
            "key": envelope.subject,
            "value": catalog.encode(envelope),
            "headers": headers,
            "event_id": envelope.event_id,
            "created_at": utcnow(),
            "published_at": None,
        }

    def before_commit(self, write: Callable[[], Awaitable[None]]) -> None:
        """Run ``write`` at :meth:`commit`, before the staged rows and the outbox are written.

        For a batch handler that decides in memory what its messages change (from rows its
        ``preload`` locked) and writes the result once: ``write`` runs in this transaction,
        once, in the order registered, and a rolled-back unit forgets it.
        """
        if self._session is None:
            raise UnitOfWorkError("use the unit of work inside `async with`")
        self._before_commit.append(write)

    # --- staged writes --------------------------------------------------------------------------

    def insert(self, table: sa.Table, row: Mapping[str, Any]) -> None:
        """Stage a plain INSERT of ``row`` into ``table``, written at commit.

        All rows staged for a table are written with one multi-row statement (per table, in
        the order the tables were first staged; before the outbox rows). Staged rows are not
        visible to queries of this transaction before the commit: a handler that must read what
        an earlier message of the batch wrote keeps it in :attr:`memo`.
        """
        self._stage(table, "insert", (), row)

    def insert_once(
        self,
        table: sa.Table,
        row: Mapping[str, Any],
        *,
        key: Sequence[str],
        outbox: Iterable[tuple[Envelope[Any], str]] = (),
    ) -> None:
        """Stage an insert-or-ignore of ``row``: nothing happens if its ``key`` already exists.

        ``key`` names the columns of a unique constraint. The ``outbox`` messages are published
        only if this row is new (an event that records the row's creation): when the key
        exists in the table, or an earlier row of this unit staged it, the row and its messages
        are dropped. They keep their place among the unit's outbox rows.
        """
        staged = self._stage(table, "insert_once", tuple(key), row)
        if staged is None:  # the key was staged before: this one is the duplicate
            return
        values = tuple(row[name] for name in staged.key)
        for envelope, topic in outbox:
            self._outbox_conditions.append((len(self._outbox), staged, values))
            self._outbox.append(self._outbox_row(envelope, topic))

    def upsert(self, table: sa.Table, row: Mapping[str, Any], *, key: Sequence[str]) -> None:
        """Stage an insert of ``row`` that, if its ``key`` exists, updates the other columns.

        Rows carry absolute values (what the row should hold now, computed by the handler from
        what it loaded): when several rows of one unit have the same key, the last one wins.
        """
        self._stage(table, "upsert", tuple(key), row)

    def _stage(
        self, table: sa.Table, mode: _Mode, key: tuple[str, ...], row: Mapping[str, Any]
    ) -> _StagedTable | None:
        if self._session is None:
            raise UnitOfWorkError("use the unit of work inside `async with`")
        group = (table.fullname, mode, key)
        staged = self._staged.get(group)
        if staged is None:
            if mode != "insert" and not key:
                raise UnitOfWorkError(f"{mode} needs the key columns of a unique constraint")
            staged = self._staged[group] = _StagedTable(table, mode, key)
        if mode == "insert":
            staged.rows.append(dict(row))
            return staged
        values = tuple(row[name] for name in key)
        at = staged.by_key.get(values)
        if at is None:
            staged.by_key[values] = len(staged.rows)
            staged.rows.append(dict(row))
            return staged
        if mode == "upsert":
            staged.rows[at] = dict(row)
            return staged
        return None

    @property
    def staged_count(self) -> int:
        """How many rows are staged (after collapsing repeated keys), all tables together."""
        return sum(len(staged.rows) for staged in self._staged.values())

    async def _flush_staged(self) -> None:
        """Write every staged row: one multi-row statement per table (and row-count chunk)."""
        if not self._staged:
            return
        session = self.session
        sync = session.sync_session
        if sync.new or sync.dirty or sync.deleted:
            # ORM changes first: a staged row may refer to a row added through the session.
            await session.flush()
        connection = await session.connection()
        dialect = connection.dialect.name
        for staged in self._staged.values():
            if staged.mode != "insert_once":
                # One executemany: a single statement text, pipelined by the driver.
                statement = _staged_statement(staged, dialect, staged.rows)
                await connection.execute(statement, staged.rows)
                continue
            # RETURNING needs multi-row VALUES, whose text depends on the row count.
            for chunk in _power_of_two_chunks(staged.rows):
                statement = _staged_statement(staged, dialect, chunk)
                result = await connection.execute(statement, list(chunk))
                staged.inserted.update(tuple(row) for row in result)
        if self._outbox_conditions:
            dropped = {
                index
                for index, staged, values in self._outbox_conditions
                if values not in staged.inserted
            }
            if dropped:
                self._outbox = [row for i, row in enumerate(self._outbox) if i not in dropped]
        self._staged.clear()
        self._outbox_conditions.clear()

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
        # Executemany with RETURNING: SQLAlchemy writes it as multi-row VALUES pages of one
        # cached statement ("insertmanyvalues"); `.values(rows)` would compile every batch.
        connection = await session.connection()
        rows = [{"consumer": consumer, "event_id": e, "processed_at": now} for e in ordered]
        return {row[0] for row in await connection.execute(_MARK_MANY_SQLITE, rows)}

    async def load_many(
        self, table: sa.Table, column: str, keys: Collection[Any], *, lock: bool = False
    ) -> list[sa.Row[Any]]:
        """The rows of ``table`` whose ``column`` is one of ``keys``: one statement per batch.

        For a batch handler's ``preload``. ``lock`` takes the rows' locks until the transaction
        ends (``FOR UPDATE``, in key order so concurrent batches lock in the same order; SQLite
        has one writer at a time and needs no row locks). Keys without a row are simply absent,
        and nothing locks them: create rows that concurrent writers may also create with
        :meth:`upsert` or :meth:`insert_once`.
        """
        if not keys:
            return []
        connection = await self.session.connection()
        target = table.c[column]
        ordered = sorted(set(keys))
        if connection.dialect.name == "postgresql":
            # One constant text for every batch size: prepared once per connection.
            stmt = (
                sa.select(table)
                .where(target == sa.any_(sa.bindparam("keys", type_=pg_array(target.type))))
                .order_by(target)
            )
            if lock:
                stmt = stmt.with_for_update()
            return list(await connection.execute(stmt, {"keys": ordered}))
        found: list[sa.Row[Any]] = []
        for start in range(0, len(ordered), _SQLITE_CHUNK):
            chunk = ordered[start : start + _SQLITE_CHUNK]
            found.extend(await connection.execute(sa.select(table).where(target.in_(chunk))))
        return found

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
        writes, self._before_commit = self._before_commit, []
        for write in writes:
            await write()
        await self._flush_staged()
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
        self._before_commit.clear()
        self._outbox.clear()
        self._outbox_conditions.clear()
        self._staged.clear()
        self.memo.clear()
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


def _staged_statement(staged: _StagedTable, dialect: str, rows: Sequence[dict[str, Any]]) -> Any:
    """The INSERT for a chunk of staged rows (executed with the rows as executemany)."""
    table = staged.table
    if staged.mode == "insert":
        return sa.insert(table)
    if dialect == "postgresql":
        stmt: Any = pg_insert(table)
    elif dialect == "sqlite":
        stmt = sqlite_insert(table)
    else:  # pragma: no cover - only the two supported backends reach here
        raise UnitOfWorkError(f"unsupported database dialect {dialect!r}")
    if staged.mode == "insert_once":
        return stmt.on_conflict_do_nothing(index_elements=list(staged.key)).returning(
            *(table.c[name] for name in staged.key)
        )
    updated = {name for row in rows for name in row} - set(staged.key)
    return stmt.on_conflict_do_update(
        index_elements=list(staged.key),
        set_={name: stmt.excluded[name] for name in sorted(updated)},
    )


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
