"""Tables of the audit service database."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from contracts.envelope import utcnow
from services.kit.db import UTCDateTime
from services.kit.migrations import service_metadata
from services.kit.tables import BigIntId


class LedgerEntry(SQLModel, table=True):
    """One message as it was received, in arrival order. Rows are only ever inserted.

    ``envelope`` keeps the record value byte for byte, so a later hash chain and replay work on
    exactly what was on the wire, not on a re-serialisation.
    """

    __tablename__ = "audit_ledger"

    seq: int | None = Field(
        default=None,
        sa_column=sa.Column(BigIntId, primary_key=True),
        description="Arrival order in this ledger.",
    )
    event_id: uuid.UUID = Field(unique=True, index=True, description="The envelope's event id.")
    message_type: str = Field(max_length=100, description="The envelope's type.")
    subject: str = Field(max_length=100, index=True, description="The application id.")
    correlation_id: uuid.UUID = Field(index=True, description="The application's journey.")
    producer: str = Field(max_length=100, description="The producing service.")
    actor_kind: str = Field(max_length=20, description="Who acted: firm, reviewer, system...")
    actor_id: str = Field(max_length=200, description="The acting principal's id.")
    occurred_at: datetime = Field(
        sa_column=sa.Column(UTCDateTime, nullable=False), description="When it happened."
    )
    topic: str = Field(max_length=249, description="Where it was consumed.")
    partition: int = Field(description="Its partition.")
    offset: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    envelope: bytes = Field(
        sa_column=sa.Column(sa.LargeBinary, nullable=False),
        description="The record value exactly as received.",
    )
    recorded_at: datetime = Field(
        default_factory=utcnow,
        sa_column=sa.Column(UTCDateTime, nullable=False),
        description="When the ledger stored it.",
    )


#: This service's own tables (the kit tables are added by :func:`metadata`).
TABLES: tuple[sa.Table, ...] = (LedgerEntry.__table__,)  # type: ignore[attr-defined]


def metadata() -> sa.MetaData:
    """The service's full schema: the Alembic autogenerate target."""
    return service_metadata(*TABLES)
