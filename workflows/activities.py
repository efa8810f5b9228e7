"""Activities: the workflow's only way to touch the outside world.

Publishing goes straight to Kafka, not through an outbox: Temporal already makes the activity
durable (it is retried until it succeeds), and the envelope's deterministic ``event_id`` lets
consumers drop the copies a retry produces.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from pydantic import BaseModel, Field
from temporalio import activity

from services.kit.messaging import Record

#: Sends records and returns once the broker acknowledged all of them.
PublishFn = Callable[[Sequence[Record]], Awaitable[None]]


class OutgoingMessage(BaseModel):
    """One record to publish, already encoded by the workflow."""

    topic: str = Field(description="Destination topic.")
    key: str = Field(description="Record key: the application id.")
    value: str = Field(description="The encoded envelope (UTF-8 JSON).")
    headers: list[tuple[str, str]] = Field(default_factory=list, description="Record headers.")


class Publisher:
    """Holds the worker's way to publish; its bound method is the activity."""

    def __init__(self, publish: PublishFn) -> None:
        self._publish = publish

    @activity.defn(name="publish_message")
    async def publish_message(self, message: OutgoingMessage) -> None:
        """Send one record and wait for the broker's acknowledgement (acks=all)."""
        await self._publish(
            [
                Record(
                    topic=message.topic,
                    value=message.value.encode(),
                    key=message.key.encode(),
                    headers=[(k, v.encode()) for k, v in message.headers],
                )
            ]
        )
