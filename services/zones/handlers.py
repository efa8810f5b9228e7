"""Message handlers of the zones service: decode, call one use case, let the consumer commit."""

from __future__ import annotations

from collections.abc import Sequence

from contracts.envelope import utcnow
from contracts.v1.zones import AllocateZoneSpace, ConfirmZoneHold, HoldZoneSpace, ReleaseZoneSpace
from services.kit.consumer import Incoming
from services.kit.events import Origin
from services.kit.uow import UnitOfWork
from services.zones import commands

#: The command types on ``zones.commands`` this service applies.
HANDLED = ("zone.hold", "zone.allocate", "zone.confirm", "zone.release")


class ZoneCommandHandler:
    """The ``zones.commands`` handler: a batch's holds share one read of the locked counters
    (:func:`commands.preload`), then each command is applied in record order."""

    def __init__(self, *, default_hold_seconds: int) -> None:
        self.default_hold_seconds = default_hold_seconds

    async def preload(self, batch: Sequence[Incoming], uow: UnitOfWork) -> None:
        holds = [
            incoming.envelope.payload
            for incoming in batch
            if isinstance(incoming.envelope.payload, HoldZoneSpace | AllocateZoneSpace)
        ]
        await commands.preload(uow, holds, utcnow())

    async def __call__(self, incoming: Incoming, uow: UnitOfWork) -> None:
        envelope = incoming.envelope
        origin = Origin.of(envelope)
        payload = envelope.payload
        now = utcnow()
        if isinstance(payload, HoldZoneSpace | AllocateZoneSpace):
            await commands.hold(
                uow, payload, origin, now, default_hold_seconds=self.default_hold_seconds
            )
        elif isinstance(payload, ConfirmZoneHold):
            await commands.confirm(uow, payload, origin, now)
        elif isinstance(payload, ReleaseZoneSpace):
            await commands.release(uow, payload, origin, now)


def make_handler(*, default_hold_seconds: int) -> ZoneCommandHandler:
    """The ``zones.commands`` handler, bound to the service's settings."""
    return ZoneCommandHandler(default_hold_seconds=default_hold_seconds)
