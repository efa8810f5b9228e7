"""Message handlers of the audit service."""

from __future__ import annotations

from services.audit.models import LedgerEntry
from services.kit.consumer import Incoming
from services.kit.uow import UnitOfWork


async def append_to_ledger(incoming: Incoming, uow: UnitOfWork) -> None:
    """Append the message to the ledger, in the consumer's transaction (so exactly once)."""
    envelope, record = incoming.envelope, incoming.record
    uow.session.add(
        LedgerEntry(
            event_id=envelope.event_id,
            message_type=envelope.type,
            subject=envelope.subject,
            correlation_id=envelope.correlation_id,
            producer=envelope.producer,
            actor_kind=str(envelope.actor.kind),
            actor_id=envelope.actor.id,
            occurred_at=envelope.occurred_at,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            envelope=record.value,
        )
    )
