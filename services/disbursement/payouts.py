"""The payout worker and reconciliation.

A payment row exists (committed, id generated) before the rail is ever called. The worker then
takes a round of due ``pending`` payments, sends them to the rail's batch endpoint in requests
of up to ``per_call`` payments (at most ``concurrency`` requests in flight), each payment with
its id as its idempotency key, and records the round's answers in one unit of work. A crash
between the rail's payment and that record leaves the rows ``pending`` (or ``unknown`` after a
timeout); sending them again returns the payments the rail already made, and :func:`reconcile`
settles every ``unknown`` one by asking the rail.
So a tranche is paid once, whatever fails when.

While the rail does not answer, the payout loop reports that it waits for the ``rail`` (in
``/health``) and probes the rail with the next pending payment every few seconds (its key makes
that safe), one payment at a time instead of whole rounds; once the rail answers again, every
pending payment is due at once, so the backlog drains without delay.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from contracts.envelope import utcnow
from services.disbursement import commands, store
from services.disbursement.commands import RailAnswer
from services.disbursement.domain import PaymentState
from services.disbursement.rail import RailClient, RailPayment
from services.kit.health import Waits
from services.kit.logging import get_logger
from services.kit.uow import UnitOfWorkFactory

log = get_logger(__name__)

#: The payout loop's entry in the service's :class:`~services.kit.health.Waits`.
RAIL_WAIT = "payouts"
#: While the rail is away, it is probed at most this often (seconds).
RAIL_PROBE_SECONDS = 2.0
#: Payments in one rail request (its batch endpoint takes up to 500). One request per payment
#: cost both sides more CPU in HTTP than in the payment itself.
PAYMENTS_PER_CALL = 50


class RailWatch:
    """Whether the rail answered the last payout, reported to ``waits`` (``/health``)."""

    def __init__(self, waits: Waits | None = None) -> None:
        self.waits = waits if waits is not None else Waits()
        self.away_since: float | None = None
        self.last_probe = 0.0

    def failed(self, reason: str | None) -> None:
        if self.away_since is None:
            self.away_since = time.monotonic()
        self.waits.begin(RAIL_WAIT, "payouts", "rail", reason or "no answer")

    def answered(self) -> bool:
        """The rail answered; True if it had been away (the backlog is then due at once)."""
        was_away = self.away_since is not None
        self.away_since = None
        self.waits.end(RAIL_WAIT)
        return was_away

    def probe_due(self) -> bool:
        if self.away_since is None or time.monotonic() - self.last_probe < RAIL_PROBE_SECONDS:
            return False
        self.last_probe = time.monotonic()
        return True


async def pay_due(
    uow_factory: UnitOfWorkFactory,
    rail: RailClient,
    *,
    limit: int = 200,
    concurrency: int = 16,
    per_call: int = PAYMENTS_PER_CALL,
    watch: RailWatch | None = None,
) -> int:
    """Send the due pending payments, ``per_call`` in one rail request and at most
    ``concurrency`` requests at once; returns how many got a final answer."""
    pending = [PaymentState.PENDING.value]
    async with uow_factory() as uow:
        if watch is not None and watch.away_since is not None:
            limit = 1  # the rail is away: one payment probes it, the rest wait
        due = await store.payments_in(uow.session, pending, due_by=utcnow(), limit=limit)
        if not due and watch is not None and watch.probe_due():
            # The rail was away: ask again with the next payment rather than its backoff.
            due = await store.payments_in(uow.session, pending, due_by=None, limit=1)
    if not due:
        return 0
    gate = asyncio.Semaphore(concurrency)

    async def send(chunk: list[Any]) -> list[RailAnswer]:
        async with gate:
            return await rail.pay_many(
                [
                    RailPayment(
                        p.id,
                        p.amount,
                        p.currency,
                        p.beneficiary,
                        reference=f"{p.award_id}/tranche-{p.sequence}",
                    )
                    for p in chunk
                ]
            )

    chunks = [due[i : i + per_call] for i in range(0, len(due), per_call)]
    answers = [a for answered in await asyncio.gather(*map(send, chunks)) for a in answered]
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
    unanswered = [(p, a) for p, a in zip(due, answers, strict=True) if a.state is None]
    for payment, answer in unanswered:
        log.warning("payout not answered; will retry", payment_id=payment.id, error=answer.reason)
    settled = len(due) - len(unanswered)
    if watch is not None:
        if not settled:
            watch.failed(unanswered[0][1].reason)
        elif watch.answered():
            log.info("the rail answers again; pending payouts are due now")
            async with uow_factory() as uow:
                await store.bring_forward(uow.session, pending, utcnow())
                await uow.commit()
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


async def wake_for_new_year(uow_factory: UnitOfWorkFactory) -> int:
    """Open the awards an earlier year's budget left waiting that this fiscal year's budgets
    cover (:func:`commands.open_waiting_for_new_year`); returns how many opened."""
    async with uow_factory() as uow:
        opened = await commands.open_waiting_for_new_year(uow, utcnow())
        await uow.commit()
    return opened
