"""Use cases of the disbursement service: each runs inside one unit of work and stages its events.

Message handlers, the payout worker, reconciliation and the admin routes call these; none of
them commits. A command that cannot be applied raises a
:class:`~services.kit.errors.FinalError` before anything is staged, and the caller's rollback
leaves no trace of it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from contracts.envelope import Actor
from contracts.money import Balance, Money
from contracts.v1.common import TrancheFailureReason
from contracts.v1.disbursement import (
    AwardCancelled,
    AwardCharged,
    AwardOpened,
    BudgetExhausted,
    CancelAward,
    ChargeAward,
    LedgerTransferred,
    OpenAward,
    ReleaseTranche,
    Tranche,
    TrancheFailed,
    TranchePaid,
    TrancheReleased,
    fiscal_year,
)
from contracts.v1.disbursement import budget_id as fiscal_year_budget
from services.disbursement import batch, store
from services.disbursement.domain import (
    MAX_AMOUNT,
    OPEN_PAYMENTS,
    AccountKind,
    AwardState,
    Overdrawn,
    PaymentState,
    TrancheState,
    Transfer,
    award_account,
    budget_account,
    in_minor_units,
    of_an_earlier_year,
    pay,
    quantum,
    release,
    reserve,
    retry_delay,
    top_up,
)
from services.disbursement.models import AWARDS, BUDGET_WAITLIST, BUDGETS, PAYMENTS, TRANCHES
from services.kit.errors import BusinessRefusal, Conflict, NotFound, ValidationFailed
from services.kit.events import Origin, stage_event
from services.kit.uow import UnitOfWork

PRODUCER = "disbursement"
#: The longest note a ``ledger.transferred`` event carries (the contract's long text).
NOTE_LIMIT = 4000
SYSTEM = Actor.system("disbursement")


def _stage(
    uow: UnitOfWork,
    payload: BaseModel,
    application_id: str,
    origin: Origin,
    correlation_id: uuid.UUID,
    now: datetime,
) -> None:
    """Stage an event of this service about ``application_id``'s journey."""
    stage_event(
        uow,
        payload,
        producer=PRODUCER,
        subject=application_id,
        origin=origin,
        correlation_id=correlation_id,
        now=now,
    )


def as_money(amount: Decimal, currency: str) -> Money:
    """An amount (as stored, four decimals) in its currency's minor units."""
    return Money.of(Decimal(amount).quantize(quantum(currency)), currency)


def as_balance(amount: Decimal, currency: str) -> Balance:
    """A stored balance (zero allowed) in its currency's minor units."""
    return Balance.model_validate(
        {"amount": Decimal(amount).quantize(quantum(currency)), "currency": currency}
    )


async def _book(
    uow: UnitOfWork,
    transfer: Transfer,
    *,
    currency: str,
    budget_id: str,
    origin: Origin,
    note: str,
    now: datetime,
    subject: str,
    correlation_id: uuid.UUID,
    award_id: str | None = None,
    sequence: int | None = None,
) -> None:
    """Move money and stage its ``ledger.transferred`` event in the same unit of work.

    Every balance change goes through here, so the log holds each movement and the ledger's
    balances can be rebuilt from it. :class:`Overdrawn`, nothing written or staged, when the
    debit would go below zero.
    """
    entry_id = await store.apply(
        uow.session,
        transfer,
        currency=currency,
        budget_id=budget_id,
        award_id=award_id,
        sequence=sequence,
        actor=origin.who,
        note=note,
        now=now,
    )
    _stage(
        uow,
        LedgerTransferred(
            entry_id=entry_id,
            application_id=subject,
            cause=transfer.cause,
            debit=transfer.debit,
            credit=transfer.credit,
            amount=as_money(transfer.amount, currency),
            budget_id=budget_id,
            award_id=award_id,
            sequence=sequence,
            note=note[:NOTE_LIMIT],
            booked_at=now,
        ),
        subject,
        origin,
        correlation_id,
        now,
    )


def _amount_error(amount: Decimal, currency: str) -> ValidationFailed:
    return ValidationFailed(
        f"{amount} is not a bookable amount: whole {currency} minor units, at most {MAX_AMOUNT}",
        extensions={
            "errors": [
                {
                    "pointer": "#/amount/amount",
                    "field": "amount.amount",
                    "message": f"whole {currency} minor units, at most {MAX_AMOUNT}",
                    "type": "decimal_places",
                }
            ]
        },
    )


