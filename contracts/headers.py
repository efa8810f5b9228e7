"""The Kafka headers records carry, as contracts: what tools that do not parse bodies can rely on.

Header values are bytes on the wire; every header here is UTF-8 text, so the models describe a
record's headers as a JSON object of name -> string. Two shapes exist:

- :class:`MessageHeaders` on every record of a primary topic, mirroring the routing fields of the
  envelope (:meth:`contracts.envelope.Envelope.headers` writes them);
- :class:`DeadLetterHeaders` on every record of a ``.dlq`` topic: the original record's headers
  followed by the ``dlq.*`` ones naming why and where processing gave up.

The JSON Schemas of both are generated from these models and committed next to the message
schemas (``headers.json`` and ``dlq-headers.json``).
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

#: A non-negative decimal integer, as header text.
_DECIMAL: Final = r"^[0-9]+$"


def _absent_not_null(schema: dict[str, Any]) -> None:
    # An optional header is left out, never sent empty: the schema shows no null default.
    schema.pop("default", None)


class DeadLetterReason(StrEnum):
    """Why a consumer gave up on a record: the ``dlq.reason`` header."""

    UNDECODABLE = "undecodable"
    SCHEMA_INVALID = "schema_invalid"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    UNKNOWN_TYPE = "unknown_message_type"
    BUSINESS_REFUSAL = "business_refusal"
    RETRIES_EXHAUSTED = "retries_exhausted"


class MessageHeaders(BaseModel):
    """Headers of every record on a primary topic; each mirrors the envelope field of its name."""

    model_config = ConfigDict(
        extra="forbid",
        title="MessageHeaders",
        json_schema_extra={
            "examples": [
                {
                    "event_id": "0b6f3c3e-6d0e-4a5c-9a55-3c1d7c3f9b21",
                    "type": "application.submitted",
                    "schema_version": "1",
                    "correlation_id": "6a1e1f7e-0d64-4f67-9d4a-77c8c9b0a001",
                    "producer": "applications",
                }
            ]
        },
    )

    event_id: uuid.UUID = Field(description="The envelope's `event_id`.")
    type: str = Field(
        pattern=r"^[a-z][a-z_]*(\.[a-z][a-z_]*)+$", description="The envelope's `type`."
    )
    schema_version: str = Field(
        pattern=r"^[1-9][0-9]*$", description="The envelope's `schema_version`, in decimal."
    )
    correlation_id: uuid.UUID = Field(description="The envelope's `correlation_id`.")
    # Absent, never empty, when the envelope's causation_id is null.
    causation_id: uuid.UUID | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_absent_not_null,
        description=(
            "The envelope's `causation_id`. Omitted when the message has no cause (an origin)."
        ),
    )
    producer: str = Field(min_length=1, description="The envelope's `producer`.")
    # W3C Trace Context (https://www.w3.org/TR/trace-context/): present only when tracing is on.
    traceparent: (
        Annotated[str, Field(pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")]
        | SkipJsonSchema[None]
    ) = Field(
        default=None,
        json_schema_extra=_absent_not_null,
        description=(
            "The W3C Trace Context `traceparent` of the span that wrote the message, so one "
            "application's journey is one trace. Present only when tracing is configured; set "
            "when the message is written (the outbox keeps it), so a republished record carries "
            "the same value."
        ),
    )
    tracestate: str | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_absent_not_null,
        description="The W3C Trace Context `tracestate` that goes with `traceparent`, if any.",
    )


class DeadLetterHeaders(BaseModel):
    """Headers of a dead-letter record: the original headers, then the ``dlq.*`` ones.

    Key and value are the original record's, byte for byte; replaying is publishing the value
    back to ``dlq.source.topic``. Any header not named ``dlq.*`` is one of the original record's.
    """

    model_config = ConfigDict(
        extra="allow",
        populate_by_name=True,
        title="DeadLetterHeaders",
        json_schema_extra={"additionalProperties": {"type": "string"}},
    )

    reason: DeadLetterReason = Field(alias="dlq.reason", description="Why processing gave up.")
    error: str = Field(
        alias="dlq.error",
        description=(
            "The error message, truncated to 4 KiB; for `retries_exhausted`, the last transient"
            " error."
        ),
    )
    error_type: str = Field(
        alias="dlq.error_type", description="The error's class, `module.Qualname`."
    )
    consumer: str = Field(
        alias="dlq.consumer", min_length=1, description="The consumer that gave up."
    )
    source_topic: str = Field(
        alias="dlq.source.topic", min_length=1, description="Where the record was consumed."
    )
    source_partition: str = Field(
        alias="dlq.source.partition", pattern=_DECIMAL, description="Its partition."
    )
    source_offset: str = Field(
        alias="dlq.source.offset", pattern=_DECIMAL, description="Its offset."
    )
    source_timestamp_ms: Annotated[str, Field(pattern=_DECIMAL)] | SkipJsonSchema[None] = Field(
        default=None,
        alias="dlq.source.timestamp_ms",
        json_schema_extra=_absent_not_null,
        description="Its broker timestamp in milliseconds since the epoch, when known.",
    )
    attempts: str = Field(
        alias="dlq.attempts",
        pattern=r"^[1-9][0-9]*$",
        description="How many times processing was tried.",
    )
    failed_at: str = Field(
        alias="dlq.failed_at",
        json_schema_extra={"format": "date-time"},
        description="When the consumer gave up, ISO 8601 in UTC.",
    )
