"""Disbursement commands and events: awards, their tranche schedules, payouts and budgets.

Amounts are :class:`~contracts.money.Money`. A tranche is identified by ``(award_id, sequence)``;
payouts carry an ``idempotency_key`` that the payment rail uses so a tranche is never paid twice.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.config import JsonDict, JsonValue

from contracts.envelope import UtcDatetime
from contracts.money import Balance, Money
from contracts.v1.common import (
    PAYLOAD_CONFIG,
    CompensationReason,
    Identifier,
    LongText,
    ShortText,
    TrancheFailureReason,
)

#: The payment rail's idempotency key for one payout attempt series of one tranche.
IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^\S+$")]


def budget_id(incentive_type: str, fiscal_year: int) -> str:
    """The id of the budget of one incentive type and fiscal year, e.g. ``grant-2027``.

    The fiscal year is the calendar year (UTC). Disbursement names its budgets so, and the
    workflow names the budget an award is charged to with the same rule.
    """
    return f"{incentive_type}-{fiscal_year}"


def fiscal_year(at: datetime) -> int:
    """The fiscal year ``at`` falls in: its calendar year in UTC (``at`` is a UTC time)."""
    return at.year


def budget_key(budget_id_: str) -> tuple[str, int] | None:
    """The incentive type and fiscal year a :func:`budget_id` names, or None for another id."""
    incentive_type, _, year = budget_id_.rpartition("-")
    if not incentive_type or not year.isdigit():
        return None
    return incentive_type, int(year)


_APP_ID = "app_01HZX3Q8W6"
_AWARD_ID = "award_app_01HZX3Q8W6"
_BUDGET_ID = "gaip-2027-grants"
_IDEMPOTENCY_KEY = "award_app_01HZX3Q8W6:tranche:1"

TRANCHE_EXAMPLE: JsonDict = {
    "sequence": 1,
    "amount": {"amount": "100000.00", "currency": "EUR"},
    "milestone": "Local lab opened and first 10 engineers hired",
    "expected_by": "2027-04-01",
}
TRANCHES_EXAMPLE: list[JsonValue] = [
    TRANCHE_EXAMPLE,
    {
        "sequence": 2,
        "amount": {"amount": "100000.00", "currency": "EUR"},
        "milestone": "Clinical pilot running in two hospitals",
        "expected_by": "2027-10-01",
    },
    {
        "sequence": 3,
        "amount": {"amount": "50000.00", "currency": "EUR"},
        "milestone": "Pilot evaluation report published",
        "expected_by": "2028-03-01",
    },
]
_TOTAL_EXAMPLE: JsonDict = {"amount": "250000.00", "currency": "EUR"}


class Tranche(BaseModel):
    """One scheduled payment of an award, released when its milestone is met."""

    model_config = ConfigDict(**PAYLOAD_CONFIG, json_schema_extra={"examples": [TRANCHE_EXAMPLE]})

    sequence: int = Field(
        ge=1, le=100, description="Position in the schedule, from 1.", examples=[1, 2]
    )
    amount: Money = Field(
        description="The tranche amount.", examples=[{"amount": "100000.00", "currency": "EUR"}]
    )
    milestone: ShortText = Field(
        description="The milestone that releases the tranche.",
        examples=["Local lab opened and first 10 engineers hired"],
    )
    expected_by: date | None = Field(
        default=None,
        description="When the milestone is expected to be met; null when open-ended.",
        examples=["2027-04-01", None],
    )


def _check_schedule(total: Money, tranches: list[Tranche]) -> None:
    # Tranche arithmetic must add up on the wire too, or a consumer could pay a different total.
    if [t.sequence for t in tranches] != list(range(1, len(tranches) + 1)):
        raise ValueError("tranche sequences must be 1, 2, ... in order")
    if any(t.amount.currency != total.currency for t in tranches):
        raise ValueError("every tranche must be in the award's currency")
    if sum((t.amount.amount for t in tranches), Decimal(0)) != total.amount:
        raise ValueError("tranche amounts must add up to the award total")


class OpenAward(BaseModel):
    """Command ``award.open``: reserve budget for an approved grant and set its tranche schedule.

    ``award_id`` is the idempotency key: opening the same award twice has no further effect.
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "award_id": _AWARD_ID,
                    "application_id": _APP_ID,
                    "firm_id": "ACME",
                    "budget_id": _BUDGET_ID,
                    "total": _TOTAL_EXAMPLE,
                    "tranches": TRANCHES_EXAMPLE,
                }
            ]
        },
    )

    award_id: Identifier = Field(description="Id of the award to open.", examples=[_AWARD_ID])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    firm_id: Identifier = Field(description="The beneficiary firm.", examples=["ACME"])
    budget_id: Identifier = Field(
        description="The program budget the award is charged to.", examples=[_BUDGET_ID]
    )
    total: Money = Field(description="The total award.", examples=[_TOTAL_EXAMPLE])
    tranches: list[Tranche] = Field(
        min_length=1,
        max_length=100,
        description="The tranche schedule; amounts add up to `total`.",
        examples=[TRANCHES_EXAMPLE],
    )

    @model_validator(mode="after")
    def _schedule_adds_up(self) -> Self:
        _check_schedule(self.total, self.tranches)
        return self