# --- budgets -------------------------------------------------------------------------------------


async def create_budget(
    uow: UnitOfWork,
    *,
    incentive_type: str,
    fiscal_year: int,
    amount: Money,
    origin: Origin,
    now: datetime,
) -> str:
    """Create the budget of an incentive type and fiscal year and fund it with ``amount``."""
    budget_id = fiscal_year_budget(incentive_type, fiscal_year)
    if not in_minor_units(amount.amount, amount.currency):
        raise _amount_error(amount.amount, amount.currency)
    if await store.budget(uow.session, budget_id) is not None:
        raise Conflict(f"budget {budget_id} exists already; top it up instead")
    await store.insert(
        uow.session,
        BUDGETS,
        {
            "id": budget_id,
            "incentive_type": incentive_type,
            "fiscal_year": fiscal_year,
            "currency": amount.currency,
            "created_at": now,
        },
    )
    await _top_up(uow, budget_id, amount, origin, now, note="budget set")
    await open_waiting(uow, budget_id, origin, now)
    return budget_id


async def top_up_budget(
    uow: UnitOfWork, budget_id: str, amount: Money, origin: Origin, now: datetime
) -> None:
    """Add ``amount`` to a budget's available money."""
    found = await store.budget(uow.session, budget_id)
    if found is None:
        raise NotFound(f"budget {budget_id} not found")
    if found.currency != amount.currency:
        raise ValidationFailed(
            f"budget {budget_id} is kept in {found.currency}",
            extensions={
                "errors": [
                    {
                        "pointer": "#/amount/currency",
                        "field": "amount.currency",
                        "message": f"must be {found.currency}",
                        "type": "currency_mismatch",
                    }
                ]
            },
        )
    if not in_minor_units(amount.amount, amount.currency):
        raise _amount_error(amount.amount, amount.currency)
    await _top_up(uow, budget_id, amount, origin, now, note="top-up")
    await open_waiting(uow, budget_id, origin, now)


async def _top_up(
    uow: UnitOfWork, budget_id: str, amount: Money, origin: Origin, now: datetime, *, note: str
) -> None:
    await _book(
        uow,
        top_up(budget_id, amount.amount),
        currency=amount.currency,
        budget_id=budget_id,
        origin=origin,
        note=note,
        now=now,
        subject=budget_id,
        correlation_id=origin.correlation_id or uuid.uuid4(),
    )


# --- awards --------------------------------------------------------------------------------------


async def open_award(uow: UnitOfWork, command: OpenAward, origin: Origin, now: datetime) -> None:
    """Reserve the award's total in its budget and store its schedule.

    When the budget cannot cover it, or does not exist yet, ``budget.exhausted`` is reported
    and the award waits on the budget's waitlist (no award, nothing reserved) until a top-up
    covers it (:func:`open_waiting`). Opening an award twice does nothing.
    """
    session = uow.session
    if await batch.award(uow, command.award_id) is not None:
        return
    if await batch.waiting(uow, command.award_id) is not None:
        return
    budget = await batch.budget(uow, command.budget_id)
    currency = command.total.currency
    if not in_minor_units(command.total.amount, currency):
        raise BusinessRefusal(f"{command.total} is not a bookable amount")
    if budget is not None and budget.currency != currency:
        raise BusinessRefusal(f"budget {command.budget_id} is kept in {budget.currency}")
    correlation_id = origin.correlation_id or uuid.uuid4()
    try:
        if budget is None:  # no budget for that year (yet): nothing is available
            raise Overdrawn(f"budget {command.budget_id} does not exist")
        await _reserve_and_open(uow, command, origin, correlation_id, now)
    except Overdrawn:
        entry = {
            "award_id": command.award_id,
            "budget_id": command.budget_id,
            "application_id": command.application_id,
            "command": command.model_dump_json(),
            "actor": origin.actor.model_dump_json(),
            "correlation_id": str(correlation_id),
            "queued_at": now,
        }
        await store.insert(session, BUDGET_WAITLIST, entry)
        batch.remember_waiting(uow, entry)
        await _report_shortfall(uow, command, command.total, origin, correlation_id, now)


