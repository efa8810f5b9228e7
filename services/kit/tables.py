"""Tables every service database has: the transactional outbox and the processed-message marks."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from contracts.envelope import utcnow
from services.kit.db import UTCDateTime

#: 64-bit ids on PostgreSQL; SQLite only autoincrements a column declared exactly INTEGER.
BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class OutboxMessage(SQLModel, table=True):
    """A message written in the same transaction as the state change that produced it.

    The relay publishes unpublished rows in ``id`` order and then sets ``published_at``. Rows
    are kept after publication: they are the replay source after a broker loss.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        # The relay's hot query: the unpublished tail in id order.
        sa.Index(
            "ix_outbox_unpublished",
            "id",
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        ),
        sa.Index("ix_outbox_created_at", "created_at"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BigIntId, primary_key=True))
    topic: str = Field(max_length=249, description="Destination topic.")
    key: str | None = Field(
        default=None, max_length=200, description="Record key: the envelope subject."
    )
    value: bytes = Field(
        sa_column=sa.Column(sa.LargeBinary, nullable=False),
        description="Record value: the encoded envelope.",
    )
    headers: list[list[str]] = Field(
        default_factory=list,
        sa_column=sa.Column(sa.JSON, nullable=False),
        description="Record headers as [name, utf-8 value] pairs.",
    )
    event_id: uuid.UUID = Field(description="The envelope's event id, for operators and replay.")
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    published_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime, nullable=True)
    )


class ProcessedMessage(SQLModel, table=True):
    """Marks a message as handled by a consumer; written in the handler's own transaction."""

    __tablename__ = "processed_messages"

    consumer: str = Field(primary_key=True, max_length=200)
    event_id: uuid.UUID = Field(primary_key=True)
    processed_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )


#: The Core tables, for the hot paths that insert and select plain rows (no ORM objects).
OUTBOX: sa.Table = OutboxMessage.__table__  # type: ignore[attr-defined]
PROCESSED: sa.Table = ProcessedMessage.__table__  # type: ignore[attr-defined]

KIT_TABLES: tuple[sa.Table, ...] = (OUTBOX, PROCESSED)
