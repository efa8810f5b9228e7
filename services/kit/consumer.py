"""The idempotent consumer: decode, deduplicate, handle, commit, or dead-letter, by the batch.

Records arrive in batches (one ``getmany`` of the Kafka client; a single record is a batch of
one). For a batch:

1. decode every record (``contracts.catalog.decode``). Undecodable, schema-invalid or
   unknown-type records become dead letters at once; types this consumer does not handle are
   skipped (not errors: topics carry several types). A record whose ``type`` header (the
   envelope's own type, see :meth:`Envelope.headers`) names a catalogued type this consumer
   does not handle is skipped before its body is decoded: a service pays nothing for the
   types it ignores on a shared topic;
2. in ONE :class:`~services.kit.uow.UnitOfWork`: mark every remaining ``(consumer, event_id)``
   processed with one statement (the ids already marked, and repeats inside the batch, are
   duplicates and change nothing), call a batch handler's ``preload`` with the new messages
   (:class:`BatchHandler`), run the handler of each new message in record order, and commit
   once (the unit of work writes the staged rows per table, then the outbox rows). State,
   processed marks and outbox rows become durable together;
3. if one handler fails, the transaction is rolled back and the batch is split around that
   message: the messages before it run again as a batch, the failing one runs alone with the
   per-message policy (a :class:`~services.kit.errors.FinalError` dead-letters it; any other
   error is transient: it is retried with capped backoff for as long as it lasts, never
   dead-lettered; the batch's failure counts as its first attempt), then the messages after it
   continue as a batch. Errors outside the handlers (the marks, ``preload``, the staged rows,
   the outbox insert, the commit) retry the whole batch the same way; a final error there
   falls back to one message at a time, where it dead-letters only the message whose own
   ``preload`` or rows fail. While a lane waits, it reports the dependency it waits for to
   the service's :class:`~services.kit.health.Waits` (``/health`` says ``degraded``). After a
   hold (:attr:`RetryPolicy.hold`) of waiting, :class:`~services.kit.errors.StillWaiting`
   escapes: nothing of the batch is acknowledged, the subscriber rewinds and polls the same
   records again (so the Kafka member keeps polling and stays in its group), and the wait
   goes on;
4. the dead letters of the batch are published, and the call returns.

The caller commits the Kafka offsets only after that return, when every record of the batch has
a durable outcome (its state commit, or the broker's acknowledgement of its DLQ record): at
least once, never lost. If the DLQ publish fails, the exception propagates, the subscriber
rewinds to the batch, and the redelivery finds the committed messages already marked.

Records of one partition are handled in their offset order, also across splits, so one key's
(one application's) messages are applied in order. A handler may run more than once for one
message (a split re-runs the messages before the failure; any redelivery does): its side effects
outside the unit of work must be idempotent, as at-least-once delivery requires anyway.

Dead-lettered messages are *not* marked processed, so a replay after a fix is processed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Annotated, Any, Protocol, TypeVar, Union

from faststream.kafka import KafkaBroker, Topic
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
    SchemaInvalid,
    UnknownType,
    UnsupportedSchemaVersion,
    dependency_of,
    is_transient,
)
from services.kit.health import Waits
from services.kit.logging import bind_context, get_logger
from services.kit.messaging import (
    CONSUMER_HEARTBEAT_INTERVAL_MS,
    CONSUMER_MAX_POLL_INTERVAL_MS,
    CONSUMER_SESSION_TIMEOUT_MS,
    Record,
)
from services.kit.outbox import Publish
from services.kit.retry import Retrier, RetryPolicy
from services.kit.uow import UnitOfWork, UnitOfWorkFactory

log = get_logger(__name__)

#: Records per batch at most (one ``getmany``). Large enough to amortise the per-batch costs
#: (one mark statement, one outbox insert, one commit, one offset commit), small enough that a
#: split after a failure re-runs little and a transaction holds its row locks briefly.
DEFAULT_MAX_RECORDS = 500
#: How long an idle ``getmany`` waits for records. Records that arrive end the wait at once;
#: this only bounds the idle loop (FastStream also sleeps this long after an empty poll).
DEFAULT_BATCH_TIMEOUT_MS = 20

#: Concurrent lanes per consumer on PostgreSQL (see :meth:`IdempotentConsumer._handle_lanes`):
#: while one lane waits for a database round trip, another runs its handler.
DEFAULT_LANES = 3

_R = TypeVar("_R")

_HANDLERS_DO_NOT_COMMIT = "handlers never commit: the consumer commits once for the whole batch"


@dataclass(frozen=True)
class Incoming:
    """What a handler receives: the decoded envelope and the record it came from."""

    envelope: Envelope[Any]
    record: ConsumedRecord


#: A message handler. It changes state through ``uow`` and never commits.
Handler = Callable[[Incoming, UnitOfWork], Awaitable[None]]
#: A batch handler's ``preload``: called once per transaction with the batch's new messages
#: (in record order), before the handler runs for each of them.
Preload = Callable[[Sequence[Incoming], UnitOfWork], Awaitable[None]]


class BatchHandler(Protocol):
    """A handler that also reads (and locks) what a whole batch needs, in one go.

    ``preload`` reads the rows the batch's messages need with a few statements (for instance
    :meth:`UnitOfWork.load_many` with ``lock=True``) and keeps them in ``uow.memo``; the handler
    then decides each message from the memo and stages its writes (``uow.insert``,
    ``insert_once``, ``upsert``, ``add_outbox``), which the unit of work writes per table at
    commit. ``preload`` sees only the messages that are new (not duplicates), and it runs again,
    in a new unit of work, for every retry or split of the batch.
    """

    async def preload(self, batch: Sequence[Incoming], uow: UnitOfWork) -> None:
        """Load what ``batch`` needs into ``uow.memo``."""

    async def __call__(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Handle one message (its reads come from ``uow.memo``)."""


