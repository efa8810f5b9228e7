"""The budget waitlist: awards a budget could not cover, opened first come first served when
the budget is topped up.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.db import UTCDateTime

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_INT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "budget_waitlist",
        sa.Column("position", _BIG_INT_ID, nullable=False),
        sa.Column("award_id", sa.String(length=100), nullable=False),
        sa.Column("budget_id", sa.String(length=100), nullable=False),
        sa.Column("application_id", sa.String(length=100), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("correlation_id", sa.String(length=36), nullable=False),
        sa.Column("queued_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("position"),
        sa.UniqueConstraint("award_id"),
    )
    op.create_index(
        "ix_budget_waitlist_budget", "budget_waitlist", ["budget_id", "position"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_budget_waitlist_budget", table_name="budget_waitlist")
    op.drop_table("budget_waitlist")
