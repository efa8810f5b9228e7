"""Staging a service's events: who caused them, and one call that writes the outbox row.

A use case receives an :class:`Origin` (the actor, the application's journey and the message
that caused it) and stages each event it emits with :func:`stage_event`, in the caller's unit
of work, so the events are published if and only if the state change commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from contracts.catalog import make_envelope, message_type_of
from contracts.envelope import Actor, Envelope
from contracts.topics import topic_for_type
from services.kit.uow import UnitOfWork


@dataclass(frozen=True)
class Origin:
    """Who and what caused a use case: the actor, the journey and the causing message."""

    actor: Actor
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None

    @classmethod
    def of(cls, envelope: Envelope[Any]) -> Origin:
        """The origin of the work a consumed message causes."""
        return cls(envelope.actor, envelope.correlation_id, envelope.event_id)

    @property
    def who(self) -> str:
        """The actor as one string, ``kind:id``, for records that name it."""
        return f"{self.actor.kind}:{self.actor.id}"


def stage_event(
    uow: UnitOfWork,
    payload: BaseModel,
    *,
    producer: str,
    subject: str,
    origin: Origin,
    correlation_id: uuid.UUID,
    now: datetime,
) -> None:
    """Wrap ``payload`` in its envelope and stage it on its topic in ``uow``'s outbox."""
    message_type = message_type_of(payload)
    envelope = make_envelope(
        message_type,
        payload,
        subject=subject,
        actor=origin.actor,
        producer=producer,
        correlation_id=correlation_id,
        causation_id=origin.causation_id,
        occurred_at=now,
    )
    uow.add_outbox(envelope, topic_for_type(message_type).name)