#: Turns record bytes into an envelope; raises the kit's InvalidMessage family on bad input.
Decoder = Callable[[bytes, str | None], Envelope[Any]]


class Outcome(StrEnum):
    """What became of one record."""

    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    DEAD_LETTERED = "dead_lettered"


def decode_envelope(raw: bytes, type_hint: str | None = None) -> Envelope[Any]:
    """Decode with the contracts catalog, mapping its errors onto the kit's final errors.

    ``type_hint`` is the record's ``type`` header (see :func:`contracts.catalog.decode`).
    """
    try:
        return catalog.decode(raw, type_hint)
    except contract_errors.UnknownMessageType as exc:
        raise UnknownType(str(exc)) from exc
    except contract_errors.UnsupportedSchemaVersion as exc:
        raise UnsupportedSchemaVersion(str(exc)) from exc
    except contract_errors.SchemaInvalid as exc:
        raise SchemaInvalid(str(exc), extensions={"errors": exc.errors}) from exc
    except contract_errors.ContractError as exc:
        raise InvalidMessage(str(exc)) from exc


#: One message to handle: its position in the delivered batch, and what the handler gets.
_Item = tuple[int, Incoming]
#: Dead letters decided so far, with the batch position of their record.
_Dead = list[tuple[int, Record]]


class _HandlerFailed(Exception):
    """A handler (or the flush after it) raised inside a batch; ``position`` is its index."""

    def __init__(self, position: int, error: Exception) -> None:
        super().__init__(f"handler failed at position {position}: {error!r}")
        self.position = position
        self.error = error


def _type_header(record: ConsumedRecord) -> str | None:
    """The message type ``record``'s ``type`` header names, if it has one."""
    for name, value in record.headers:
        if name == "type":
            return value.decode("utf-8", "replace")
    return None


def _names_another_type(named: str | None, types: frozenset[str]) -> bool:
    """Whether a ``type`` header naming ``named`` names a catalogued type outside ``types``.

    A record without the header, or with a type the catalogue does not know, is decoded as
    usual, so an unknown type is still dead-lettered with its reason.
    """
    return named is not None and named not in types and named in catalog.MESSAGE_TYPES


def _batch_failure_is_transient(exc: BaseException) -> bool:
    # A handler failure is resolved by splitting the batch, not by retrying all of it.
    return is_transient(exc) and not isinstance(exc, _HandlerFailed)