class ReleaseTranche(BaseModel):
    """Command ``tranche.release``: a tranche's milestone is met; pay it."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "award_id": _AWARD_ID,
                    "application_id": _APP_ID,
                    "sequence": 1,
                    "approved_by": "rev.nguyen@gaip.example",
                    "evidence": "Site inspection report INSP-2027-0412.",
                }
            ]
        },
    )

    award_id: Identifier = Field(description="The award.", examples=[_AWARD_ID])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    sequence: int = Field(ge=1, le=100, description="The tranche to release.", examples=[1])
    approved_by: Identifier = Field(
        description="Who confirmed the milestone.", examples=["rev.nguyen@gaip.example"]
    )
    evidence: LongText | None = Field(
        default=None,
        description="What shows the milestone is met, if recorded.",
        examples=["Site inspection report INSP-2027-0412.", None],
    )


class CancelAward(BaseModel):
    """Command ``award.cancel``: cancel an award and return its unpaid amount to the budget."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "award_id": _AWARD_ID,
                    "application_id": _APP_ID,
                    "reason_code": "application_withdrawn",
                    "reason": "The firm withdrew the application.",
                }
            ]
        },
    )

    award_id: Identifier = Field(description="The award to cancel.", examples=[_AWARD_ID])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    reason_code: CompensationReason = Field(
        description="Why the award is cancelled.",
        examples=["application_withdrawn", "administrative"],
    )
    reason: LongText = Field(
        description="Human-readable reason.", examples=["The firm withdrew the application."]
    )


class AwardOpened(BaseModel):
    """Event ``award.opened``: budget is reserved and the tranche schedule is in force."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "award_id": _AWARD_ID,
                    "application_id": _APP_ID,
                    "firm_id": "ACME",
                    "budget_id": _BUDGET_ID,
                    "total": _TOTAL_EXAMPLE,
                    "tranches": TRANCHES_EXAMPLE,
                    "opened_at": "2027-01-02T11:00:05Z",
                }
            ]
        },
    )

    award_id: Identifier = Field(description="The award.", examples=[_AWARD_ID])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    firm_id: Identifier = Field(description="The beneficiary firm.", examples=["ACME"])
    budget_id: Identifier = Field(description="The program budget charged.", examples=[_BUDGET_ID])
    total: Money = Field(description="The total award.", examples=[_TOTAL_EXAMPLE])
    tranches: list[Tranche] = Field(
        min_length=1,
        max_length=100,
        description="The tranche schedule; amounts add up to `total`.",
        examples=[TRANCHES_EXAMPLE],
    )
    opened_at: UtcDatetime = Field(
        description="When the award was opened, in UTC.", examples=["2027-01-02T11:00:05Z"]
    )

    @model_validator(mode="after")
    def _schedule_adds_up(self) -> Self:
        _check_schedule(self.total, self.tranches)
        return self


class TrancheReleased(BaseModel):
    """Event ``tranche.released``: a tranche was released and its payout sent to the rail."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "award_id": _AWARD_ID,
                    "application_id": _APP_ID,
                    "sequence": 1,
                    "amount": {"amount": "100000.00", "currency": "EUR"},
                    "idempotency_key": _IDEMPOTENCY_KEY,
                    "released_at": "2027-04-03T09:00:00Z",
                }
            ]
        },
    )

    award_id: Identifier = Field(description="The award.", examples=[_AWARD_ID])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    sequence: int = Field(ge=1, le=100, description="The tranche released.", examples=[1])
    amount: Money = Field(
        description="The amount to pay.", examples=[{"amount": "100000.00", "currency": "EUR"}]
    )
    idempotency_key: IdempotencyKey = Field(
        description="The key the payout uses at the payment rail; retries reuse it.",
        examples=[_IDEMPOTENCY_KEY],
    )
    released_at: UtcDatetime = Field(
        description="When the tranche was released, in UTC.", examples=["2027-04-03T09:00:00Z"]
    )


