"""The log's consumer: every record of every topic, raw, appended by the single writer.

Unlike the kit's idempotent consumer it decodes nothing: the log records the exact bytes of
each record's key, headers and value, so an undecodable record (or a dead letter) is logged like
any other. Deduplication is by leaf bytes, not event id. There are no final errors: a failed
append is a storage problem, retried with capped backoff until the database answers, and the
Kafka offsets are committed only after the batch is durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy

from contracts.topics import all_topic_names
from services.audit.store import AppendResult, LogWriter
from services.kit.dlq import ConsumedRecord
from services.kit.logging import get_logger
from services.kit.messaging import CONSUMER_HEARTBEAT_INTERVAL_MS, CONSUMER_SESSION_TIMEOUT_MS

log = get_logger(__name__)

#: Records per poll at most.
MAX_RECORDS = 500
#: Backoff between attempts while the database is unavailable.
INITIAL_DELAY_S = 0.2
MAX_DELAY_S = 5.0


def logged_topics() -> list[str]:
    """Every topic of the registry and its ``.dlq`` twin."""
    return all_topic_names()


def raw_record(record: Any) -> ConsumedRecord:
    """A consumed record's exact bytes; a missing value or header value counts as empty."""
    value = record.value
    key = record.key
    return ConsumedRecord(
        topic=record.topic,
        partition=int(record.partition or 0),
        offset=int(record.offset or 0),
        key=key.encode() if isinstance(key, str) else key,
        value=b"" if value is None else value.encode() if isinstance(value, str) else bytes(value),
        headers=tuple(
            (name, b"" if val is None else val.encode() if isinstance(val, str) else bytes(val))
            for name, val in (record.headers or ())
        ),
        timestamp_ms=getattr(record, "timestamp", None),
    )


class LogConsumer:
    """Hands each polled batch to the writer, retrying until it is stored."""

    def __init__(self, writer: LogWriter) -> None:
        self.writer = writer
        #: What the consumer waits for, when it waits (shown by ``/health``).
        self.waiting_for: str | None = None
        self.appended = 0
        self.duplicates = 0

    async def handle(self, records: Sequence[ConsumedRecord]) -> AppendResult:
        """Append ``records``; returns once they are durable (retrying storage failures)."""
        delay = INITIAL_DELAY_S
        while True:
            try:
                result = await self.writer.append(records)
            except Exception as exc:
                if self.waiting_for is None:
                    log.warning(
                        "audit log append failed; retrying until the database answers",
                        error=f"{type(exc).__name__}: {exc}",
                        records=len(records),
                    )
                self.waiting_for = f"database: {type(exc).__name__}"
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_DELAY_S)
                continue
            if self.waiting_for is not None:
                log.info("audit log append succeeded again")
            self.waiting_for = None
            self.appended += result.appended
            self.duplicates += result.duplicates
            return result


async def _raw_body(message: Any) -> Any:
    return message.body


def subscribe_log(broker: KafkaBroker, consumer: LogConsumer, *, group_id: str) -> Any:
    """Subscribe ``consumer`` to every logged topic in one batch subscriber."""

    async def audit_log(body: Any, message: KafkaMessage) -> None:
        raw = message.raw_message
        records = raw if isinstance(raw, tuple | list) else (raw,)
        await consumer.handle([raw_record(r) for r in records])

    audit_log.__annotations__ = {"body": Any, "message": KafkaMessage, "return": None}
    subscriber = broker.subscriber(
        *logged_topics(),
        group_id=group_id,
        batch=True,
        max_records=MAX_RECORDS,
        batch_timeout_ms=20,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        session_timeout_ms=CONSUMER_SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=CONSUMER_HEARTBEAT_INTERVAL_MS,
        decoder=_raw_body,
        description=(
            "Appends every record (key, headers and value, byte for byte) to the transparency "
            "log, once per distinct leaf."
        ),
    )
    subscriber(audit_log)
    return subscriber
