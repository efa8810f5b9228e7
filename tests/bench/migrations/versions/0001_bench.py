"""Benchmark schema: the kit's outbox and processed-message tables, and the hop's state.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.migrations import create_kit_tables_v1, drop_kit_tables_v1

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_kit_tables_v1()
    op.create_table(
        "bench_state",
        sa.Column("subject", sa.String(length=100), primary_key=True),
        sa.Column("events", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("bench_state")
    drop_kit_tables_v1()
