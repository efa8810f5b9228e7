"""The kit's error hierarchy: two branches, retryable and final.

Every error carries a reason code (the message-path ones equal the ``reason_code`` of the
matching :mod:`contracts.errors` class). On the message path the code becomes the DLQ record's
``dlq.reason`` header; on the HTTP path it becomes the RFC 9457 problem ``type``
(``urn:incentives:problem:<reason>``) with the class's status code.

- :class:`RetryableError`: transient I/O. Consumers retry with bounded backoff; HTTP answers 503.
- :class:`FinalError`: the input is wrong or a rule refused it. Retrying cannot help: consumers
  dead-letter at once; HTTP answers 4xx.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from contracts.headers import DeadLetterReason


class Reason(StrEnum):
    """Reason codes shared by DLQ records and problem responses.

    The codes a dead letter can carry are the contract's
    (:class:`contracts.headers.DeadLetterReason`); the others are for HTTP only.
    """

    UNDECODABLE = DeadLetterReason.UNDECODABLE.value
    SCHEMA_INVALID = DeadLetterReason.SCHEMA_INVALID.value
    UNSUPPORTED_SCHEMA_VERSION = DeadLetterReason.UNSUPPORTED_SCHEMA_VERSION.value
    UNKNOWN_TYPE = DeadLetterReason.UNKNOWN_TYPE.value
    BUSINESS_REFUSAL = DeadLetterReason.BUSINESS_REFUSAL.value
    RETRIES_EXHAUSTED = DeadLetterReason.RETRIES_EXHAUSTED.value
    TRANSIENT = "transient"
    DEPENDENCY_UNAVAILABLE = "dependency_unavailable"
    VALIDATION_FAILED = "validation_failed"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    INTERNAL = "internal_error"


class IncentivesError(Exception):
    """Root of the kit's errors. Subclass one of the two branches, never this directly."""

    reason: ClassVar[Reason] = Reason.INTERNAL
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    retryable: ClassVar[bool] = False

    def __init__(self, detail: str, *, extensions: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        #: Extra RFC 9457 members (e.g. ``errors``), rendered next to the standard ones.
        self.extensions: dict[str, Any] = dict(extensions or {})


class RetryableError(IncentivesError):
    """A transient failure: the same input may succeed later."""

    reason = Reason.TRANSIENT
    status = 503
    title = "Temporarily unavailable"
    retryable = True


class DependencyUnavailable(RetryableError):
    """A database, broker or workflow engine could not be reached."""

    reason = Reason.DEPENDENCY_UNAVAILABLE
    title = "A dependency is unavailable"


class FinalError(IncentivesError):
    """A failure that retrying cannot fix: bad input or a refused business rule."""

    status = 400
    title = "Request cannot be processed"


class InvalidMessage(FinalError):
    """A record whose bytes could not become an envelope."""

    reason = Reason.UNDECODABLE
    title = "Message is not valid JSON"


class SchemaInvalid(InvalidMessage):
    """JSON that does not match the envelope or the payload schema of its type."""

    reason = Reason.SCHEMA_INVALID
    title = "Message does not match its schema"


class UnsupportedSchemaVersion(InvalidMessage):
    """An envelope announcing a schema major version this code does not know."""

    reason = Reason.UNSUPPORTED_SCHEMA_VERSION
    title = "Unsupported schema version"


class UnknownType(InvalidMessage):
    """An envelope whose ``type`` is not in the contracts catalog."""

    reason = Reason.UNKNOWN_TYPE
    title = "Unknown message type"


class BusinessRefusal(FinalError):
    """A domain rule refused the request or message (e.g. over-allocation, closed stage)."""

    reason = Reason.BUSINESS_REFUSAL
    status = 409
    title = "Refused by a business rule"


class RetriesExhausted(FinalError):
    """A transient error outlived the retry budget; the message goes to the DLQ."""

    reason = Reason.RETRIES_EXHAUSTED
    status = 503
    title = "Retries exhausted"

    def __init__(self, detail: str, *, attempts: int, last_error: BaseException) -> None:
        super().__init__(detail, extensions={"attempts": attempts})
        self.attempts = attempts
        self.last_error = last_error


class ValidationFailed(FinalError):
    """Input failed validation; ``extensions['errors']`` lists field-level problems."""

    reason = Reason.VALIDATION_FAILED
    status = 422
    title = "Validation failed"


class NotFound(FinalError):
    """The resource does not exist, or the caller may not know that it exists."""

    reason = Reason.NOT_FOUND
    status = 404
    title = "Not found"


class Conflict(FinalError):
    """The request conflicts with the resource's current state."""

    reason = Reason.CONFLICT
    status = 409
    title = "Conflict"


class Unauthorized(FinalError):
    """No valid credentials: a missing, malformed, expired or wrongly signed token."""

    reason = Reason.UNAUTHORIZED
    status = 401
    title = "Authentication required"


class Forbidden(FinalError):
    """The principal is known but lacks the role for this action."""

    reason = Reason.FORBIDDEN
    status = 403
    title = "Forbidden"


def is_transient(exc: BaseException) -> bool:
    """Whether a failure on the message path deserves another attempt.

    Only :class:`FinalError` is final. Everything else (our :class:`RetryableError`, database
    disconnects, deadlocks and serialization failures, broker timeouts, and errors we did not
    anticipate) gets the bounded retry budget and then a ``retries_exhausted`` DLQ record, so
    an unclassified failure is neither dropped nor allowed to block the partition forever.
    """
    return not isinstance(exc, FinalError)
