"""Message handlers of the disbursement service: decode, call one use case, let the consumer
commit. Payouts happen after the commit, in the payout worker (see ``payouts``).

:class:`DisbursementCommands` is a batch handler (see the kit's README): the consumer applies a
whole batch in one transaction, and ``preload`` reads what the batch's commands need with one
statement per table (:mod:`services.disbursement.batch`), locking the batch's awards until the
commit. A command the service cannot apply raises a final error; the consumer then splits the
batch around it, dead-letters it with its reason, and commits the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts.envelope import utcnow
from contracts.v1.disbursement import CancelAward, ChargeAward, OpenAward, ReleaseTranche
from services.disbursement import batch, commands
from services.kit.consumer import Incoming
from services.kit.events import Origin
from services.kit.uow import UnitOfWork

#: The command types on ``disbursement.commands`` this service applies.
HANDLED = ("award.open", "tranche.release", "award.cancel", "award.charge")

_COMMANDS = (OpenAward, ReleaseTranche, CancelAward, ChargeAward)


class DisbursementCommands:
    """Applies ``disbursement.commands`` messages, a consumer batch at a time."""

    async def preload(self, messages: Sequence[Incoming], uow: UnitOfWork) -> None:
        """Read the awards, waitlist entries, tranches and budgets of the batch at once."""
        payloads = [m.envelope.payload for m in messages]
        await batch.preload(
            uow,
            award_ids=[p.award_id for p in payloads if isinstance(p, _COMMANDS)],
            releases=[p.award_id for p in payloads if isinstance(p, ReleaseTranche)],
            budget_ids=[p.budget_id for p in payloads if isinstance(p, OpenAward)],
        )

    async def __call__(self, incoming: Incoming, uow: UnitOfWork) -> None:
        await handle_disbursement_command(incoming, uow)


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
