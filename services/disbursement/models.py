"""Tables of the disbursement service database.

- ``budgets``: a program budget per incentive type and fiscal year, in one currency;
- ``ledger_accounts``: one balance row per account. Its CHECK is the rule that no account
  except a budget's funding source goes negative, and every balance changes by one
  conditional UPDATE;
- ``ledger_transfers``: every movement of money, both legs in one row (the debited and the
  credited account and one positive amount), so every transfer sums to zero by construction,
  with its cause and actor;
- ``awards`` and ``tranches``: an award's total, state and tranche schedule;
- ``budget_waitlist``: awards a budget could not cover, first come first served: a top-up (or
  the budget's creation) opens them in order while the budget covers the next one;
- ``payments``: one row per tranche (unique), whose id is generated and stored before the rail
  is called and is the rail's ``Idempotency-Key``.

Amounts are exact integers of ten-thousandths (:class:`Amount`), never floats.

Plus the kit's ``outbox`` and ``processed_messages`` (see :func:`metadata`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from services.kit.db import UTCDateTime
from services.kit.migrations import service_metadata
from services.kit.tables import BigIntId


class Amount(TypeDecorator[Decimal]):
    """An exact amount stored as a whole number of ten-thousandths (four decimals).

    SQLite keeps NUMERIC values as binary floats, so balances, their CHECK and the conditional
    UPDATEs would compute in floating point there; integers are exact on both databases. The
    range is :data:`~services.disbursement.domain.MAX_AMOUNT`.
    """

    impl = sa.BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | int | None, dialect: Any) -> int | None:
        if value is None:
            return None
        scaled = Decimal(value).scaleb(AMOUNT_DECIMALS)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{value} has more than {AMOUNT_DECIMALS} decimals")
        return int(scaled)

    def process_result_value(self, value: int | None, dialect: Any) -> Decimal | None:
        return None if value is None else Decimal(value).scaleb(-AMOUNT_DECIMALS)


#: Decimals every stored amount keeps (as :mod:`contracts.money` allows).
AMOUNT_DECIMALS = 4
AMOUNT = Amount()
#: The ledger's rule, as the database states it.
BALANCE_CHECK = "balance >= 0 OR kind = 'funding'"


class Budget(SQLModel, table=True):
    """A program budget: one incentive type, one fiscal year, one currency."""

    __tablename__ = "budgets"
    __table_args__ = (
        sa.UniqueConstraint("incentive_type", "fiscal_year", name="uq_budgets_type_year"),
    )

    id: str = Field(sa_column=sa.Column(sa.String(100), primary_key=True))
    incentive_type: str = Field(sa_column=sa.Column(sa.String(40), nullable=False))
    fiscal_year: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    currency: str = Field(sa_column=sa.Column(sa.String(3), nullable=False))
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class LedgerAccount(SQLModel, table=True):
    """The balance of one account (budget funding/available, award reserved/paid)."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (sa.CheckConstraint(BALANCE_CHECK, name="ck_ledger_accounts_balance"),)

    id: str = Field(sa_column=sa.Column(sa.String(200), primary_key=True))
    kind: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    currency: str = Field(sa_column=sa.Column(sa.String(3), nullable=False))
    balance: Decimal = Field(sa_column=sa.Column(AMOUNT, nullable=False))