class TranchePaid(BaseModel):
    """Event ``tranche.paid``: the payment rail confirmed the payout."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "award_id": _AWARD_ID,
                    "application_id": _APP_ID,
                    "sequence": 1,
                    "amount": {"amount": "100000.00", "currency": "EUR"},
                    "idempotency_key": _IDEMPOTENCY_KEY,
                    "payment_reference": "PAY-2027-000184",
                    "paid_at": "2027-04-03T09:00:02Z",
                }
            ]
        },
    )

    award_id: Identifier = Field(description="The award.", examples=[_AWARD_ID])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    sequence: int = Field(ge=1, le=100, description="The tranche paid.", examples=[1])
    amount: Money = Field(
        description="The amount paid.", examples=[{"amount": "100000.00", "currency": "EUR"}]
    )
    idempotency_key: IdempotencyKey = Field(
        description="The key the payout used at the payment rail.", examples=[_IDEMPOTENCY_KEY]
    )
    payment_reference: ShortText = Field(
        description="The payment rail's reference for the transfer.",
        examples=["PAY-2027-000184"],
    )
    paid_at: UtcDatetime = Field(
        description="When the rail confirmed payment, in UTC.", examples=["2027-04-03T09:00:02Z"]
    )


class TrancheFailed(BaseModel):
    """Event ``tranche.failed``: the payment rail did not pay a released tranche."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "award_id": _AWARD_ID,
                    "application_id": _APP_ID,
                    "sequence": 1,
                    "amount": {"amount": "100000.00", "currency": "EUR"},
                    "idempotency_key": _IDEMPOTENCY_KEY,
                    "reason_code": "beneficiary_invalid",
                    "reason": "The beneficiary account was closed.",
                    "retryable": False,
                    "failed_at": "2027-04-03T09:00:02Z",
                }
            ]
        },
    )

    award_id: Identifier = Field(description="The award.", examples=[_AWARD_ID])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    sequence: int = Field(ge=1, le=100, description="The tranche not paid.", examples=[1])
    amount: Money = Field(
        description="The amount that was not paid.",
        examples=[{"amount": "100000.00", "currency": "EUR"}],
    )
    idempotency_key: IdempotencyKey = Field(
        description="The key the payout used; a retry must reuse it.", examples=[_IDEMPOTENCY_KEY]
    )
    reason_code: TrancheFailureReason = Field(
        description="Why it failed.", examples=["beneficiary_invalid", "rail_unavailable"]
    )
    reason: LongText = Field(
        description="Human-readable reason.", examples=["The beneficiary account was closed."]
    )
    retryable: bool = Field(
        description="Whether retrying with the same idempotency key may succeed.",
        examples=[False, True],
    )
    failed_at: UtcDatetime = Field(
        description="When the failure was reported, in UTC.", examples=["2027-04-03T09:00:02Z"]
    )


