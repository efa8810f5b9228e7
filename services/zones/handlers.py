"""Message handlers of the zones service: decode, call one use case, let the consumer commit."""

from __future__ import annotations

from contracts.envelope import utcnow
from contracts.v1.zones import AllocateZoneSpace, ConfirmZoneHold, HoldZoneSpace, ReleaseZoneSpace
from services.kit.consumer import Handler, Incoming
from services.kit.events import Origin
from services.kit.uow import UnitOfWork
from services.zones import commands

#: The command types on ``zones.commands`` this service applies.
HANDLED = ("zone.hold", "zone.allocate", "zone.confirm", "zone.release")


def make_handler(*, default_hold_seconds: int) -> Handler:
    """The ``zones.commands`` handler, bound to the service's settings."""

    async def handle_zone_command(incoming: Incoming, uow: UnitOfWork) -> None:
        envelope = incoming.envelope
        origin = Origin.of(envelope)
        payload = envelope.payload
        now = utcnow()
        if isinstance(payload, HoldZoneSpace | AllocateZoneSpace):
            await commands.hold(
                uow, payload, origin, now, default_hold_seconds=default_hold_seconds
            )
        elif isinstance(payload, ConfirmZoneHold):
            await commands.confirm(uow, payload, origin, now)
        elif isinstance(payload, ReleaseZoneSpace):
            await commands.release(uow, payload, origin, now)

    return handle_zone_command
