"""Budgets, the double-entry ledger (balances with their CHECK, two-legged transfers), awards,
tranches and payments.

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

# Spelled out rather than imported from the models, so this revision never changes. Amounts
# are whole numbers of ten-thousandths (BIGINT), exact on SQLite as on PostgreSQL.
_BIG_INT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('budgets',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('incentive_type', sa.String(length=40), nullable=False),
    sa.Column('fiscal_year', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('incentive_type', 'fiscal_year', name='uq_budgets_type_year')
    )
    op.create_table('ledger_accounts',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('balance', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("balance >= 0 OR kind = 'funding'", name='ck_ledger_accounts_balance'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('awards',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('application_id', sa.String(length=100), nullable=False),
    sa.Column('firm_id', sa.String(length=100), nullable=False),
    sa.Column('budget_id', sa.String(length=100), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('correlation_id', sa.String(length=36), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['budget_id'], ['budgets.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('ledger_transfers',
    sa.Column('id', _BIG_INT_ID, nullable=False),
    sa.Column('cause', sa.String(length=20), nullable=False),
    sa.Column('debit', sa.String(length=200), nullable=False),
    sa.Column('credit', sa.String(length=200), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('budget_id', sa.String(length=100), nullable=False),
    sa.Column('award_id', sa.String(length=100), nullable=True),
    sa.Column('sequence', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=250), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint('amount > 0', name='ck_ledger_transfers_positive'),
    sa.CheckConstraint('debit <> credit', name='ck_ledger_transfers_two_accounts'),
    sa.ForeignKeyConstraint(['credit'], ['ledger_accounts.id'], ),
    sa.ForeignKeyConstraint(['debit'], ['ledger_accounts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_ledger_transfers_award', 'ledger_transfers', ['award_id', 'id'], unique=False)
    op.create_index('ix_ledger_transfers_budget', 'ledger_transfers', ['budget_id', 'id'], unique=False)
    op.create_table('tranches',
    sa.Column('award_id', sa.String(length=100), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('milestone', sa.String(length=200), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['award_id'], ['awards.id'], ),
    sa.PrimaryKeyConstraint('award_id', 'sequence')
    )
    op.create_table('payments',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('award_id', sa.String(length=100), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('beneficiary', sa.String(length=100), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', UTCDateTime(), nullable=False),
    sa.Column('rail_reference', sa.String(length=200), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['award_id', 'sequence'], ['tranches.award_id', 'tranches.sequence'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('award_id', 'sequence', name='uq_payments_tranche')
    )
    op.create_index('ix_payments_state', 'payments', ['state', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_index("ix_payments_state", table_name="payments")
    op.drop_table("payments")
    op.drop_table("tranches")
    op.drop_index("ix_ledger_transfers_budget", table_name="ledger_transfers")
    op.drop_index("ix_ledger_transfers_award", table_name="ledger_transfers")
    op.drop_table("ledger_transfers")
    op.drop_table("awards")
    op.drop_table("ledger_accounts")
    op.drop_table("budgets")
