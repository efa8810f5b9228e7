"""Initial schema: the kit tables and the audit ledger.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.db import UTCDateTime
from services.kit.migrations import create_kit_tables_v1, drop_kit_tables_v1
from services.kit.tables import BigIntId

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_kit_tables_v1()
    op.create_table(
        "audit_ledger",
        sa.Column("seq", BigIntId, primary_key=True),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("message_type", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("correlation_id", sa.Uuid(), nullable=False),
        sa.Column("producer", sa.String(length=100), nullable=False),
        sa.Column("actor_kind", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("topic", sa.String(length=249), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_audit_ledger_event_id", "audit_ledger", ["event_id"], unique=True)
    op.create_index("ix_audit_ledger_subject", "audit_ledger", ["subject"])
    op.create_index("ix_audit_ledger_correlation_id", "audit_ledger", ["correlation_id"])


def downgrade() -> None:
    op.drop_table("audit_ledger")
    drop_kit_tables_v1()
