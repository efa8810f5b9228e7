"""Tables of the zones service database.

- ``zones``: the catalogue: each zone's name, city, sectors and whether it takes new requests;
- ``zone_capacity``: one counter row per zone and unit type. The capacity invariant
  ``held + allocated <= capacity`` is its CHECK constraint, and every change of use is one
  conditional UPDATE of this row, so the database (not an isolation level) refuses
  over-allocation, whatever runs concurrently;
- ``zone_holds``: one row per (allocation id, unit type), the idempotency key of zone commands:
  its zone, quantity and state (waitlisted, held, allocated, released, expired). Its id is the
  arrival order of the waitlist;
- ``zone_requests``: every allocation id answered, and how (placed or refused), so a repeated
  command is answered once.

Plus the kit's ``outbox`` and ``processed_messages`` (see :func:`metadata`).
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from services.kit.db import UTCDateTime
from services.kit.migrations import service_metadata
from services.kit.tables import BigIntId

#: The capacity invariant, as the database states it.
CAPACITY_CHECK = "held >= 0 AND allocated >= 0 AND held + allocated <= capacity"


class ZoneRecord(SQLModel, table=True):
    """A technology zone of the catalogue."""

    __tablename__ = "zones"

    id: str = Field(sa_column=sa.Column(sa.String(100), primary_key=True))
    name: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    city: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    #: Sector values the zone suits; empty suits every sector.
    sectors: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    #: False once deactivated: no new holds; existing holds and allocations stand.
    active: bool = Field(sa_column=sa.Column(sa.Boolean(), nullable=False))
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class ZoneCapacity(SQLModel, table=True):
    """Capacity and use of one unit type in one zone: the counter row of the invariant."""

    __tablename__ = "zone_capacity"
    __table_args__ = (sa.CheckConstraint(CAPACITY_CHECK, name="ck_zone_capacity_within"),)

    zone_id: str = Field(
        sa_column=sa.Column(sa.String(100), sa.ForeignKey("zones.id"), primary_key=True)
    )
    unit_type: str = Field(sa_column=sa.Column(sa.String(40), primary_key=True))
    capacity: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    held: int = Field(default=0, sa_column=sa.Column(sa.Integer(), nullable=False))
    allocated: int = Field(default=0, sa_column=sa.Column(sa.Integer(), nullable=False))


class ZoneHold(SQLModel, table=True):
    """One (allocation id, unit type): where its units are and in which state."""

    __tablename__ = "zone_holds"
    __table_args__ = (
        sa.UniqueConstraint("allocation_id", "unit_type", name="uq_zone_holds_allocation_unit"),
        sa.CheckConstraint("quantity > 0", name="ck_zone_holds_quantity"),
        # The waitlist, head first, and the holds of a zone.
        sa.Index("ix_zone_holds_zone_state", "zone_id", "unit_type", "state", "priority", "id"),
        # The expiry sweep.
        sa.Index("ix_zone_holds_state_expires", "state", "expires_at"),
    )

    #: Arrival order: ties of priority on the waitlist are served by it.
    id: int | None = Field(default=None, sa_column=sa.Column(BigIntId, primary_key=True))
    allocation_id: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    unit_type: str = Field(sa_column=sa.Column(sa.String(40), nullable=False))
    application_id: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    firm_id: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    zone_id: str = Field(
        sa_column=sa.Column(sa.String(100), sa.ForeignKey("zones.id"), nullable=False)
    )
    quantity: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    state: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    priority: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    #: How long a hold lasts once taken (also when it is taken later, from the waitlist).
    hold_seconds: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    expires_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    #: The application's journey id, for the messages about this record.
    correlation_id: uuid.UUID = Field(sa_column=sa.Column(sa.Uuid(), nullable=False))
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class ZoneRequest(SQLModel, table=True):
    """An allocation id that was answered: the idempotency key of hold and allocate commands.

    Inserted first, insert-or-ignore: a repeated or concurrently redelivered command finds it
    (waiting for the first one's commit) and changes nothing, whatever its answer was, a
    refusal included.
    """

    __tablename__ = "zone_requests"

    allocation_id: str = Field(sa_column=sa.Column(sa.String(100), primary_key=True))
    application_id: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    #: ``placed`` (held, allocated or waitlisted) or ``refused``.
    outcome: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    reason_code: str | None = Field(default=None, sa_column=sa.Column(sa.String(40), nullable=True))
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


ZONES: sa.Table = ZoneRecord.__table__  # type: ignore[attr-defined]
CAPACITY: sa.Table = ZoneCapacity.__table__  # type: ignore[attr-defined]
HOLDS: sa.Table = ZoneHold.__table__  # type: ignore[attr-defined]
REQUESTS: sa.Table = ZoneRequest.__table__  # type: ignore[attr-defined]

#: This service's own tables (the kit tables are added by :func:`metadata`).
TABLES: tuple[sa.Table, ...] = (ZONES, CAPACITY, HOLDS, REQUESTS)


def metadata() -> sa.MetaData:
    """The service's full schema: the Alembic autogenerate target."""
    return service_metadata(*TABLES)