def _split_into_lanes(work: list[_Item], lanes: int) -> list[list[_Item]]:
    """Partition ``work`` into at most ``lanes`` lists, keeping each partition in one list.

    Partitions are dealt round-robin in order of first appearance, and every list keeps record
    order, so one partition's (one key's) messages are still handled in offset order.
    """
    if lanes <= 1:
        return [work]
    lane_of: dict[tuple[str, int], int] = {}
    out: list[list[_Item]] = []
    for item in work:
        record = item[1].record
        where = (record.topic, record.partition)
        lane = lane_of.get(where)
        if lane is None:
            lane = lane_of[where] = len(lane_of) % lanes
            if lane == len(out):
                out.append([])
        out[lane].append(item)
    return out


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
        lanes: int = 1,
        waits: Waits | None = None,
    ) -> None:
        if lanes < 1:
            raise ValueError("lanes must be at least 1")
        self.name = name
        #: Partitions of one batch handled concurrently, each lane in its own transaction
        #: (and database connection). 1 on SQLite, which has one connection.
        self.lanes = lanes
        self._handler = handler
        preload = getattr(handler, "preload", None)
        self._preload: Preload | None = preload if callable(preload) else None
        self._uow_factory = uow_factory
        self._dead_letters = dead_letters
        self.types = frozenset(types) if types is not None else None
        self._retry = retry or RetryPolicy()
        #: How this consumer waits out transient failures.
        self.retry_policy = self._retry
        # Built once: retrying is the slow path, but it should not also rebuild its machinery.
        self._retrier = Retrier(self._retry)
        self._batch_retrier = Retrier(self._retry, retry_on=_batch_failure_is_transient)
        self._decode = decode
        #: What this consumer's lanes wait for while they retry (``/health`` reads it).
        self.waits = waits if waits is not None else Waits()

    async def process(self, record: ConsumedRecord) -> Outcome:
        """Handle one record to a durable outcome, or raise (and the record is redelivered)."""
        (outcome,) = await self.process_batch((record,))
        return outcome

    async def process_batch(self, records: Sequence[ConsumedRecord]) -> list[Outcome]:
        """Handle ``records`` to durable outcomes (one per record, in order), or raise.

        When this returns, the caller may commit the offsets of every record in ``records``.
        When it raises, it must not: the records are delivered again and the ones that were
        already committed are recognised as duplicates.
        """
        outcomes: list[Outcome] = [Outcome.IGNORED] * len(records)
        dead: _Dead = []
        work: list[_Item] = []
        decode, types = self._decode, self.types
        with bind_context(consumer=self.name):
            for index, record in enumerate(records):
                named = _type_header(record)
                if types is not None and _names_another_type(named, types):
                    continue  # IGNORED without decoding its body
                try:
                    envelope = decode(record.value, named)
                except FinalError as exc:
                    dead.append((index, self._dead_letter(record, exc, attempts=1)))
                    outcomes[index] = Outcome.DEAD_LETTERED
                    continue
                if types is not None and envelope.type not in types:
                    continue  # IGNORED: another consumer's message type, not an error
                work.append((index, Incoming(envelope=envelope, record=record)))
            if work:
                await self._handle_lanes(work, outcomes, dead)
            if dead:
                # In record order (a refusal is decided after the batch's decode failures), so
                # a partition's dead letters keep its order for whoever replays them. Awaited
                # before the caller commits the offsets: a DLQ record that did not reach the
                # broker must not let the original be acknowledged.
                dead.sort(key=lambda entry: entry[0])
                await self._dead_letters([record for _index, record in dead])
        return outcomes

    async def _handle_lanes(self, work: list[_Item], outcomes: list[Outcome], dead: _Dead) -> None:
        """Run ``work`` in up to ``lanes`` concurrent lanes, each partition in exactly one.

        Each lane is a task of its own. Besides the concurrency, that keeps the coroutine stack
        shallow: every database round trip of a handler resumes only the lane's frames, not the
        subscriber's whole middleware stack above :meth:`process_batch`. If a lane fails, the
        others are cancelled (and roll back) before the error propagates, so nothing of this
        batch still runs when the caller rewinds to it.
        """
        lanes = _split_into_lanes(work, self.lanes)
        try:
            async with asyncio.TaskGroup() as group:
                for lane in lanes:
                    group.create_task(self._handle(lane, outcomes, dead))
        except BaseExceptionGroup as failures:
            # Callers (and their tests) expect the error itself, not a group of one.
            raise failures.exceptions[0] from failures

    async def _handle(self, work: list[_Item], outcomes: list[Outcome], dead: _Dead) -> None:
        """Run ``work`` in batches, splitting around failing messages, in record order."""
        # Each step is a batch (failed is None) or one message whose batch attempt failed.
        steps: deque[tuple[list[_Item], Exception | None]] = deque([(work, None)])
        while steps:
            items, failed = steps.popleft()
            if failed is not None:
                ((index, incoming),) = items
                outcomes[index] = await self._handle_one(index, incoming, failed, dead)
                continue
            try:
                results = await self._run_batch(items)
            except _HandlerFailed as failure:
                at = failure.position
                split = [(items[:at], None), ([items[at]], failure.error), (items[at + 1 :], None)]
                steps.extendleft(reversed([step for step in split if step[0]]))
                continue
            except FinalError as exc:
                if len(items) == 1:
                    # A final error outside the handler (its preload, or its staged rows) of a
                    # message alone: that message's outcome.
                    steps.appendleft((items, exc))
                    continue
                # The batch failed for good in a preload or a staged write: go one by one, so
                # the message whose own rows fail is the only one dead-lettered.
                log.warning(
                    "batch failed outside its handlers; processing its messages one at a time",
                    size=len(items),
                    error=str(exc),
                )
                steps.extendleft(reversed([([item], None) for item in items]))
                continue
            for (index, _incoming), outcome in zip(items, results, strict=True):
                outcomes[index] = outcome

    async def _run_batch(self, items: list[_Item]) -> list[Outcome]:
        """:meth:`_commit_batch`, retried with backoff when it fails outside the handlers."""
        try:
            return await self._commit_batch(items)  # the common case, without retry machinery
        except _HandlerFailed:
            raise
        except Exception as exc:
            if not is_transient(exc):
                raise
            return await self._wait_out(
                self._batch_retrier, partial(self._commit_batch, items), failed=exc
            )

    async def _wait_out(
        self, retrier: Retrier, func: Callable[[], Awaitable[_R]], *, failed: Exception
    ) -> _R:
        """``retrier.call``, reporting what it waits for to :attr:`waits` meanwhile."""
        key = object()  # this call's own entry: lanes of one consumer may wait at once

        def waiting(error: BaseException, attempt: int) -> None:
            detail = f"attempt {attempt}: {type(error).__name__}: {error}"
            self.waits.begin(key, self.name, dependency_of(error), detail[:300])

        try:
            return await retrier.call(func, failed=failed, on_retry=waiting)
        finally:
            self.waits.end(key)

    async def _commit_batch(self, items: list[_Item]) -> list[Outcome]:
        """Handle ``items`` in one transaction; all of it commits, or none of it does.

        Raises :class:`_HandlerFailed` when a handler raised (after the rollback); other errors
        (marks, outbox, commit) propagate as they are.
        """
        results = [Outcome.DUPLICATE] * len(items)
        first_seen: dict[Any, int] = {}
        for position, (_index, incoming) in enumerate(items):
            first_seen.setdefault(incoming.envelope.event_id, position)
        async with self._uow_factory() as uow:
            new = await uow.mark_processed_many(self.name, first_seen)
            uow.commit_refused = _HANDLERS_DO_NOT_COMMIT
            handler = self._handler
            if self._preload is not None and new:
                fresh = [
                    incoming
                    for position, (_index, incoming) in enumerate(items)
                    if incoming.envelope.event_id in new
                    and first_seen[incoming.envelope.event_id] == position
                ]
                await self._preload(fresh, uow)
            for position, (_index, incoming) in enumerate(items):
                envelope = incoming.envelope
                event_id = envelope.event_id
                if event_id not in new or first_seen[event_id] != position:
                    self._log_duplicate(incoming)
                    continue
                record = incoming.record
                with bind_context(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    event_id=event_id,
                    correlation_id=envelope.correlation_id,
                    causation_id=envelope.causation_id,
                    message_type=envelope.type,
                ):
                    try:
                        await handler(incoming, uow)
                        await uow.flush()
                    except Exception as exc:
                        raise _HandlerFailed(position, exc) from exc
                results[position] = Outcome.PROCESSED
            uow.commit_refused = None
            await uow.commit()
        return results

    async def _handle_one(
        self, index: int, incoming: Incoming, failed: Exception, dead: _Dead
    ) -> Outcome:
        """The per-message path for a message whose handler failed inside a batch."""
        record, envelope = incoming.record, incoming.envelope
        with bind_context(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            event_id=envelope.event_id,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.causation_id,
            message_type=envelope.type,
        ):
            attempts = 1  # the batch's attempt

            async def attempt() -> Outcome:
                nonlocal attempts
                attempts += 1
                return await self._attempt(incoming)

            try:
                return await self._wait_out(self._retrier, attempt, failed=failed)
            except FinalError as exc:
                # Final at once, or after transient failures: the dead letter counts them all.
                dead.append((index, self._dead_letter(record, exc, attempts=attempts)))
            return Outcome.DEAD_LETTERED

    async def _attempt(self, incoming: Incoming) -> Outcome:
        async with self._uow_factory() as uow:
            if not await uow.mark_processed(self.name, incoming.envelope.event_id):
                self._log_duplicate(incoming)
                return Outcome.DUPLICATE
            if self._preload is not None:
                await self._preload((incoming,), uow)
            await self._handler(incoming, uow)
            await uow.commit()
        return Outcome.PROCESSED

    @staticmethod
    def _log_duplicate(incoming: Incoming) -> None:
        record = incoming.record
        log.info(
            "duplicate delivery ignored",
            event_id=str(incoming.envelope.event_id),
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )

    def _dead_letter(self, record: ConsumedRecord, error: FinalError, attempts: int) -> Record:
        """The DLQ record for ``record`` (published by :meth:`process_batch`), logged."""
        dlq_record = dead_letter(
            record, reason=error.reason, error=error, consumer=self.name, attempts=attempts
        )
        log.error(
            "message dead-lettered",
            reason=str(error.reason),
            dlq_topic=dlq_record.topic,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error=str(error),
            exc_info=error,
        )
        return dlq_record


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
    max_records: int = DEFAULT_MAX_RECORDS,
    batch_timeout_ms: int = DEFAULT_BATCH_TIMEOUT_MS,
    observe: Callable[[Sequence[ConsumedRecord], Sequence[Outcome]], None] | None = None,
) -> Any:
    """Register ``consumer`` on ``broker`` for ``topics`` in consumer group ``group_id``.

    A batch subscriber: each poll hands up to ``max_records`` records to
    :meth:`IdempotentConsumer.process_batch`, and the offsets are committed once per batch,
    after it returned (``AckPolicy.NACK_ON_ERROR``: an exception that escapes rewinds every
    partition of the batch to its first record). New groups start from the earliest offset, and
    the session timeouts suit Tansu. ``observe`` is told each batch's records and outcomes
    (metrics). Returns the FastStream subscriber.
    """
    if max_records < 1:
        raise ValueError("max_records must be at least 1")
    hold = consumer.retry_policy.hold
    if hold is None or hold * 1000 >= CONSUMER_MAX_POLL_INTERVAL_MS:
        # Waiting in the handler longer than that would cost the member its group.
        raise ValueError("a subscribed consumer must hand a batch back before max.poll.interval")
    # Documented per record (one envelope), as before: that the kit polls records in batches
    # is its own business, not part of the channel's contract. The annotation validates
    # nothing, so the list of raw bodies passes through.
    body_type = _documented_body(_documented_types(consumer.types, topics))

    async def handle(body: Any, message: KafkaMessage) -> None:
        raw = message.raw_message
        records = raw if isinstance(raw, tuple | list) else (raw,)
        consumed = [ConsumedRecord.from_kafka(r) for r in records]
        outcomes = await consumer.process_batch(consumed)
        if observe is not None:
            observe(consumed, outcomes)

    # Annotations are strings under `from __future__ import annotations`; FastStream resolves
    # them from module globals, where the per-subscriber body type does not live.
    handle.__annotations__ = {"body": body_type, "message": KafkaMessage, "return": None}
    handle.__name__ = handle.__qualname__ = f"{consumer.name}_handler"
    subscriber = broker.subscriber(
        # Created from the registry only, with its partition counts (FastStream would create a
        # missing one with a single partition at start-up; see `forbid_topic_auto_creation`).
        *(Topic(topic, declare=False) for topic in topics),
        group_id=group_id,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=batch_timeout_ms,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        session_timeout_ms=CONSUMER_SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=CONSUMER_HEARTBEAT_INTERVAL_MS,
        max_poll_interval_ms=CONSUMER_MAX_POLL_INTERVAL_MS,
        decoder=_raw_body,
        description=description,
    )
    subscriber(handle)
    return subscriber
