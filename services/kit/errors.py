"""The kit's error hierarchy: two branches, retryable and final.

Every error carries a reason code (the message-path ones equal the ``reason_code`` of the
matching :mod:`contracts.errors` class). On the message path the code becomes the DLQ record's
``dlq.reason`` header; on the HTTP path it becomes the RFC 9457 problem ``type``
(``urn:incentives:problem:<reason>``) with the class's status code.

- :class:`RetryableError`: transient I/O. Consumers wait it out (capped backoff, however long)
  and never dead-letter it; HTTP answers 503.
- :class:`FinalError`: the input is wrong or a rule refused it. Retrying cannot help: consumers
  dead-letter at once; HTTP answers 4xx.
"""

from __future__ import annotations

from enum import StrEnum
from types import TracebackType
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
    #: Kept because the contract keeps it (additive changes only): dead letters written before
    #: transient errors were waited out carry it. No consumer writes it any more.
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
    """A database, broker or workflow engine could not be reached.

    ``dependency`` names it (``"database"``, ``"temporal"``, ``"rail"``, ...): a consumer that
    waits for it reports that name in ``/health``'s ``waiting_for``.
    """

    reason = Reason.DEPENDENCY_UNAVAILABLE
    title = "A dependency is unavailable"

    def __init__(
        self,
        detail: str,
        *,
        dependency: str | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail, extensions=extensions)
        self.dependency = dependency


class StillWaiting(DependencyUnavailable):
    """A dependency stayed away for a whole hold (:attr:`~services.kit.retry.RetryPolicy.hold`).

    The consumer hands its batch back without committing it, so the Kafka client polls again
    (which keeps its group membership alive) and the same records come back; the wait goes on.
    """

    title = "Still waiting for a dependency"


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
    anticipate) is waited out: the consumer retries with capped backoff until it passes and
    never dead-letters it. An unclassified error therefore holds its partition, visibly (a
    warning per attempt, and ``/health`` degraded), rather than losing the message to the DLQ.
    """
    return not isinstance(exc, FinalError)


#: Top-level packages whose errors (or whose frames in a traceback) mean the database.
_DATABASE_PACKAGES = frozenset({"sqlalchemy", "asyncpg", "aiosqlite", "sqlite3", "psycopg"})
#: What a failure waits for when nothing names it.
UNKNOWN_DEPENDENCY = "unknown"


def dependency_of(exc: BaseException) -> str:
    """The name of what a transient failure waits for, as ``/health`` reports it.

    A :class:`DependencyUnavailable` with a ``dependency`` names it; an error of a database
    driver, or raised from inside one (a refused connection surfaces as a bare ``OSError``
    from the pool), is the ``"database"``. Causes and contexts are followed; anything else is
    :data:`UNKNOWN_DEPENDENCY`.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DependencyUnavailable) and current.dependency:
            return current.dependency
        if _package(type(current).__module__) in _DATABASE_PACKAGES or _raised_in_database(
            current.__traceback__
        ):
            return "database"
        current = current.__cause__ or current.__context__
    return UNKNOWN_DEPENDENCY


def _package(module: str) -> str:
    return module.partition(".")[0]


def _raised_in_database(tb: TracebackType | None) -> bool:
    while tb is not None:
        if _package(str(tb.tb_frame.f_globals.get("__name__", ""))) in _DATABASE_PACKAGES:
            return True
        tb = tb.tb_next
    return False