async def _report_shortfall(
    uow: UnitOfWork,
    command: OpenAward | ChargeAward,
    requested: Money,
    origin: Origin,
    correlation_id: uuid.UUID,
    now: datetime,
) -> None:
    """Stage ``budget.exhausted``: ``command.budget_id`` cannot cover ``requested``."""
    account = budget_account(command.budget_id, AccountKind.AVAILABLE)
    available = (await store.balances(uow.session, [account]))[account]
    _stage(
        uow,
        BudgetExhausted(
            budget_id=command.budget_id,
            award_id=command.award_id,
            application_id=command.application_id,
            requested=requested,
            available=as_balance(available, requested.currency),
            detected_at=now,
        ),
        command.application_id,
        origin,
        correlation_id,
        now,
    )


async def _reserve_and_open(
    uow: UnitOfWork,
    command: OpenAward,
    origin: Origin,
    correlation_id: uuid.UUID,
    now: datetime,
) -> None:
    """Reserve the total and store the award: :class:`Overdrawn`, nothing written, when the
    budget cannot cover it."""
    session = uow.session
    currency = command.total.currency
    await _book(
        uow,
        reserve(command.budget_id, command.award_id, command.total.amount),
        currency=currency,
        budget_id=command.budget_id,
        award_id=command.award_id,
        origin=origin,
        note=f"reserved for {command.application_id}",
        now=now,
        subject=command.application_id,
        correlation_id=correlation_id,
    )
    award = {
        "id": command.award_id,
        "application_id": command.application_id,
        "firm_id": command.firm_id,
        "budget_id": command.budget_id,
        "total": command.total.amount,
        "currency": currency,
        "state": AwardState.OPEN.value,
        "correlation_id": str(correlation_id),
        "created_at": now,
        "updated_at": now,
    }
    tranches = [
        {
            "award_id": command.award_id,
            "sequence": tranche.sequence,
            "amount": tranche.amount.amount,
            "milestone": tranche.milestone,
            "state": TrancheState.SCHEDULED.value,
            "updated_at": now,
        }
        for tranche in command.tranches
    ]
    await store.insert(session, AWARDS, award)
    await store.insert_many(session, TRANCHES, tranches)
    batch.remember_award(uow, award, tranches)
    _stage(
        uow,
        AwardOpened(
            award_id=command.award_id,
            application_id=command.application_id,
            firm_id=command.firm_id,
            budget_id=command.budget_id,
            total=command.total,
            tranches=[Tranche.model_validate(t.model_dump()) for t in command.tranches],
            opened_at=now,
        ),
        command.application_id,
        origin,
        correlation_id,
        now,
    )


async def open_waiting(uow: UnitOfWork, budget_id: str, origin: Origin, now: datetime) -> int:
    """Open the awards waiting for ``budget_id``, first come first served, while it covers the
    next one; returns how many opened.

    Strictly in arrival order: an award the budget cannot cover yet keeps its place and those
    behind it wait too, so a large early request is never overtaken by smaller later ones.
    Runs in the top-up's transaction: the money and the awards it opens commit together.

    When ``budget_id`` is the budget of the current fiscal year, the awards of the same
    incentive type still waiting for an earlier year's budget join the line in their arrival
    order: a grant is charged to the budget of the year its offer is accepted in, and an offer
    made now is accepted in this year or later, so the new year's money may open them (each
    opens charged to ``budget_id``).
    """
    session = uow.session
    budget = await store.budget(session, budget_id)
    opened = 0
    for entry in await _waiting_for(session, budget, now):
        command = OpenAward.model_validate_json(entry.command)
        if command.total.currency != budget.currency:
            continue  # this budget can never cover it; its workflow stops waiting in time
        if command.budget_id != budget_id:
            command = command.model_copy(update={"budget_id": budget_id})
        try:
            await _reserve_and_open(uow, command, origin, uuid.UUID(entry.correlation_id), now)
        except Overdrawn:
            break
        await store.delete_waiting(session, entry.award_id)
        opened += 1
    return opened


async def _waiting_for(session: Any, budget: Any, now: datetime) -> list[Any]:
    """The waitlist entries ``budget`` may open, in arrival order: its own, and when it is the
    current fiscal year's, those of its incentive type waiting for an earlier year."""
    if budget.fiscal_year != fiscal_year(now):
        return await store.waitlist(session, budget.id, lock=True)
    entries = []
    for entry in await store.waitlist_like(session, budget.incentive_type, lock=True):
        if entry.budget_id == budget.id or of_an_earlier_year(
            entry.budget_id, budget.incentive_type, budget.fiscal_year
        ):
            entries.append(entry)
    return entries


