"""Zones, their capacity counters (the invariant as a CHECK), holds and answered requests.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.db import UTCDateTime

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from the models, so this revision never changes.
_BIG_INT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "zones",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("city", sa.String(length=100), nullable=False),
        sa.Column("sectors", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "zone_capacity",
        sa.Column("zone_id", sa.String(length=100), nullable=False),
        sa.Column("unit_type", sa.String(length=40), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("allocated", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "held >= 0 AND allocated >= 0 AND held + allocated <= capacity",
            name="ck_zone_capacity_within",
        ),
        sa.ForeignKeyConstraint(["zone_id"], ["zones.id"]),
        sa.PrimaryKeyConstraint("zone_id", "unit_type"),
    )
    op.create_table(
        "zone_holds",
        sa.Column("id", _BIG_INT_ID, nullable=False),
        sa.Column("allocation_id", sa.String(length=100), nullable=False),
        sa.Column("unit_type", sa.String(length=40), nullable=False),
        sa.Column("application_id", sa.String(length=100), nullable=False),
        sa.Column("firm_id", sa.String(length=100), nullable=False),
        sa.Column("zone_id", sa.String(length=100), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("hold_seconds", sa.Integer(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("correlation_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_zone_holds_quantity"),
        sa.ForeignKeyConstraint(["zone_id"], ["zones.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("allocation_id", "unit_type", name="uq_zone_holds_allocation_unit"),
    )
    op.create_index(
        "ix_zone_holds_zone_state",
        "zone_holds",
        ["zone_id", "unit_type", "state", "priority", "id"],
    )
    op.create_index("ix_zone_holds_state_expires", "zone_holds", ["state", "expires_at"])
    op.create_table(
        "zone_requests",
        sa.Column("allocation_id", sa.String(length=100), nullable=False),
        sa.Column("application_id", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("reason_code", sa.String(length=40), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("allocation_id"),
    )


def downgrade() -> None:
    op.drop_table("zone_requests")
    op.drop_index("ix_zone_holds_state_expires", table_name="zone_holds")
    op.drop_index("ix_zone_holds_zone_state", table_name="zone_holds")
    op.drop_table("zone_holds")
    op.drop_table("zone_capacity")
    op.drop_table("zones")
