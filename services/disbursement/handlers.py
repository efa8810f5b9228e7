"""Message handlers of the disbursement service: decode, call one use case, let the consumer
commit. Payouts happen after the commit, in the payout worker (see ``payouts``)."""

from __future__ import annotations

from contracts.envelope import utcnow
from contracts.v1.disbursement import CancelAward, ChargeAward, OpenAward, ReleaseTranche
from services.disbursement import commands
from services.kit.consumer import Incoming
from services.kit.events import Origin
from services.kit.uow import UnitOfWork

#: The command types on ``disbursement.commands`` this service applies.
HANDLED = ("award.open", "tranche.release", "award.cancel", "award.charge")


async def handle_disbursement_command(incoming: Incoming, uow: UnitOfWork) -> None:
    """Apply one ``disbursement.commands`` message (the consumer commits)."""
    envelope = incoming.envelope
    origin = Origin(envelope.actor, envelope.correlation_id, envelope.event_id)
    payload = envelope.payload
    now = utcnow()
    if isinstance(payload, OpenAward):
        await commands.open_award(uow, payload, origin, now)
    elif isinstance(payload, ReleaseTranche):
        await commands.release_tranche(uow, payload, origin, now)
    elif isinstance(payload, CancelAward):
        await commands.cancel_award(uow, payload, origin, now)
    elif isinstance(payload, ChargeAward):
        await commands.charge_award(uow, payload, origin, now)