async def open_waiting_for_new_year(uow: UnitOfWork, now: datetime) -> int:
    """At a year end, open the awards still waiting for an earlier year's budget that the
    current fiscal year's budgets (set up before the year began) now cover; returns how many
    opened. The periodic sweep for what no top-up of the new year announces."""
    opened = 0
    for budget in await store.budgets_of_year(uow.session, fiscal_year(now)):
        if await store.waits_before(uow.session, budget.incentive_type, budget.fiscal_year):
            opened += await open_waiting(uow, budget.id, Origin(SYSTEM), now)
    return opened


async def _open_award(uow: UnitOfWork, award_id: str) -> Any:
    award = await batch.award(uow, award_id, lock=True)
    if award is None:
        raise BusinessRefusal(f"award {award_id} does not exist")
    return award


async def release_tranche(
    uow: UnitOfWork, command: ReleaseTranche, origin: Origin, now: datetime
) -> str | None:
    """Release a tranche: store its payment (id generated here, before any rail call) for the
    payout worker. Returns the payment id; None when the tranche was released already."""
    session = uow.session
    award = await _open_award(uow, command.award_id)
    if award.state != AwardState.OPEN.value:
        raise BusinessRefusal(f"award {command.award_id} is {award.state}")
    t = TRANCHES.c
    tranche = await batch.tranche(uow, command.award_id, command.sequence)
    if tranche is None:
        raise BusinessRefusal(f"award {command.award_id} has no tranche {command.sequence}")
    if tranche.state != TrancheState.SCHEDULED.value:
        return None  # released before: its payment exists, one per tranche
    payment_id = f"pay_{uuid.uuid4().hex}"
    await store.update(
        session,
        TRANCHES,
        t.award_id == command.award_id,
        t.sequence == command.sequence,
        t.state == TrancheState.SCHEDULED.value,
        state=TrancheState.RELEASED.value,
        updated_at=now,
    )
    batch.remember_tranche(
        uow, command.award_id, command.sequence, state=TrancheState.RELEASED.value, updated_at=now
    )
    await store.insert(
        session,
        PAYMENTS,
        {
            "id": payment_id,
            "award_id": command.award_id,
            "sequence": command.sequence,
            "amount": tranche.amount,
            "currency": award.currency,
            "beneficiary": award.firm_id,
            "state": PaymentState.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        },
    )
    _stage(
        uow,
        TrancheReleased(
            award_id=command.award_id,
            application_id=command.application_id,
            sequence=command.sequence,
            amount=as_money(tranche.amount, award.currency),
            idempotency_key=payment_id,
            released_at=now,
        ),
        command.application_id,
        origin,
        uuid.UUID(award.correlation_id),
        now,
    )
    return payment_id


async def charge_award(
    uow: UnitOfWork, command: ChargeAward, origin: Origin, now: datetime
) -> None:
    """Charge an open award to the budget of the fiscal year its offer was accepted in.

    What is reserved and unpaid moves from the award's budget to ``command.budget_id`` in one
    transaction: reserved from the new budget first (nothing written when it cannot cover it,
    which is reported as ``budget.exhausted``), then given back to the old one. Charging an
    award to its own budget does nothing, so a redelivered command moves nothing twice.
    """
    session = uow.session
    award = await _open_award(uow, command.award_id)
    if award.budget_id == command.budget_id:
        return
    batch.forget(uow, command.award_id)  # its budget changes below
    if award.state != AwardState.OPEN.value:
        raise BusinessRefusal(f"award {command.award_id} is {award.state}")
    currency = award.currency
    budget = await store.budget(session, command.budget_id)
    if budget is not None and budget.currency != currency:
        raise BusinessRefusal(f"budget {command.budget_id} is kept in {budget.currency}")
    reserved_account = award_account(command.award_id, AccountKind.RESERVED)
    reserved = (await store.balances(session, [reserved_account]))[reserved_account]
    correlation_id = uuid.UUID(award.correlation_id)
    try:
        if budget is None:
            raise Overdrawn(f"budget {command.budget_id} does not exist")
        if reserved > 0:
            await _book(
                uow,
                reserve(command.budget_id, command.award_id, reserved),
                currency=currency,
                budget_id=command.budget_id,
                award_id=command.award_id,
                origin=origin,
                note=f"offer accepted in fiscal year {fiscal_year(command.accepted_at)}",
                now=now,
                subject=command.application_id,
                correlation_id=correlation_id,
            )
    except Overdrawn:
        requested = as_money(reserved, currency)
        await _report_shortfall(uow, command, requested, origin, correlation_id, now)
        return
    if reserved > 0:
        await _book(
            uow,
            release(award.budget_id, command.award_id, reserved),
            currency=currency,
            budget_id=award.budget_id,
            award_id=command.award_id,
            origin=origin,
            note=f"charged to {command.budget_id}: the offer was accepted in that fiscal year",
            now=now,
            subject=command.application_id,
            correlation_id=correlation_id,
        )
    await store.update(
        session,
        AWARDS,
        AWARDS.c.id == command.award_id,
        budget_id=command.budget_id,
        updated_at=now,
    )
    _stage(
        uow,
        AwardCharged(
            award_id=command.award_id,
            application_id=command.application_id,
            from_budget_id=award.budget_id,
            budget_id=command.budget_id,
            amount=as_money(reserved, currency),
            charged_at=now,
        ),
        command.application_id,
        origin,
        correlation_id,
        now,
    )