class AwardCancelled(BaseModel):
    """Event ``award.cancelled``: the award is closed; its unpaid amount went back to the budget."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "award_id": _AWARD_ID,
                    "application_id": _APP_ID,
                    "reason_code": "application_withdrawn",
                    "reason": "The firm withdrew the application.",
                    "returned_to_budget": {"amount": "150000.00", "currency": "EUR"},
                    "cancelled_at": "2027-05-01T12:00:00Z",
                }
            ]
        },
    )

    award_id: Identifier = Field(description="The award cancelled.", examples=[_AWARD_ID])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    reason_code: CompensationReason = Field(
        description="Why it was cancelled.", examples=["application_withdrawn"]
    )
    reason: LongText = Field(
        description="Human-readable reason.", examples=["The firm withdrew the application."]
    )
    returned_to_budget: Balance = Field(
        description="The unpaid amount released back to the program budget (zero if none).",
        examples=[{"amount": "150000.00", "currency": "EUR"}],
    )
    cancelled_at: UtcDatetime = Field(
        description="When the award was cancelled, in UTC.", examples=["2027-05-01T12:00:00Z"]
    )


class BudgetExhausted(BaseModel):
    """Event ``budget.exhausted``: a budget could not cover an award, which was not opened.

    The approval workflow compensates: it releases held zone space.
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "budget_id": _BUDGET_ID,
                    "award_id": _AWARD_ID,
                    "application_id": _APP_ID,
                    "requested": _TOTAL_EXAMPLE,
                    "available": {"amount": "120000.00", "currency": "EUR"},
                    "detected_at": "2027-01-02T11:00:05Z",
                }
            ]
        },
    )

    budget_id: Identifier = Field(description="The budget that ran short.", examples=[_BUDGET_ID])
    award_id: Identifier = Field(
        description="The award that could not be opened.", examples=[_AWARD_ID]
    )
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    requested: Money = Field(description="What the award needed.", examples=[_TOTAL_EXAMPLE])
    available: Balance = Field(
        description="What the budget had left (zero when nothing was).",
        examples=[{"amount": "120000.00", "currency": "EUR"}],
    )
    detected_at: UtcDatetime = Field(
        description="When the shortfall was found, in UTC.", examples=["2027-01-02T11:00:05Z"]
    )

    @model_validator(mode="after")
    def _is_a_shortfall(self) -> Self:
        if self.requested.currency != self.available.currency:
            raise ValueError("requested and available must be in the same currency")
        if self.available.amount >= self.requested.amount:
            raise ValueError("available must be less than requested for a shortfall")
        return self


class ChargeAward(BaseModel):
    """Command ``award.charge``: charge an open award to the budget of the year its offer was
    accepted in.

    The grant is reserved when the offer is made; when the firm accepts in a later fiscal year,
    the unpaid reservation moves to that year's budget. Charging an award to the budget it is
    already charged to has no further effect.
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "award_id": _AWARD_ID,
                    "application_id": _APP_ID,
                    "budget_id": "grant-2028",
                    "accepted_at": "2028-01-03T09:30:00Z",
                }
            ]
        },
    )

    award_id: Identifier = Field(description="The award to charge.", examples=[_AWARD_ID])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    budget_id: Identifier = Field(
        description="The budget of the fiscal year in which the offer was accepted.",
        examples=["grant-2028"],
    )
    accepted_at: UtcDatetime = Field(
        description="When the firm accepted the offer, in UTC.", examples=["2028-01-03T09:30:00Z"]
    )


class AwardCharged(BaseModel):
    """Event ``award.charged``: an award's reservation moved to the budget of the fiscal year in
    which its offer was accepted."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "award_id": _AWARD_ID,
                    "application_id": _APP_ID,
                    "from_budget_id": _BUDGET_ID,
                    "budget_id": "grant-2028",
                    "amount": _TOTAL_EXAMPLE,
                    "charged_at": "2028-01-03T09:30:02Z",
                }
            ]
        },
    )

    award_id: Identifier = Field(description="The award.", examples=[_AWARD_ID])
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    from_budget_id: Identifier = Field(
        description="The budget the reservation was taken from (and returned to).",
        examples=[_BUDGET_ID],
    )
    budget_id: Identifier = Field(
        description="The budget the award is charged to from now on.", examples=["grant-2028"]
    )
    amount: Money = Field(description="The reservation that moved.", examples=[_TOTAL_EXAMPLE])
    charged_at: UtcDatetime = Field(
        description="When the reservation moved, in UTC.", examples=["2028-01-03T09:30:02Z"]
    )


