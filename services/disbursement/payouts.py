"""The payout worker and reconciliation.

A payment row exists (committed, id generated) before the rail is ever called. The worker then
takes a round of due ``pending`` payments, sends them to the rail concurrently (at most
``concurrency`` calls in flight), each with its id as the ``Idempotency-Key``, and records the
round's answers in one unit of work. A crash between the rail's payment and that record leaves
the rows ``pending`` (or ``unknown`` after a timeout); sending them again returns the payments
the rail already made, and :func:`reconcile` settles every ``unknown`` one by asking the rail.
So a tranche is paid once, whatever fails when.
"""

from __future__ import annotations

import asyncio
from typing import Any

from contracts.envelope import utcnow
from services.disbursement import commands, store
from services.disbursement.commands import RailAnswer
from services.disbursement.domain import PaymentState
from services.disbursement.rail import RailClient
from services.kit.logging import get_logger
from services.kit.uow import UnitOfWorkFactory

log = get_logger(__name__)


async def pay_due(
    uow_factory: UnitOfWorkFactory, rail: RailClient, *, limit: int = 200, concurrency: int = 16
) -> int:
    """Send the due pending payments; returns how many got a final answer."""
    async with uow_factory() as uow:
        due = await store.payments_in(
            uow.session, [PaymentState.PENDING.value], due_by=utcnow(), limit=limit
        )
    if not due:
        return 0
    gate = asyncio.Semaphore(concurrency)

    async def send(payment: Any) -> RailAnswer:
        async with gate:
            return await rail.pay(
                payment.id,
                payment.amount,
                payment.currency,
                payment.beneficiary,
                reference=f"{payment.award_id}/tranche-{payment.sequence}",
            )

    answers = await asyncio.gather(*(send(p) for p in due))
    try:
        async with uow_factory() as uow:
            now = utcnow()
            for payment, answer in zip(due, answers, strict=True):
                await commands.settle(uow, payment.id, answer, now)
            await uow.commit()
    except Exception as exc:
        # One answer that cannot be recorded must not hold back the others: one at a time.
        log.warning("recording a payout round failed; one by one", error=f"{exc}")
        for payment, answer in zip(due, answers, strict=True):
            async with uow_factory() as uow:
                await commands.settle(uow, payment.id, answer, utcnow())
                await uow.commit()
    settled = 0
    for payment, answer in zip(due, answers, strict=True):
        settled += answer.state is not None
        if answer.state is None:
            log.warning(
                "payout not answered; will retry", payment_id=payment.id, error=answer.reason
            )
    return settled


async def reconcile(uow_factory: UnitOfWorkFactory, rail: RailClient, *, limit: int = 500) -> int:
    """Settle every payment whose outcome is unknown by asking the rail; returns how many.

    A payment the rail never made goes back to ``pending``: sending it again is safe, its key
    is the same.
    """
    async with uow_factory() as uow:
        open_payments = await store.payments_in(
            uow.session, [PaymentState.UNKNOWN.value], due_by=None, limit=limit
        )
    settled = 0
    for payment in open_payments:
        answer = await rail.look_up(payment.id)
        async with uow_factory() as uow:
            if answer is None:
                await commands.back_to_pending(uow, payment.id, utcnow())
            elif answer.state is not None:
                await commands.settle(uow, payment.id, answer, utcnow())
                settled += 1
            await uow.commit()
    return settled
