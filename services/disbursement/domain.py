"""The money rules, free of I/O: tranche arithmetic and the double-entry ledger.

- **Tranches.** An award is split by a schedule of shares (settings, e.g. signing 40%,
  milestone 1 30%, milestone 2 30%). Each amount is rounded down to the currency's minor unit
  and the remainder goes to the last tranche, so the tranches always add up to the total.
- **The ledger.** Money moves only as transfers between two accounts, one leg each way, so
  every transfer sums to zero by construction:

  ``funding`` → ``budget available`` (a top-up), ``budget available`` → ``reserved for an
  award`` (an award opens), ``reserved`` → ``paid to the firm`` (a tranche is paid), and
  ``reserved`` → ``budget available`` (a cancelled award gives back what was not paid).

  Every account except a budget's funding source must never go negative. The database store
  enforces the same with a CHECK on the balance rows; :class:`Ledger` is the in-memory
  statement of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from contracts.schedule import (
    HUNDRED,
    ScheduleError,
    Share,
    parse_schedule,
    quantum,
    split,
)
from contracts.schedule import in_minor_units as _in_minor_units
from contracts.v1.disbursement import LedgerCause, budget_key

__all__ = ["HUNDRED", "ScheduleError", "Share", "parse_schedule", "quantum", "split"]

#: The largest amount the ledger books (stored as ten-thousandths in a signed 64-bit integer):
#: 900 trillion in any currency, beyond any program budget.
MAX_AMOUNT = Decimal(900_000_000_000_000)


def in_minor_units(amount: Decimal, currency: str) -> bool:
    """Whether ``amount`` is a whole number of the currency's minor units (and bookable)."""
    return amount <= MAX_AMOUNT and _in_minor_units(amount, currency)


def of_an_earlier_year(budget_id: str, incentive_type: str, fiscal_year: int) -> bool:
    """Whether ``budget_id`` names a budget of ``incentive_type`` before ``fiscal_year``: an
    award waiting for it may be charged to that year's budget instead."""
    key = budget_key(budget_id)
    return key is not None and key[0] == incentive_type and key[1] < fiscal_year


# --- the ledger ----------------------------------------------------------------------------------


class AccountKind(StrEnum):
    """What an account holds."""

    #: Where a budget's money comes from; it goes negative by what was put in.
    FUNDING = "funding"
    #: A budget's money not yet promised to anyone.
    AVAILABLE = "available"
    #: Money promised to an award and not yet paid.
    RESERVED = "reserved"
    #: Money paid to the firm of an award.
    PAID = "paid"


def may_go_negative(kind: AccountKind) -> bool:
    """Only a funding source: every other balance stays at or above zero."""
    return kind is AccountKind.FUNDING


def budget_account(budget_id: str, kind: AccountKind) -> str:
    """The account id of a budget's funding source or available money."""
    return f"budget:{budget_id}:{kind}"


def award_account(award_id: str, kind: AccountKind) -> str:
    """The account id of what is reserved for, or paid to, an award."""
    return f"award:{award_id}:{kind}"


#: Why money moved (the contract's vocabulary: each movement is a ``ledger.transferred`` event).
Cause = LedgerCause


#: The moves each cause makes: (from kind, to kind).
MOVES: Mapping[Cause, tuple[AccountKind, AccountKind]] = {
    Cause.TOP_UP: (AccountKind.FUNDING, AccountKind.AVAILABLE),
    Cause.RESERVE: (AccountKind.AVAILABLE, AccountKind.RESERVED),
    Cause.PAY: (AccountKind.RESERVED, AccountKind.PAID),
    Cause.RELEASE: (AccountKind.RESERVED, AccountKind.AVAILABLE),
}


@dataclass(frozen=True)
class Transfer:
    """A balanced move of ``amount`` from one account to another."""

    cause: Cause
    debit: str
    credit: str
    amount: Decimal

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise ValueError("a transfer moves a positive amount")
        if self.debit == self.credit:
            raise ValueError("a transfer moves money between two accounts")

    def entries(self) -> tuple[tuple[str, Decimal], tuple[str, Decimal]]:
        """Its two legs: they sum to zero."""
        return ((self.debit, -self.amount), (self.credit, self.amount))


def top_up(budget_id: str, amount: Decimal) -> Transfer:
    return Transfer(
        Cause.TOP_UP,
        budget_account(budget_id, AccountKind.FUNDING),
        budget_account(budget_id, AccountKind.AVAILABLE),
        amount,
    )


def reserve(budget_id: str, award_id: str, amount: Decimal) -> Transfer:
    return Transfer(
        Cause.RESERVE,
        budget_account(budget_id, AccountKind.AVAILABLE),
        award_account(award_id, AccountKind.RESERVED),
        amount,
    )


def pay(award_id: str, amount: Decimal) -> Transfer:
    return Transfer(
        Cause.PAY,
        award_account(award_id, AccountKind.RESERVED),
        award_account(award_id, AccountKind.PAID),
        amount,
    )


def release(budget_id: str, award_id: str, amount: Decimal) -> Transfer:
    return Transfer(
        Cause.RELEASE,
        award_account(award_id, AccountKind.RESERVED),
        budget_account(budget_id, AccountKind.AVAILABLE),
        amount,
    )


def kind_of(account: str) -> AccountKind:
    """The kind of an account id made by :func:`budget_account` or :func:`award_account`."""
    return AccountKind(account.rsplit(":", 1)[1])


class Overdrawn(Exception):
    """A transfer that would take an account below zero."""


@dataclass
class Ledger:
    """The ledger in memory: balances and the transfers that made them."""

    balances: dict[str, Decimal] = field(default_factory=dict)
    transfers: list[Transfer] = field(default_factory=list)

    def apply(self, transfer: Transfer) -> None:
        """Apply ``transfer``, or raise :class:`Overdrawn` and change nothing."""
        after = self.balances.get(transfer.debit, Decimal(0)) - transfer.amount
        if after < 0 and not may_go_negative(kind_of(transfer.debit)):
            raise Overdrawn(f"{transfer.debit} holds less than {transfer.amount}")
        for account, amount in transfer.entries():
            self.balances[account] = self.balances.get(account, Decimal(0)) + amount
        self.transfers.append(transfer)

    def balance(self, account: str) -> Decimal:
        return self.balances.get(account, Decimal(0))


# --- awards and payouts --------------------------------------------------------------------------


class AwardState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class TrancheState(StrEnum):
    """Where a tranche stands, as the firm sees it."""

    SCHEDULED = "scheduled"
    RELEASED = "released"
    PAID = "paid"
    FAILED = "failed"
    CANCELLED = "cancelled"


class PaymentState(StrEnum):
    """Where a payout stands with the rail."""

    #: Stored, not yet answered by the rail (to send, or to send again with the same key).
    PENDING = "pending"
    #: Sent, but the answer was lost (a timeout): reconciliation asks the rail.
    UNKNOWN = "unknown"
    PAID = "paid"
    REJECTED = "rejected"
    #: Never sent: its award was cancelled first.
    CANCELLED = "cancelled"


#: Payments whose outcome is still open.
OPEN_PAYMENTS = (PaymentState.PENDING, PaymentState.UNKNOWN)

#: Retry delays of a payout the rail could not take, capped.
RETRY_BASE_SECONDS = 1.0
RETRY_CAP_SECONDS = 300.0


def retry_delay(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` transient failures."""
    return float(min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1)))
