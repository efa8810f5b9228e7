"""Request and response bodies of the disbursement API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from contracts.money import Balance, Money

IncentiveType = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9_]{1,39}$",
        description="The kind of incentive the budget funds.",
        examples=["grant"],
    ),
]


class BudgetCreate(BaseModel):
    """A new budget for one incentive type and fiscal year, funded with ``amount``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "incentive_type": "grant",
                    "fiscal_year": 2027,
                    "amount": {"amount": "5000000.00", "currency": "EUR"},
                }
            ]
        },
    )

    incentive_type: IncentiveType
    fiscal_year: int = Field(ge=2000, le=2100, description="The fiscal year.", examples=[2027])
    amount: Money = Field(description="The initial funding; greater than zero.")


class TopUp(BaseModel):
    """Money added to a budget."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"amount": {"amount": "250000.00", "currency": "EUR"}}]},
    )

    amount: Money = Field(description="The amount added; greater than zero, the budget's currency.")


class LedgerEntry(BaseModel):
    """One movement of money, with its cause."""

    id: int = Field(description="The transfer's number, in ledger order.")
    at: datetime = Field(description="When it was booked (UTC).")
    cause: str = Field(description="`top_up`, `reserve`, `pay` or `release`.", examples=["pay"])
    debit: str = Field(description="The account the money left.")
    credit: str = Field(description="The account the money reached.")
    amount: Money = Field(description="How much moved.")
    award_id: str | None = Field(default=None, description="The award concerned, if any.")
    tranche: int | None = Field(default=None, description="The tranche concerned, if any.")
    actor: str = Field(description="Who moved it (`kind:id`).")
    note: str = Field(description="Why, in words.")


class BudgetView(BaseModel):
    """A budget: what was put in, and where it is now."""

    id: str = Field(description="The budget id.", examples=["grant-2027"])
    incentive_type: str
    fiscal_year: int
    funded: Balance = Field(description="Everything put in (set and top-ups).")
    free: Balance = Field(description="Not promised to any award.")
    reserved: Balance = Field(description="Promised to awards, not yet paid.")
    paid: Balance = Field(description="Paid to firms.")
    waitlist: list[str] = Field(
        default_factory=list,
        description=(
            "Awards waiting for this budget, first come first served: a top-up opens them in"
            " this order while the budget covers the next one."
        ),
        examples=[["award_app_01HZX3Q8W6"]],
    )


class BudgetLedger(BudgetView):
    """A budget with every entry of its ledger."""

    entries: list[LedgerEntry]


class BudgetList(BaseModel):
    budgets: list[BudgetView]


class TrancheView(BaseModel):
    sequence: int
    milestone: str
    amount: Money
    state: str = Field(description="scheduled, released, paid, failed or cancelled.")
    payment_id: str | None = Field(default=None, description="The payment's idempotency key.")
    payment_state: str | None = Field(default=None, description="pending, unknown, paid...")


class AwardLedger(BaseModel):
    """An award: its schedule, what is reserved and paid, and every entry."""

    id: str
    application_id: str
    firm_id: str
    budget_id: str
    state: str = Field(description="open, closed (all paid) or cancelled.")
    total: Money
    reserved: Balance
    paid: Balance
    tranches: list[TrancheView]
    entries: list[LedgerEntry]
