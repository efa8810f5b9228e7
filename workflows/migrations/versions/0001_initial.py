"""Initial schema: the kit's outbox and processed-message tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from services.kit.migrations import create_kit_tables_v1, drop_kit_tables_v1

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_kit_tables_v1()


def downgrade() -> None:
    drop_kit_tables_v1()
