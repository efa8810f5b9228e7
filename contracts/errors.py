"""Errors raised when a message does not honour its contract.

Every error is *final*: retrying the same bytes gives the same answer, so a consumer sends the
message to the topic's dead-letter queue with :attr:`ContractError.reason_code` as the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from contracts.headers import DeadLetterReason


class ContractError(Exception):
    """Base of all contract violations. ``reason_code`` is stable and used as the DLQ reason."""

    reason_code: ClassVar[str] = "contract_violation"

    def __init__(self, message: str, *, message_type: str | None = None) -> None:
        super().__init__(message)
        #: The message type, when it could be read.
        self.message_type = message_type


class DecodeError(ContractError):
    """The bytes are not a message: not UTF-8, not JSON, or not a JSON object."""

    reason_code: ClassVar[str] = DeadLetterReason.UNDECODABLE


class SchemaInvalid(DecodeError):
    """The bytes are JSON, but the envelope or its payload does not validate."""

    reason_code: ClassVar[str] = DeadLetterReason.SCHEMA_INVALID

    def __init__(
        self,
        message: str,
        *,
        message_type: str | None = None,
        errors: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(message, message_type=message_type)
        #: Pydantic's error list (``loc``, ``msg``, ``type``), without the offending input, so it
        #: can go into a DLQ record or a log line without copying personal data.
        self.errors: list[dict[str, Any]] = [dict(error) for error in errors]


class UnsupportedSchemaVersion(DecodeError):
    """The envelope announces a schema major version this code does not know."""

    reason_code: ClassVar[str] = DeadLetterReason.UNSUPPORTED_SCHEMA_VERSION


class UnknownMessageType(ContractError):
    """The message type is not in the catalog."""

    reason_code: ClassVar[str] = DeadLetterReason.UNKNOWN_TYPE
