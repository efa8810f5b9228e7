"""Tables of the applications service database.

- ``applications``: one row per application: its content (draft or last submitted revision)
  and the status view the projection keeps up to date;
- ``application_timeline``: every status change and notable fact, with time, actor and reason;
  keyed by the event id, so a fact is recorded once;
- ``idempotency_keys``: the ``Idempotency-Key`` of each state-changing request, with a
  fingerprint of the request, so a retry replays instead of acting twice.

Plus the kit's ``outbox`` and ``processed_messages`` (see :func:`metadata`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from services.kit.db import UTCDateTime
from services.kit.migrations import service_metadata
from services.kit.tables import BigIntId


class ApplicationRecord(SQLModel, table=True):
    """An application: a firm's draft, or its submitted content plus the projected status."""

    __tablename__ = "applications"
    __table_args__ = (
        # Listing a firm's applications, newest first, page by page (keyset pagination).
        sa.Index("ix_applications_firm_created", "firm_id", "created_at", "id"),
        # Staff listings across firms.
        sa.Index("ix_applications_created", "created_at", "id"),
    )

    id: str = Field(sa_column=sa.Column(sa.String(100), primary_key=True))
    firm_id: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    created_by: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    #: The application's journey id: the correlation id of every message about it.
    correlation_id: uuid.UUID = Field(sa_column=sa.Column(sa.Uuid(), nullable=False))
    status: str = Field(sa_column=sa.Column(sa.String(40), nullable=False))
    #: When the fact that set :attr:`status` happened (the projection orders facts by it).
    status_changed_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    status_reasons: list[str] = Field(
        default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False)
    )
    #: 0 for a draft, 1 once submitted, +1 per amendment.
    revision: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    #: The draft (possibly partial) or the current revision's complete content, as JSON.
    content: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON(), nullable=False))
    #: The latest ``eligibility.assessed`` payload of the latest revision, as JSON.
    eligibility: dict[str, Any] | None = Field(
        default=None, sa_column=sa.Column(sa.JSON(), nullable=True)
    )
    #: The open information request (``domain.InformationRequest`` as JSON).
    information_request: dict[str, Any] | None = Field(
        default=None, sa_column=sa.Column(sa.JSON(), nullable=True)
    )
    #: The offer and what followed from it (``awards.AwardView`` as JSON), once an offer is made.
    award: dict[str, Any] | None = Field(
        default=None, sa_column=sa.Column(sa.JSON(), nullable=True)
    )
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    submitted_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )


class TimelineEntry(SQLModel, table=True):
    """One entry of an application's timeline."""

    __tablename__ = "application_timeline"
    __table_args__ = (
        sa.Index("ix_application_timeline_application", "application_id", "occurred_at"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BigIntId, primary_key=True))
    application_id: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    #: The event recorded (or a local id for entries that are not events, like draft creation).
    event_id: uuid.UUID = Field(sa_column=sa.Column(sa.Uuid(), nullable=False, unique=True))
    event_type: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    occurred_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    #: The status the entry moved the application to; null when the status did not change.
    status: str | None = Field(default=None, sa_column=sa.Column(sa.String(40), nullable=True))
    actor_kind: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    actor_id: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    actor_firm_id: str | None = Field(
        default=None, sa_column=sa.Column(sa.String(100), nullable=True)
    )
    summary: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    reasons: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    #: Workflow mechanics (reminders, escalations) shown to program staff only.
    staff_only: bool = Field(default=False, sa_column=sa.Column(sa.Boolean(), nullable=False))


class IdempotencyKey(SQLModel, table=True):
    """A firm's ``Idempotency-Key`` and the request it was first used for."""

    __tablename__ = "idempotency_keys"

    firm_id: str = Field(sa_column=sa.Column(sa.String(100), primary_key=True))
    key: str = Field(sa_column=sa.Column(sa.String(200), primary_key=True))
    #: ``submit``, ``amend`` or ``withdraw``.
    operation: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    #: SHA-256 of the operation, the target and the canonical request body.
    fingerprint: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    application_id: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    #: The status code of the first response, repeated on every replay.
    status_code: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


#: This service's own tables (the kit tables are added by :func:`metadata`).
TABLES: tuple[sa.Table, ...] = (
    ApplicationRecord.__table__,  # type: ignore[attr-defined]
    TimelineEntry.__table__,  # type: ignore[attr-defined]
    IdempotencyKey.__table__,  # type: ignore[attr-defined]
)


def metadata() -> sa.MetaData:
    """The service's full schema: the Alembic autogenerate target."""
    return service_metadata(*TABLES)
