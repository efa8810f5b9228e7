"""Dead-letter records: what a consumer publishes when it gives up on a message.

Format (the Kafka Connect / Spring Kafka convention, so generic tooling understands it; the
contract is :class:`contracts.headers.DeadLetterHeaders`, committed as
``contracts/schemas/v1/dlq-headers.json`` and declared on every ``.dlq`` channel of the AsyncAPI
documents):

- topic: ``<source topic>.dlq``;
- key and value: the original record's key and value, byte for byte (garbage stays garbage, and
  replaying is "publish the value back to the source topic");
- headers: the original headers (minus any earlier ``dlq.*`` ones), followed by:

  ===========================  ================================================================
  ``dlq.reason``               reason code (:class:`~services.kit.errors.Reason`), e.g.
                               ``undecodable``, ``schema_invalid``, ``unknown_message_type``,
                               ``business_refusal`` (only final errors: a transient one is
                               waited out, never dead-lettered)
  ``dlq.error``                the error message (truncated to 4 KiB)
  ``dlq.error_type``           that error's class, ``module.Qualname``
  ``dlq.consumer``             the consumer that gave up
  ``dlq.source.topic``         where the record was consumed
  ``dlq.source.partition``     its partition
  ``dlq.source.offset``        its offset
  ``dlq.source.timestamp_ms``  its broker timestamp, when known
  ``dlq.attempts``             how many times processing was tried
  ``dlq.failed_at``            ISO-8601 UTC time of the decision
  ===========================  ================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contracts.envelope import utcnow
from contracts.headers import DeadLetterReason
from services.kit.errors import Reason
from services.kit.messaging import Record

DLQ_SUFFIX = ".dlq"
HEADER_PREFIX = "dlq."
MAX_ERROR_BYTES = 4096
_CONTRACT_REASONS = frozenset(r.value for r in DeadLetterReason)


def dlq_topic(topic: str) -> str:
    """The dead-letter twin of ``topic``."""
    return f"{topic}{DLQ_SUFFIX}"


@dataclass(frozen=True)
class ConsumedRecord:
    """A consumed Kafka record, independent of the client library that delivered it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None

    @classmethod
    def from_kafka(cls, record: Any) -> ConsumedRecord:
        """Build from an aiokafka ``ConsumerRecord`` (or FastStream's in-memory equivalent)."""
        value = record.value
        if value is None:  # a tombstone has no bytes; treat it as empty so it can be judged
            value = b""
        elif isinstance(value, str):
            value = value.encode()
        key = record.key
        if isinstance(key, str):
            key = key.encode()
        headers = tuple(
            (name, val if isinstance(val, bytes) else str(val).encode())
            for name, val in (record.headers or ())
        )
        return cls(
            topic=record.topic,
            partition=int(record.partition or 0),
            offset=int(record.offset or 0),
            key=key,
            value=bytes(value),
            headers=headers,
            timestamp_ms=getattr(record, "timestamp", None),
        )


def _error_type(error: BaseException) -> str:
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"


def dead_letter(
    record: ConsumedRecord,
    *,
    reason: Reason,
    error: BaseException,
    consumer: str,
    attempts: int,
) -> Record:
    """The DLQ record for ``record``, which ``consumer`` gave up on because of ``error``.

    ``dlq.reason`` is one of the contract's codes (:class:`contracts.headers.DeadLetterReason`):
    a final error whose reason is an HTTP-only code (a handler raising ``NotFound``, say) is a
    ``business_refusal`` here, and ``dlq.error_type`` still names its class.
    """
    code = reason.value if reason.value in _CONTRACT_REASONS else DeadLetterReason.BUSINESS_REFUSAL
    # Cut at a character boundary: every dlq.* header is UTF-8 text (contracts.headers).
    message = (
        (str(error) or type(error).__name__)
        .encode()[:MAX_ERROR_BYTES]
        .decode(errors="ignore")
        .encode()
    )
    headers = [(k, v) for k, v in record.headers if not k.startswith(HEADER_PREFIX)]
    headers += [
        ("dlq.reason", str(code).encode()),
        ("dlq.error", message),
        ("dlq.error_type", _error_type(error).encode()),
        ("dlq.consumer", consumer.encode()),
        ("dlq.source.topic", record.topic.encode()),
        ("dlq.source.partition", str(record.partition).encode()),
        ("dlq.source.offset", str(record.offset).encode()),
        ("dlq.attempts", str(attempts).encode()),
        ("dlq.failed_at", utcnow().isoformat().encode()),
    ]
    if record.timestamp_ms is not None:
        headers.append(("dlq.source.timestamp_ms", str(record.timestamp_ms).encode()))
    return Record(
        topic=dlq_topic(record.topic), value=record.value, key=record.key, headers=tuple(headers)
    )


@dataclass(frozen=True)
class DeadLetterInfo:
    """The ``dlq.*`` headers of a dead-letter record, parsed back (for tooling and tests)."""

    reason: str
    error: str
    error_type: str
    consumer: str
    source_topic: str
    source_partition: int
    source_offset: int
    attempts: int
    original_headers: tuple[tuple[str, bytes], ...]


def parse_dead_letter(headers: Sequence[tuple[str, bytes]]) -> DeadLetterInfo:
    """Read the dead-letter metadata and the original headers back from a DLQ record."""
    meta = {k[len(HEADER_PREFIX) :]: v.decode() for k, v in headers if k.startswith(HEADER_PREFIX)}
    return DeadLetterInfo(
        reason=meta["reason"],
        error=meta.get("error", ""),
        error_type=meta.get("error_type", ""),
        consumer=meta.get("consumer", ""),
        source_topic=meta["source.topic"],
        source_partition=int(meta["source.partition"]),
        source_offset=int(meta["source.offset"]),
        attempts=int(meta.get("attempts", "1")),
        original_headers=tuple((k, v) for k, v in headers if not k.startswith(HEADER_PREFIX)),
    )
