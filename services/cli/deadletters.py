"""Dead letters: read them, and redrive them to their topic (behind ``incentives dlq``).

A dead letter's id is ``<dlq topic>:<partition>:<offset>``, e.g.
``applications.events.dlq:3:17``: where the broker keeps it, so it needs no index of its own and
any Kafka tool can find the same record. Ids hold for as long as the broker keeps the record
(the embedded broker keeps nothing across a restart; the outboxes restore the primary topics,
not the dead letters, which are the consumers' own records).

A redrive publishes the dead letter's value back to ``dlq.source.topic``, byte for byte, with its
key and its original headers (every ``dlq.*`` header dropped), so the message keeps its
``event_id``. Consumers do not mark a dead-lettered message processed, so after a fix it is
processed once; a consumer that had processed the message in the meantime drops it as a
duplicate. Every redrive is recorded as a ``dead_letter.redriven`` event on
``operations.events``, naming the operator; the audit service appends it to the ledger like any
other event. ``redrive --topic`` skips the dead letters already redriven (the events say which).
"""

from __future__ import annotations

import getpass
import json
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from contracts import catalog
from contracts.envelope import Actor, ActorKind, deterministic_event_id
from contracts.errors import ContractError
from contracts.topics import DLQ_SUFFIX, TOPICS, get_topic
from contracts.v1.operations import DeadLetterRedriven
from services.cli.dlq import OPERATOR_ENV
from services.kit.asyncapi import Sends, build_document
from services.kit.dlq import DeadLetterInfo, parse_dead_letter
from services.kit.messaging import (
    Record,
    create_producer,
    read_topics,
    send_all,
    topic_partitions,
    topic_reader,
)

#: The topic redrives are recorded on, and the envelope ``producer`` of those records.
OPERATIONS_TOPIC = "operations.events"
REDRIVEN = "dead_letter.redriven"
PRODUCER = "operations"

#: How long reading one dead letter may take before giving up (seconds).
READ_TIMEOUT = 30.0

#: What the operations CLI publishes, for its AsyncAPI document.
SENDS = (
    Sends(
        topic=OPERATIONS_TOPIC,
        types=(REDRIVEN,),
        producer=PRODUCER,
        description="`incentives dlq redrive` records every redrive, naming the operator.",
    ),
)


class DeadLetterError(RuntimeError):
    """A dead letter that cannot be found or redriven, or an id that is not one."""


@dataclass(frozen=True)
class DeadLetterId:
    """Where a dead letter is: its ``.dlq`` topic, partition and offset."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> DeadLetterId:
        """Read ``<dlq topic>:<partition>:<offset>``."""
        topic, _, rest = text.strip().partition(":")
        partition, _, offset = rest.partition(":")
        if not topic.endswith(DLQ_SUFFIX) or not partition.isdigit() or not offset.isdigit():
            raise DeadLetterError(
                f"{text!r} is not a dead-letter id: expected <topic>.dlq:<partition>:<offset>"
            )
        return cls(topic, int(partition), int(offset))


@dataclass(frozen=True)
class DeadLetter:
    """One record of a ``.dlq`` topic, with its ``dlq.*`` headers parsed."""

    id: DeadLetterId
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    info: DeadLetterInfo
    failed_at: str

    @classmethod
    def from_kafka(cls, record: Any) -> DeadLetter:
        """Build from an aiokafka ``ConsumerRecord`` of a ``.dlq`` topic."""
        headers = tuple((name, bytes(value)) for name, value in record.headers or ())
        try:
            info = parse_dead_letter(headers)
        except (KeyError, ValueError) as exc:
            where = f"{record.topic}:{record.partition}:{record.offset}"
            raise DeadLetterError(f"{where} has no dead-letter headers ({exc})") from exc
        failed_at = next((v.decode() for k, v in headers if k == "dlq.failed_at"), "")
        return cls(
            id=DeadLetterId(record.topic, record.partition, record.offset),
            key=record.key,
            value=bytes(record.value or b""),
            headers=headers,
            info=info,
            failed_at=failed_at,
        )

    def original_header(self, name: str) -> str | None:
        """An original (non ``dlq.*``) header as text, when present."""
        for key, value in self.info.original_headers:
            if key == name:
                return value.decode(errors="replace")
        return None

    @property
    def event_id(self) -> uuid.UUID | None:
        """The message's ``event_id``: from its headers, else from its bytes, else none."""
        return _uuid(self.original_header("event_id")) or _uuid(self._body_field("event_id"))

    @property
    def message_type(self) -> str | None:
        """The message's ``type``: from its headers, else from its bytes, else none."""
        return self.original_header("type") or self._body_field("type")

    @property
    def correlation_id(self) -> uuid.UUID | None:
        """The message's ``correlation_id``, when its headers or bytes carry one."""
        return _uuid(self.original_header("correlation_id")) or _uuid(
            self._body_field("correlation_id")
        )

    def _body_field(self, name: str) -> str | None:
        try:
            body = json.loads(self.value)
        except ValueError:
            return None
        value = body.get(name) if isinstance(body, dict) else None
        return value if isinstance(value, str) else None

    def redriven_record(self) -> Record:
        """The record a redrive publishes: the original one, as it was consumed."""
        return Record(
            topic=self.info.source_topic,
            value=self.value,
            key=self.key,
            headers=self.info.original_headers,
        )


