"""The idempotent consumer: decode, deduplicate, handle, commit, or dead-letter.

For every record:

1. decode the envelope (``contracts.catalog.decode``). Undecodable, schema-invalid or
   unknown-type records are dead-lettered at once;
2. skip types this consumer does not handle (they are not errors: topics carry several types);
3. in one :class:`~services.kit.uow.UnitOfWork`: mark ``(consumer, event_id)`` processed (a
   duplicate stops here and changes nothing), call the handler, commit. State, the processed
   mark and any outbox rows become durable together;
4. a :class:`~services.kit.errors.FinalError` from the handler dead-letters the record; any
   other error is retried with backoff (a fresh unit of work per attempt) and dead-lettered
   with ``retries_exhausted`` when the policy runs out.

The Kafka offset is committed only after one of those outcomes is durable (the state commit or
the broker's acknowledgement of the DLQ record): at least once, never lost. If even the DLQ
publish fails, the exception propagates, FastStream rewinds to the record, and it is tried again.

Dead-lettered messages are *not* marked processed, so a replay after a fix is processed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Union

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler, TypeAdapter
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from contracts import catalog
from contracts import errors as contract_errors
from contracts.envelope import Envelope
from contracts.topics import get_topic
from services.kit.dlq import ConsumedRecord, dead_letter
from services.kit.errors import (
    FinalError,
    InvalidMessage,
    RetriesExhausted,
    SchemaInvalid,
    UnknownType,
    UnsupportedSchemaVersion,
)
from services.kit.logging import bind_context, get_logger
from services.kit.messaging import (
    CONSUMER_HEARTBEAT_INTERVAL_MS,
    CONSUMER_SESSION_TIMEOUT_MS,
)
from services.kit.outbox import Publish
from services.kit.retry import RetryPolicy, call_with_retries
from services.kit.uow import UnitOfWork, UnitOfWorkFactory

log = get_logger(__name__)


@dataclass(frozen=True)
class Incoming:
    """What a handler receives: the decoded envelope and the record it came from."""

    envelope: Envelope[Any]
    record: ConsumedRecord


#: A message handler. It changes state through ``uow`` and never commits.
Handler = Callable[[Incoming, UnitOfWork], Awaitable[None]]
#: Turns record bytes into an envelope; raises the kit's InvalidMessage family on bad input.
Decoder = Callable[[bytes], Envelope[Any]]


class Outcome(StrEnum):
    """What became of one record."""

    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    DEAD_LETTERED = "dead_lettered"


def decode_envelope(raw: bytes) -> Envelope[Any]:
    """Decode with the contracts catalog, mapping its errors onto the kit's final errors."""
    try:
        return catalog.decode(raw)
    except contract_errors.UnknownMessageType as exc:
        raise UnknownType(str(exc)) from exc
    except contract_errors.UnsupportedSchemaVersion as exc:
        raise UnsupportedSchemaVersion(str(exc)) from exc
    except contract_errors.SchemaInvalid as exc:
        raise SchemaInvalid(str(exc), extensions={"errors": exc.errors}) from exc
    except contract_errors.ContractError as exc:
        raise InvalidMessage(str(exc)) from exc


