"""The reviewer registry, the inbox projection and the applications it has heard of.

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


def upgrade() -> None:
    op.create_table(
        "reviewers",
        sa.Column("reviewer_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("affiliations", sa.JSON(), nullable=False),
        sa.Column("ownership_interests", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("reviewer_id"),
    )
    op.create_table(
        "review_tasks",
        sa.Column("task_id", sa.String(length=100), nullable=False),
        sa.Column("application_id", sa.String(length=100), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("reviewer_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("quorum", sa.JSON(), nullable=True),
        sa.Column("assigned_at", UTCDateTime(), nullable=True),
        sa.Column("due_at", UTCDateTime(), nullable=True),
        sa.Column("reminded_at", UTCDateTime(), nullable=True),
        sa.Column("escalated_at", UTCDateTime(), nullable=True),
        sa.Column("escalated_to", sa.String(length=100), nullable=True),
        sa.Column("escalation_reason", sa.Text(), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("decision", sa.String(length=40), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("information_requested_at", UTCDateTime(), nullable=True),
        sa.Column("information_request", sa.JSON(), nullable=True),
        sa.Column("cancelled_at", UTCDateTime(), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.Column("application_outcome", sa.String(length=20), nullable=True),
        sa.Column("outcome_reasons", sa.JSON(), nullable=False),
        sa.Column("outcome_by", sa.String(length=200), nullable=True),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("task_id"),
    )
    op.create_index("ix_review_tasks_application", "review_tasks", ["application_id"])
    op.create_index("ix_review_tasks_reviewer", "review_tasks", ["reviewer_id", "status", "due_at"])
    op.create_index("ix_review_tasks_status_due", "review_tasks", ["status", "due_at"])
    op.create_table(
        "review_applications",
        sa.Column("application_id", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("ended_by", sa.String(length=200), nullable=True),
        sa.Column("end_event_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("application_id"),
    )


def downgrade() -> None:
    op.drop_table("review_applications")
    op.drop_index("ix_review_tasks_status_due", table_name="review_tasks")
    op.drop_index("ix_review_tasks_reviewer", table_name="review_tasks")
    op.drop_index("ix_review_tasks_application", table_name="review_tasks")
    op.drop_table("review_tasks")
    op.drop_table("reviewers")
