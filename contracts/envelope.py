"""The envelope that wraps every message on every topic.

Every event and command travels as one JSON document: the envelope fields below plus a typed
``payload``. The Kafka record key is ``subject`` (the application id), so one application's
history is ordered within its partition.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

#: Namespace for deterministic event ids (uuid5). Never change it: recorded histories depend on it.
EVENT_ID_NAMESPACE = uuid.UUID("5b1f8f0e-4f0b-4d8e-9a59-0c7a4c1e2d10")


#: RFC 3339 ``date-time``: a full date, a full time and an explicit offset (``Z`` or ``±hh:mm``).
_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _strict_timestamp(value: Any) -> Any:
    # pydantic's lax mode reads a number, or a string of digits, as Unix time: 525 would be
    # 1970-01-01T00:08:45Z. Outside data must say what it means, so only an RFC 3339 string
    # (or, from Python, an aware datetime) is a date-time.
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _RFC3339.fullmatch(value):
        return value
    raise PydanticCustomError(
        "date_time_format",
        "a date-time must be an RFC 3339 string with a time-zone offset, e.g. 2026-11-20T09:00:00Z",
    )


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


#: A timezone-aware timestamp, normalised to UTC: the one date-time type of the contracts.
#: Only RFC 3339 strings with an offset (or aware datetimes) are accepted; numbers, numeric
#: strings, dates without a time and naive datetimes are refused. The published JSON Schema is
#: unchanged (``format: date-time`` already says RFC 3339).
UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_strict_timestamp), AfterValidator(_to_utc)]


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def deterministic_event_id(*parts: str) -> uuid.UUID:
    """An event id derived from its origin, e.g. ``(workflow_id, step, attempt_scope)``.

    A retried producer (a Temporal activity, a relay) republishes the same id, so idempotent
    consumers drop the duplicate.
    """
    return uuid.uuid5(EVENT_ID_NAMESPACE, "\x1f".join(parts))


class ActorKind(StrEnum):
    """Who performed an action."""

    FIRM = "firm"
    REVIEWER = "reviewer"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    ADMIN = "admin"
    SYSTEM = "system"


class Actor(BaseModel):
    """The authenticated principal behind a message, or a named system actor."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ActorKind = Field(
        description="The kind of principal.", examples=["firm", "reviewer", "system"]
    )
    id: str = Field(
        min_length=1,
        max_length=200,
        description=(
            "Stable identifier of the principal: a user id for people, a firm id for firms, "
            "or a service name such as `system:eligibility` for automated steps."
        ),
        examples=["alice@acme.example", "system:eligibility"],
    )
    firm_id: str | None = Field(
        default=None,
        max_length=100,
        description="The firm the principal acts for, when the principal is a firm user.",
        examples=["ACME"],
    )

    @classmethod
    def system(cls, name: str) -> Actor:
        """A named automated actor, e.g. ``Actor.system("eligibility")``."""
        return cls(kind=ActorKind.SYSTEM, id=f"system:{name}")


PayloadT = TypeVar("PayloadT", bound=BaseModel)


class Envelope(BaseModel, Generic[PayloadT]):
    """Metadata carried by every event and command, around a typed payload."""

    model_config = ConfigDict(extra="forbid")

    event_id: uuid.UUID = Field(
        description=(
            "Unique id of this message. Consumers deduplicate on it; producers that retry reuse it."
        ),
        examples=["0b6f3c3e-6d0e-4a5c-9a55-3c1d7c3f9b21"],
    )
    type: str = Field(
        pattern=r"^[a-z][a-z_]*(\.[a-z][a-z_]*)+$",
        description=(
            "Message type: `<domain>.<name>`, past tense for events, imperative for commands."
        ),
        examples=["application.submitted", "zone.allocate"],
    )
    schema_version: int = Field(
        default=1,
        ge=1,
        description=(
            "Major version of the payload schema. Changes within a major version are additive."
        ),
        examples=[1],
    )
    occurred_at: UtcDatetime = Field(
        description="When the fact happened or the request was made, in UTC.",
        examples=["2026-11-26T10:35:02Z"],
    )
    producer: str = Field(
        min_length=1,
        max_length=100,
        description="The service that produced the message.",
        examples=["applications", "workflows"],
    )
    correlation_id: uuid.UUID = Field(
        description="The application's journey: every message about one application shares it.",
        examples=["6a1e1f7e-0d64-4f67-9d4a-77c8c9b0a001"],
    )
    causation_id: uuid.UUID | None = Field(
        default=None,
        description="The `event_id` of the message that caused this one; null for an origin.",
        examples=["0b6f3c3e-6d0e-4a5c-9a55-3c1d7c3f9b21", None],
    )
    actor: Actor = Field(description="Who performed the action.")
    subject: str = Field(
        min_length=1,
        max_length=100,
        description="The subject key, the application id. It is also the Kafka record key.",
        examples=["app_01HZX3Q8W6"],
    )
    payload: PayloadT = Field(description="The typed body, defined per message type.")

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers mirroring the routing metadata, for tools that do not parse bodies.

        Their contract is :class:`contracts.headers.MessageHeaders`. A null ``causation_id`` is
        left out rather than sent as an empty value, which no uuid reader would accept.
        """
        pairs: list[tuple[str, Any]] = [
            ("event_id", self.event_id),
            ("type", self.type),
            ("schema_version", self.schema_version),
            ("correlation_id", self.correlation_id),
        ]
        if self.causation_id is not None:
            pairs.append(("causation_id", self.causation_id))
        pairs.append(("producer", self.producer))
        return [(k, str(v).encode()) for k, v in pairs]