class IdempotentConsumer:
    """Processes records for one named consumer; independent of the broker client.

    ``name`` is the deduplication scope (``processed_messages.consumer``): two consumers in one
    service that both need to see a message use different names.
    """

    def __init__(
        self,
        name: str,
        handler: Handler,
        *,
        uow_factory: UnitOfWorkFactory,
        dead_letters: Publish,
        types: Collection[str] | None = None,
        retry: RetryPolicy | None = None,
        decode: Decoder = decode_envelope,
    ) -> None:
        self.name = name
        self._handler = handler
        self._uow_factory = uow_factory
        self._dead_letters = dead_letters
        self.types = frozenset(types) if types is not None else None
        self._retry = retry or RetryPolicy()
        self._decode = decode

    async def process(self, record: ConsumedRecord) -> Outcome:
        """Handle one record to a durable outcome, or raise (and the record is redelivered)."""
        with bind_context(
            consumer=self.name,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        ):
            try:
                envelope = self._decode(record.value)
            except FinalError as exc:
                await self._dead_letter(record, exc, attempts=1)
                return Outcome.DEAD_LETTERED
            with bind_context(
                event_id=envelope.event_id,
                correlation_id=envelope.correlation_id,
                causation_id=envelope.causation_id,
                message_type=envelope.type,
            ):
                if self.types is not None and envelope.type not in self.types:
                    log.debug("message type not handled here, skipped")
                    return Outcome.IGNORED
                incoming = Incoming(envelope=envelope, record=record)
                try:
                    outcome = await call_with_retries(self._retry, lambda: self._attempt(incoming))
                except RetriesExhausted as exc:
                    await self._dead_letter(record, exc, attempts=exc.attempts)
                    return Outcome.DEAD_LETTERED
                except FinalError as exc:
                    await self._dead_letter(record, exc, attempts=1)
                    return Outcome.DEAD_LETTERED
                log.debug("message handled", outcome=str(outcome))
                return outcome

    async def _attempt(self, incoming: Incoming) -> Outcome:
        async with self._uow_factory() as uow:
            if not await uow.mark_processed(self.name, incoming.envelope.event_id):
                log.info("duplicate delivery ignored")
                return Outcome.DUPLICATE
            await self._handler(incoming, uow)
            await uow.commit()
        return Outcome.PROCESSED

    async def _dead_letter(self, record: ConsumedRecord, error: FinalError, attempts: int) -> None:
        # For exhausted retries the reason header says so; the error headers name the cause.
        cause = error.last_error if isinstance(error, RetriesExhausted) else error
        dlq_record = dead_letter(
            record, reason=error.reason, error=cause, consumer=self.name, attempts=attempts
        )
        # Awaited before the offset is committed: a DLQ record that did not reach the broker
        # must not let the original be acknowledged.
        await self._dead_letters([dlq_record])
        log.error(
            "message dead-lettered",
            reason=str(error.reason),
            dlq_topic=dlq_record.topic,
            error=str(error),
            exc_info=cause,
        )


class _DocumentedAs:
    """A body annotation that validates nothing but documents ``tp`` in AsyncAPI.

    The subscriber must receive *any* bytes (poison included) to dead-letter them itself, yet
    the AsyncAPI document should still show the envelope schemas the channel carries.
    """

    def __init__(self, tp: Any) -> None:
        self._adapter = TypeAdapter(tp)

    def __get_pydantic_core_schema__(
        self, _source: Any, _handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.any_schema()

    def __get_pydantic_json_schema__(
        self, _schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(self._adapter.core_schema)


def _documented_types(types: Collection[str] | None, topics: Iterable[str]) -> set[str]:
    if types is not None:
        return set(types)
    documented: set[str] = set()
    for name in topics:
        try:
            documented.update(get_topic(name).types)
        except KeyError:  # a topic outside the registry (tests, ad-hoc tools): anything goes
            return set(catalog.MESSAGE_TYPES)
    return documented


def _documented_body(types: Iterable[str]) -> Any:
    models: list[type[BaseModel]] = []
    for name in sorted(types):
        model = catalog.MESSAGE_TYPES.get(name)
        if model is not None:
            models.append(model)
    if not models:
        return Annotated[Any, _DocumentedAs(Envelope[BaseModel])]
    envelopes = tuple(Envelope[m] for m in models)  # type: ignore[valid-type]
    union = envelopes[0] if len(envelopes) == 1 else Union[envelopes]  # noqa: UP007
    return Annotated[Any, _DocumentedAs(union)]


async def _raw_body(message: Any) -> Any:
    # Skip FastStream's JSON decoding: the consumer decodes the envelope itself, once.
    return message.body


def subscribe(
    broker: KafkaBroker,
    consumer: IdempotentConsumer,
    *topics: str,
    group_id: str,
    description: str | None = None,
) -> Any:
    """Register ``consumer`` on ``broker`` for ``topics`` in consumer group ``group_id``.

    Offsets are committed after processing (``AckPolicy.NACK_ON_ERROR``: an exception that
    escapes rewinds to the record), new groups start from the earliest offset, and the session
    timeouts suit Tansu. Returns the FastStream subscriber.
    """
    body_type = _documented_body(_documented_types(consumer.types, topics))

    async def handle(body: Any, message: KafkaMessage) -> None:
        await consumer.process(ConsumedRecord.from_kafka(message.raw_message))

    # Annotations are strings under `from __future__ import annotations`; FastStream resolves
    # them from module globals, where the per-subscriber body type does not live.
    handle.__annotations__ = {"body": body_type, "message": KafkaMessage, "return": None}
    handle.__name__ = handle.__qualname__ = f"{consumer.name}_handler"
    subscriber = broker.subscriber(
        *topics,
        group_id=group_id,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        session_timeout_ms=CONSUMER_SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=CONSUMER_HEARTBEAT_INTERVAL_MS,
        decoder=_raw_body,
        description=description,
    )
    subscriber(handle)
    return subscriber