async def cancel_award(
    uow: UnitOfWork, command: CancelAward, origin: Origin, now: datetime
) -> None:
    """Cancel an award: unpaid tranches are cancelled and what is reserved and not in flight
    goes back to the budget. Cancelling twice does nothing."""
    session = uow.session
    waiting = await batch.waiting(uow, command.award_id)
    batch.forget(uow, command.award_id)  # what follows changes its rows
    if waiting is not None:  # never opened: it leaves the budget's waitlist, nothing to give back
        await store.delete_waiting(session, command.award_id)
        nothing = as_balance(
            Decimal(0), OpenAward.model_validate_json(waiting.command).total.currency
        )
        _cancelled(uow, command, nothing, origin, uuid.UUID(waiting.correlation_id), now)
        return
    award = await _open_award(uow, command.award_id)
    if award.state == AwardState.CANCELLED.value:
        return
    if award.state == AwardState.CLOSED.value:
        raise BusinessRefusal(f"award {command.award_id} is closed: every tranche was paid")
    p, t = PAYMENTS.c, TRANCHES.c
    # Payments not sent yet are withdrawn; those sent keep their reservation until settled.
    await store.update(
        session,
        PAYMENTS,
        p.award_id == command.award_id,
        p.state == PaymentState.PENDING.value,
        p.attempts == 0,
        state=PaymentState.CANCELLED.value,
        updated_at=now,
    )
    in_flight = [
        r for r in await store.payments_of(session, command.award_id) if r.state in OPEN_PAYMENTS
    ]
    flying = {r.sequence for r in in_flight}
    for tranche in await store.tranches_of(session, command.award_id):
        if tranche.state in (TrancheState.SCHEDULED.value, TrancheState.RELEASED.value) and (
            tranche.sequence not in flying
        ):
            await store.update(
                session,
                TRANCHES,
                t.award_id == command.award_id,
                t.sequence == tranche.sequence,
                state=TrancheState.CANCELLED.value,
                updated_at=now,
            )
    reserved_account = award_account(command.award_id, AccountKind.RESERVED)
    reserved = (await store.balances(session, [reserved_account]))[reserved_account]
    returned = reserved - sum((Decimal(r.amount) for r in in_flight), Decimal(0))
    if returned > 0:
        await _book(
            uow,
            release(award.budget_id, command.award_id, returned),
            currency=award.currency,
            budget_id=award.budget_id,
            award_id=command.award_id,
            origin=origin,
            note=f"award cancelled: {command.reason}",
            now=now,
            subject=command.application_id,
            correlation_id=uuid.UUID(award.correlation_id),
        )
    await store.update(
        session,
        AWARDS,
        AWARDS.c.id == command.award_id,
        state=AwardState.CANCELLED.value,
        updated_at=now,
    )
    given_back = as_balance(max(returned, Decimal(0)), award.currency)
    _cancelled(uow, command, given_back, origin, uuid.UUID(award.correlation_id), now)


def _cancelled(
    uow: UnitOfWork,
    command: CancelAward,
    returned: Balance,
    origin: Origin,
    correlation_id: uuid.UUID,
    now: datetime,
) -> None:
    """Stage ``award.cancelled``, naming what went back to the budget."""
    _stage(
        uow,
        AwardCancelled(
            award_id=command.award_id,
            application_id=command.application_id,
            reason_code=command.reason_code,
            reason=command.reason,
            returned_to_budget=returned,
            cancelled_at=now,
        ),
        command.application_id,
        origin,
        correlation_id,
        now,
    )