class LedgerTransfer(SQLModel, table=True):
    """One balanced movement: ``amount`` left ``debit`` and reached ``credit``."""

    __tablename__ = "ledger_transfers"
    __table_args__ = (
        sa.CheckConstraint("amount > 0", name="ck_ledger_transfers_positive"),
        sa.CheckConstraint("debit <> credit", name="ck_ledger_transfers_two_accounts"),
        sa.Index("ix_ledger_transfers_budget", "budget_id", "id"),
        sa.Index("ix_ledger_transfers_award", "award_id", "id"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BigIntId, primary_key=True))
    cause: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    debit: str = Field(
        sa_column=sa.Column(sa.String(200), sa.ForeignKey("ledger_accounts.id"), nullable=False)
    )
    credit: str = Field(
        sa_column=sa.Column(sa.String(200), sa.ForeignKey("ledger_accounts.id"), nullable=False)
    )
    amount: Decimal = Field(sa_column=sa.Column(AMOUNT, nullable=False))
    currency: str = Field(sa_column=sa.Column(sa.String(3), nullable=False))
    budget_id: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    award_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(100), nullable=True))
    sequence: int | None = Field(default=None, sa_column=sa.Column(sa.Integer(), nullable=True))
    #: Who moved the money (``kind:id``).
    actor: str = Field(sa_column=sa.Column(sa.String(250), nullable=False))
    note: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class Award(SQLModel, table=True):
    """A grant awarded to a firm, charged to one budget."""

    __tablename__ = "awards"

    id: str = Field(sa_column=sa.Column(sa.String(100), primary_key=True))
    application_id: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    firm_id: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    budget_id: str = Field(
        sa_column=sa.Column(sa.String(100), sa.ForeignKey("budgets.id"), nullable=False)
    )
    total: Decimal = Field(sa_column=sa.Column(AMOUNT, nullable=False))
    currency: str = Field(sa_column=sa.Column(sa.String(3), nullable=False))
    #: ``open``, ``closed`` (last tranche paid) or ``cancelled``.
    state: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    correlation_id: str = Field(sa_column=sa.Column(sa.String(36), nullable=False))
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class TrancheRecord(SQLModel, table=True):
    """One tranche of an award."""

    __tablename__ = "tranches"

    award_id: str = Field(
        sa_column=sa.Column(sa.String(100), sa.ForeignKey("awards.id"), primary_key=True)
    )
    sequence: int = Field(sa_column=sa.Column(sa.Integer(), primary_key=True))
    amount: Decimal = Field(sa_column=sa.Column(AMOUNT, nullable=False))
    milestone: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    #: ``scheduled``, ``released``, ``paid``, ``failed`` or ``cancelled``.
    state: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class Payment(SQLModel, table=True):
    """The payout of one tranche; its id is the rail's idempotency key."""

    __tablename__ = "payments"
    __table_args__ = (
        sa.UniqueConstraint("award_id", "sequence", name="uq_payments_tranche"),
        sa.ForeignKeyConstraint(
            ["award_id", "sequence"], ["tranches.award_id", "tranches.sequence"]
        ),
        sa.Index("ix_payments_state", "state", "next_attempt_at"),
    )

    id: str = Field(sa_column=sa.Column(sa.String(100), primary_key=True))
    award_id: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    sequence: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    amount: Decimal = Field(sa_column=sa.Column(AMOUNT, nullable=False))
    currency: str = Field(sa_column=sa.Column(sa.String(3), nullable=False))
    beneficiary: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    #: ``pending`` (to send), ``unknown`` (sent, outcome not known), ``paid`` or ``rejected``.
    state: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    attempts: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    next_attempt_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    rail_reference: str | None = Field(
        default=None, sa_column=sa.Column(sa.String(200), nullable=True)
    )
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class BudgetWaitlistEntry(SQLModel, table=True):
    """An award waiting for its budget: the ``award.open`` command as it came, in arrival order."""

    __tablename__ = "budget_waitlist"
    __table_args__ = (sa.Index("ix_budget_waitlist_budget", "budget_id", "position"),)

    #: Arrival order (FIFO).
    position: int | None = Field(default=None, sa_column=sa.Column(BigIntId, primary_key=True))
    award_id: str = Field(sa_column=sa.Column(sa.String(100), nullable=False, unique=True))
    #: No foreign key: an award may wait for a budget that is yet to be set.
    budget_id: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    application_id: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    #: The ``award.open`` payload (JSON), applied as it is when the budget covers it.
    command: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    #: Who asked for the award (``kind:id``) and the journey it belongs to.
    actor: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    correlation_id: str = Field(sa_column=sa.Column(sa.String(36), nullable=False))
    queued_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


BUDGETS: sa.Table = Budget.__table__  # type: ignore[attr-defined]
ACCOUNTS: sa.Table = LedgerAccount.__table__  # type: ignore[attr-defined]
TRANSFERS: sa.Table = LedgerTransfer.__table__  # type: ignore[attr-defined]
AWARDS: sa.Table = Award.__table__  # type: ignore[attr-defined]
TRANCHES: sa.Table = TrancheRecord.__table__  # type: ignore[attr-defined]
PAYMENTS: sa.Table = Payment.__table__  # type: ignore[attr-defined]
BUDGET_WAITLIST: sa.Table = BudgetWaitlistEntry.__table__  # type: ignore[attr-defined]

#: This service's own tables (the kit tables are added by :func:`metadata`).
TABLES: tuple[sa.Table, ...] = (
    BUDGETS,
    ACCOUNTS,
    TRANSFERS,
    AWARDS,
    TRANCHES,
    PAYMENTS,
    BUDGET_WAITLIST,
)


def metadata() -> sa.MetaData:
    """The service's full schema: the Alembic autogenerate target."""
    return service_metadata(*TABLES)