class LedgerCause(StrEnum):
    """Why money moved between two ledger accounts."""

    #: Funding source → a budget's available money (a budget set, or topped up).
    TOP_UP = "top_up"
    #: A budget's available money → reserved for an award (an award opens or is charged).
    RESERVE = "reserve"
    #: Reserved for an award → paid to its firm (the rail paid a tranche).
    PAY = "pay"
    #: Reserved for an award → back to a budget's available money (cancelled, charged away,
    #: or a payment of a cancelled award rejected).
    RELEASE = "release"


#: A ledger account id: ``budget:<budget id>:funding|available`` or
#: ``award:<award id>:reserved|paid``.
AccountId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^\S+$")]


class LedgerTransferred(BaseModel):
    """Event ``ledger.transferred``: one balanced movement of money in the disbursement ledger.

    Every change of a balance is one of these, in the transaction that made it, so the ledger's
    balances can be rebuilt from the log alone: the funding account of a budget goes negative by
    what was put in, every other account stays at or above zero. ``application_id`` (the
    envelope subject and record key) is the application of the award the money moved for; a
    budget set or topped up moves money for no application, and carries the budget id there.
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "entry_id": 12,
                    "application_id": _APP_ID,
                    "cause": "reserve",
                    "debit": f"budget:{_BUDGET_ID}:available",
                    "credit": f"award:{_AWARD_ID}:reserved",
                    "amount": _TOTAL_EXAMPLE,
                    "budget_id": _BUDGET_ID,
                    "award_id": _AWARD_ID,
                    "sequence": None,
                    "note": f"reserved for {_APP_ID}",
                    "booked_at": "2027-01-02T11:00:05Z",
                },
                {
                    "entry_id": 1,
                    "application_id": _BUDGET_ID,
                    "cause": "top_up",
                    "debit": f"budget:{_BUDGET_ID}:funding",
                    "credit": f"budget:{_BUDGET_ID}:available",
                    "amount": {"amount": "5000000.00", "currency": "EUR"},
                    "budget_id": _BUDGET_ID,
                    "award_id": None,
                    "sequence": None,
                    "note": "budget set",
                    "booked_at": "2027-01-01T08:00:00Z",
                },
            ]
        },
    )

    entry_id: int = Field(
        ge=1,
        description="The entry's id in the service's ledger (as its ledger API lists it).",
        examples=[12],
    )
    application_id: Identifier = Field(
        description=(
            "The application of the award the money moved for; equal to the envelope subject."
            " The budget id for a budget set or topped up."
        ),
        examples=[_APP_ID, _BUDGET_ID],
    )
    cause: LedgerCause = Field(description="Why the money moved.", examples=["reserve"])
    debit: AccountId = Field(
        description="The account the amount left.", examples=[f"budget:{_BUDGET_ID}:available"]
    )
    credit: AccountId = Field(
        description="The account the amount reached.", examples=[f"award:{_AWARD_ID}:reserved"]
    )
    amount: Money = Field(description="The amount moved.", examples=[_TOTAL_EXAMPLE])
    budget_id: Identifier = Field(
        description="The budget the movement belongs to.", examples=[_BUDGET_ID]
    )
    award_id: Identifier | None = Field(
        default=None, description="The award it moved for, if any.", examples=[_AWARD_ID]
    )
    sequence: int | None = Field(
        default=None, ge=1, le=100, description="The tranche paid, for a payment.", examples=[1]
    )
    note: LongText = Field(
        description="What the ledger says about it.", examples=[f"reserved for {_APP_ID}"]
    )
    booked_at: UtcDatetime = Field(
        description="When the movement was booked, in UTC.", examples=["2027-01-02T11:00:05Z"]
    )

    @model_validator(mode="after")
    def _two_accounts(self) -> Self:
        if self.debit == self.credit:
            raise ValueError("a transfer moves money between two accounts")
        return self