# --- payouts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RailAnswer:
    """What the rail said about a payment (or that it could not say)."""

    state: PaymentState | None  # PAID, REJECTED, or None for a transient failure
    reference: str | None = None
    reason: str | None = None
    reason_code: TrancheFailureReason = TrancheFailureReason.RAIL_REJECTED
    #: True when the request may have reached the rail (a timeout): the outcome is unknown.
    maybe_sent: bool = False


async def settle(uow: UnitOfWork, payment_id: str, answer: RailAnswer, now: datetime) -> None:
    """Record the rail's answer for a payment, once: a paid or rejected payment stays so."""
    session = uow.session
    payment = await store.payment(session, payment_id, lock=True)
    if payment is None or payment.state not in OPEN_PAYMENTS:
        return
    p = PAYMENTS.c
    if answer.state is None:  # transient: try again later with the same key
        attempts = payment.attempts + 1
        state = PaymentState.UNKNOWN if answer.maybe_sent else PaymentState(payment.state)
        await store.update(
            session,
            PAYMENTS,
            p.id == payment_id,
            state=state.value,
            attempts=attempts,
            next_attempt_at=now + timedelta(seconds=retry_delay(attempts)),
            last_error=answer.reason,
            updated_at=now,
        )
        return
    award = await store.award(session, payment.award_id, lock=True)
    origin = Origin(SYSTEM)
    t = TRANCHES.c
    amount = as_money(Decimal(payment.amount), payment.currency)
    journey = (award.application_id, origin, uuid.UUID(award.correlation_id), now)

    async def outcome(state: PaymentState, tranche: TrancheState, **recorded: Any) -> None:
        """The payment and its tranche reach their final states."""
        await store.update(
            session, PAYMENTS, p.id == payment_id, state=state.value, updated_at=now, **recorded
        )
        await store.update(
            session,
            TRANCHES,
            t.award_id == payment.award_id,
            t.sequence == payment.sequence,
            state=tranche.value,
            updated_at=now,
        )

    if answer.state is PaymentState.PAID:
        await _book(
            uow,
            pay(payment.award_id, Decimal(payment.amount)),
            currency=payment.currency,
            budget_id=award.budget_id,
            award_id=payment.award_id,
            sequence=payment.sequence,
            origin=origin,
            note=f"paid by the rail, reference {answer.reference}",
            now=now,
            subject=award.application_id,
            correlation_id=uuid.UUID(award.correlation_id),
        )
        await outcome(PaymentState.PAID, TrancheState.PAID, rail_reference=answer.reference)
        _stage(
            uow,
            TranchePaid(
                award_id=payment.award_id,
                application_id=award.application_id,
                sequence=payment.sequence,
                amount=amount,
                idempotency_key=payment_id,
                payment_reference=answer.reference or payment_id,
                paid_at=now,
            ),
            *journey,
        )
        tranches = await store.tranches_of(session, payment.award_id)
        if award.state == AwardState.OPEN.value and all(
            r.state == TrancheState.PAID.value for r in tranches
        ):
            await store.update(
                session,
                AWARDS,
                AWARDS.c.id == payment.award_id,
                state=AwardState.CLOSED.value,
                updated_at=now,
            )
        return
    await outcome(PaymentState.REJECTED, TrancheState.FAILED, last_error=answer.reason)
    if award.state == AwardState.CANCELLED.value:  # its reservation was kept for this payment
        await _book(
            uow,
            release(award.budget_id, payment.award_id, Decimal(payment.amount)),
            currency=payment.currency,
            budget_id=award.budget_id,
            award_id=payment.award_id,
            origin=origin,
            note="payment of a cancelled award rejected",
            now=now,
            subject=award.application_id,
            correlation_id=uuid.UUID(award.correlation_id),
        )
    _stage(
        uow,
        TrancheFailed(
            award_id=payment.award_id,
            application_id=award.application_id,
            sequence=payment.sequence,
            amount=amount,
            idempotency_key=payment_id,
            reason_code=answer.reason_code,
            reason=answer.reason or "The payment rail rejected the payment.",
            retryable=False,
            failed_at=now,
        ),
        *journey,
    )


async def back_to_pending(uow: UnitOfWork, payment_id: str, now: datetime) -> None:
    """An ``unknown`` payment the rail never made: send it again (same key) when due."""
    p = PAYMENTS.c
    await store.update(
        uow.session,
        PAYMENTS,
        p.id == payment_id,
        p.state == PaymentState.UNKNOWN.value,
        state=PaymentState.PENDING.value,
        next_attempt_at=now,
        updated_at=now,
    )
