"""Every version of every registry entry, so the registry can be rebuilt at any instant.

Existing entries are recorded as they stand, from their last change on (``recorded``): what
they were before that is not known.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.db import UTCDateTime

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    changes = op.create_table(
        "reviewer_changes",
        sa.Column("change_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reviewer_id", sa.String(length=100), nullable=False),
        sa.Column("change", sa.String(length=20), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        sa.Column("profile", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("change_id"),
    )
    op.create_index(
        "ix_reviewer_changes_reviewer", "reviewer_changes", ["reviewer_id", "change_id"]
    )
    reviewers = sa.table(
        "reviewers",
        sa.column("reviewer_id", sa.String()),
        sa.column("name", sa.String()),
        sa.column("roles", sa.JSON()),
        sa.column("affiliations", sa.JSON()),
        sa.column("ownership_interests", sa.JSON()),
        sa.column("declared_identifiers", sa.JSON()),
        sa.column("active", sa.Boolean()),
        sa.column("updated_at", UTCDateTime()),
        sa.column("updated_by", sa.String()),
    )
    rows = op.get_bind().execute(sa.select(reviewers)).mappings().all()
    if rows:
        op.bulk_insert(
            changes,
            [
                {
                    "reviewer_id": row["reviewer_id"],
                    "change": "recorded",
                    "changed_at": row["updated_at"],
                    "changed_by": row["updated_by"],
                    "profile": {
                        "reviewer_id": row["reviewer_id"],
                        "name": row["name"],
                        "roles": list(row["roles"]),
                        "affiliations": list(row["affiliations"]),
                        "ownership_interests": list(row["ownership_interests"]),
                        "declared_identifiers": list(row["declared_identifiers"]),
                        "active": bool(row["active"]),
                    },
                }
                for row in rows
            ],
        )


def downgrade() -> None:
    op.drop_index("ix_reviewer_changes_reviewer", table_name="reviewer_changes")
    op.drop_table("reviewer_changes")