def _uuid(text: str | None) -> uuid.UUID | None:
    if not text:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def default_operator() -> str:
    """The operator a redrive names: ``$INCENTIVES_OPERATOR``, else the OS user."""
    return os.environ.get(OPERATOR_ENV) or getpass.getuser()


def dlq_topics(topic: str | None = None) -> list[str]:
    """The ``.dlq`` topics to read: every registry topic's, or the one ``topic`` names.

    ``topic`` is a registry topic (its twin is read) or a ``.dlq`` topic, read as named.

    Raises:
        KeyError: ``topic`` is neither.
    """
    if topic is None:
        return [t.dlq for t in TOPICS]
    if topic.endswith(DLQ_SUFFIX):
        return [topic]
    return [get_topic(topic).dlq]


async def list_dead_letters(bootstrap: str, topics: Iterable[str]) -> list[DeadLetter]:
    """The dead letters of these ``.dlq`` topics (see :func:`dlq_topics`)."""
    return [DeadLetter.from_kafka(r) for r in await read_topics(bootstrap, topics)]


async def get_dead_letters(bootstrap: str, ids: Sequence[DeadLetterId]) -> list[DeadLetter]:
    """The dead letters with these ids, in the order given.

    Raises:
        DeadLetterError: an id names no record the broker holds.
    """
    found: dict[DeadLetterId, DeadLetter] = {}
    consumer = topic_reader(bootstrap)
    await consumer.start()
    try:
        for wanted in ids:
            if wanted in found:
                continue
            if wanted.partition not in await topic_partitions(consumer, wanted.topic):
                raise DeadLetterError(f"no dead letter {wanted}: no such topic or partition")
            tp = TopicPartition(wanted.topic, wanted.partition)
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            start = (await consumer.beginning_offsets([tp]))[tp]
            if not start <= wanted.offset < end:
                raise DeadLetterError(f"no dead letter {wanted}: offsets held are {start}..{end}")
            consumer.seek(tp, wanted.offset)
            record = None
            deadline = time.monotonic() + READ_TIMEOUT
            while record is None:
                if time.monotonic() > deadline:
                    raise DeadLetterError(f"reading {wanted} timed out")
                batch = await consumer.getmany(tp, timeout_ms=500, max_records=1)
                record = next((r for r in batch.get(tp, ()) if r.offset == wanted.offset), None)
            found[wanted] = DeadLetter.from_kafka(record)
    finally:
        await consumer.stop()
    return [found[wanted] for wanted in ids]


async def redriven_ids(bootstrap: str) -> dict[str, int]:
    """Dead-letter id -> how many times it was redriven, from ``operations.events``."""
    counts: dict[str, int] = {}
    for record in await read_topics(bootstrap, [OPERATIONS_TOPIC]):
        try:
            envelope = catalog.decode(record.value)
        except ContractError:  # not a redrive event; the audit service judges it
            envelope = None
        if envelope is not None and isinstance(envelope.payload, DeadLetterRedriven):
            key = envelope.payload.dead_letter_id
            counts[key] = counts.get(key, 0) + 1
    return counts


def redrive_event(letter: DeadLetter, *, operator: str, note: str | None = None) -> Record:
    """The ``dead_letter.redriven`` record for redriving ``letter``, naming ``operator``."""
    key = letter.key.decode(errors="replace") if letter.key else ""
    subject = key if key and len(key) <= 100 and not key.isspace() else str(letter.id)
    original = letter.event_id
    payload = DeadLetterRedriven(
        application_id=subject,
        dead_letter_id=str(letter.id),
        source_topic=letter.info.source_topic,
        original_event_id=original,
        original_type=letter.message_type,
        dead_letter_reason=letter.info.reason,
        consumer=letter.info.consumer,
        operator=operator,
        note=note or None,
    )
    envelope = catalog.make_envelope(
        REDRIVEN,
        payload,
        subject=subject,
        actor=Actor(kind=ActorKind.ADMIN, id=operator),
        producer=PRODUCER,
        correlation_id=letter.correlation_id or deterministic_event_id("dead-letter", subject),
        causation_id=original,
    )
    return Record(
        topic=OPERATIONS_TOPIC,
        value=catalog.encode(envelope),
        key=subject.encode(),
        headers=tuple(envelope.headers()),
    )


async def redrive(
    bootstrap: str, letters: Sequence[DeadLetter], *, operator: str, note: str | None = None
) -> list[Record]:
    """Publish each dead letter back to its topic and record each redrive; returns the events.

    Every record is acknowledged by the broker (``acks=all``) before this returns.
    """
    events = [redrive_event(letter, operator=operator, note=note) for letter in letters]
    records: list[Record] = []
    for letter, event in zip(letters, events, strict=True):
        records += [letter.redriven_record(), event]
    producer = create_producer(bootstrap, client_id="incentives-operations")
    await producer.start()
    try:
        await send_all(producer, records)
    finally:
        await producer.stop()
    return events


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI document of the operations CLI: what ``dlq redrive`` publishes."""
    return build_document(
        title="Operations CLI",
        version="0.1.0",
        description=(
            "`incentives dlq redrive` publishes dead letters back to their topics (as they were"
            " consumed) and records each redrive on `operations.events`."
        ),
        receives=[],
        sends=SENDS,
    )
