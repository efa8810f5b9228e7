"""Eligibility decisions, one per application revision.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.db import UTCDateTime

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "eligibility_decisions",
        sa.Column("application_id", sa.String(length=100), nullable=False),
        sa.Column("application_revision", sa.Integer(), nullable=False),
        sa.Column("firm_id", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("rule_set_id", sa.String(length=100), nullable=False),
        sa.Column("rule_set_version", sa.String(length=50), nullable=False),
        sa.Column("rule_set_sha256", sa.String(length=64), nullable=False),
        sa.Column("rule_set_effective_from", sa.Date(), nullable=False),
        sa.Column("rule_results", sa.JSON(), nullable=False),
        sa.Column("missing_fields", sa.JSON(), nullable=False),
        sa.Column("submitted_at", UTCDateTime(), nullable=False),
        sa.Column("assessed_at", UTCDateTime(), nullable=False),
        sa.Column("source_event_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("correlation_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("application_id", "application_revision"),
    )
    op.create_index(
        "ix_eligibility_decisions_rule_set",
        "eligibility_decisions",
        ["rule_set_id", "rule_set_version"],
    )


def downgrade() -> None:
    op.drop_index("ix_eligibility_decisions_rule_set", table_name="eligibility_decisions")
    op.drop_table("eligibility_decisions")
