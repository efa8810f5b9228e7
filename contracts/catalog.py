"""The message catalog: which payload model each message type carries, and the wire codec.

``encode`` and ``decode`` are the only way messages become bytes and back, so every producer and
consumer agrees on the format: UTF-8 JSON of the :class:`~contracts.envelope.Envelope`, with the
payload validated against the model registered for its ``type``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from types import MappingProxyType
from typing import Any, Final, TypeVar, cast

from pydantic import BaseModel, ConfigDict, ValidationError

from contracts.envelope import Actor, Envelope, utcnow
from contracts.errors import (
    DecodeError,
    SchemaInvalid,
    UnknownMessageType,
    UnsupportedSchemaVersion,
)
from contracts.v1 import (
    applications,
    approvals,
    disbursement,
    eligibility,
    offers,
    operations,
    review,
    zones,
)

PayloadT = TypeVar("PayloadT", bound=BaseModel)

#: Schema major versions this code can decode.
SUPPORTED_SCHEMA_VERSIONS: Final = frozenset({1})

#: Message type -> payload model. Events are past tense, commands imperative.
MESSAGE_TYPES: Final[Mapping[str, type[BaseModel]]] = MappingProxyType(
    {
        # applications.events
        "application.submitted": applications.ApplicationSubmitted,
        "application.amended": applications.ApplicationAmended,
        "application.withdrawn": applications.ApplicationWithdrawn,
        "application.offer_accepted": offers.OfferAccepted,
        "application.offer_declined": offers.OfferDeclined,
        "application.milestone_reported": offers.MilestoneReported,
        "application.cancelled": applications.ApplicationCancelled,
        "application.fast_track_revoked": offers.FastTrackRevoked,
        # eligibility.events
        "eligibility.assessed": eligibility.EligibilityAssessed,
        # review.events
        "review.task_assigned": review.ReviewTaskAssigned,
        "review.decision_recorded": review.ReviewDecisionRecorded,
        "review.information_requested": review.ReviewInformationRequested,
        "review.reminder_due": review.ReviewReminderDue,
        "review.escalated": review.ReviewEscalated,
        "review.task_cancelled": review.ReviewTaskCancelled,
        # approvals.events
        "application.approved": approvals.ApplicationApproved,
        "application.rejected": approvals.ApplicationRejected,
        "application.offer_made": offers.OfferMade,
        "application.offer_lapsed": offers.OfferLapsed,
        "application.fast_track_granted": offers.FastTrackGranted,
        "application.milestone_verified": offers.MilestoneVerified,
        "application.award_completed": offers.AwardCompleted,
        "application.compensated": offers.ApplicationCompensated,
        # zones.commands
        "zone.allocate": zones.AllocateZoneSpace,
        "zone.release": zones.ReleaseZoneSpace,
        "zone.hold": zones.HoldZoneSpace,
        "zone.confirm": zones.ConfirmZoneHold,
        # zones.events
        "zone.allocated": zones.ZoneAllocated,
        "zone.waitlisted": zones.ZoneWaitlisted,
        "zone.released": zones.ZoneReleased,
        "zone.refused": zones.ZoneRefused,
        "zone.held": zones.ZoneHeld,
        "zone.hold_expired": zones.ZoneHoldExpired,
        # disbursement.commands
        "award.open": disbursement.OpenAward,
        "tranche.release": disbursement.ReleaseTranche,
        "award.cancel": disbursement.CancelAward,
        "award.charge": disbursement.ChargeAward,
        # disbursement.events
        "award.opened": disbursement.AwardOpened,
        "tranche.released": disbursement.TrancheReleased,
        "tranche.paid": disbursement.TranchePaid,
        "tranche.failed": disbursement.TrancheFailed,
        "award.cancelled": disbursement.AwardCancelled,
        "budget.exhausted": disbursement.BudgetExhausted,
        "award.charged": disbursement.AwardCharged,
        "ledger.transferred": disbursement.LedgerTransferred,
        # operations.events
        "dead_letter.redriven": operations.DeadLetterRedriven,
    }
)


def payload_model(message_type: str) -> type[BaseModel]:
    """The payload model registered for ``message_type``.

    Raises:
        UnknownMessageType: the type is not in the catalog.
    """
    try:
        return MESSAGE_TYPES[message_type]
    except KeyError:
        raise UnknownMessageType(
            f"unknown message type {message_type!r}", message_type=message_type
        ) from None


def message_type_of(payload: BaseModel | type[BaseModel]) -> str:
    """The message type whose payload model is ``payload`` (a model class or instance)."""
    model = payload if isinstance(payload, type) else type(payload)
    for message_type, registered in MESSAGE_TYPES.items():
        if registered is model:
            return message_type
    raise UnknownMessageType(f"{model.__name__} is not a registered payload model")


@cache
def envelope_model(message_type: str) -> type[Envelope[Any]]:
    """``Envelope[Payload]`` for ``message_type``: the model to validate or describe it with."""
    model = payload_model(message_type)
    # Parametrising with a runtime class is what pydantic generics are for; mypy cannot follow.
    return cast("type[Envelope[Any]]", Envelope[model])  # type: ignore[valid-type]


def make_envelope(
    type: str,
    payload: PayloadT,
    *,
    subject: str,
    actor: Actor,
    producer: str,
    correlation_id: uuid.UUID,
    causation_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> Envelope[PayloadT]:
    """Wrap ``payload`` in a validated envelope of message type ``type``.

    ``event_id`` defaults to a random uuid4; pass a deterministic one
    (:func:`contracts.envelope.deterministic_event_id`) when the producer may retry.
    ``occurred_at`` defaults to now (UTC); naive datetimes are refused.

    Raises:
        UnknownMessageType: ``type`` is not in the catalog.
        TypeError: ``payload`` is not an instance of the model registered for ``type``.
        ValueError: ``subject`` differs from the payload's ``application_id``.
    """
    model = payload_model(type)
    if not isinstance(payload, model):
        raise TypeError(f"{type!r} carries {model.__name__}, not {payload.__class__.__name__}")
    application_id = getattr(payload, "application_id", subject)
    if application_id != subject:
        raise ValueError(
            f"subject {subject!r} must equal the payload's application_id {application_id!r}"
        )
    envelope = envelope_model(type)(
        event_id=uuid.uuid4() if event_id is None else event_id,
        type=type,
        schema_version=1,
        occurred_at=utcnow() if occurred_at is None else occurred_at,
        producer=producer,
        correlation_id=correlation_id,
        causation_id=causation_id,
        actor=actor,
        subject=subject,
        payload=payload,
    )
    return cast("Envelope[PayloadT]", envelope)


def encode(envelope: Envelope[Any]) -> bytes:
    """Serialise an envelope to its wire form (UTF-8 JSON bytes).

    Raises:
        UnknownMessageType: the envelope's type is not in the catalog.
        TypeError: the payload is not an instance of the model registered for the type.
    """
    model = payload_model(envelope.type)
    if not isinstance(envelope.payload, model):
        raise TypeError(
            f"{envelope.type!r} carries {model.__name__}, not {envelope.payload.__class__.__name__}"
        )
    return envelope.model_dump_json().encode()


class _Header(BaseModel):
    """The routing fields of an envelope, read without validating (or building) the rest."""

    model_config = ConfigDict(extra="ignore")

    type: str
    schema_version: int = 1


# Errors meaning "these bytes are not a JSON object at all", as opposed to a schema violation.
_UNDECODABLE_ERRORS: Final = frozenset(
    {"json_invalid", "json_type", "model_type", "model_attributes_type"}
)


def decode(raw: bytes, type_hint: str | None = None) -> Envelope[Any]:
    """Parse and validate wire bytes into an envelope whose payload is the registered model.

    ``type_hint`` is the type the record's ``type`` header names, if any. When the bytes
    validate as that type's envelope, name it themselves and have a supported schema version,
    they decode in one pass; otherwise (no hint, a wrong one, invalid bytes) the envelope's
    own fields pick the model and report the error, so a hint never changes the outcome.

    Raises:
        DecodeError: not UTF-8 JSON, or not a JSON object.
        SchemaInvalid: the envelope or the payload does not validate (a ``DecodeError``).
        UnsupportedSchemaVersion: an unknown schema major version (a ``DecodeError``).
        UnknownMessageType: the type is not in the catalog.
    """
    if type_hint is not None and type_hint in MESSAGE_TYPES:
        try:
            envelope = envelope_model(type_hint).model_validate_json(raw)
        except ValidationError:
            pass
        else:
            if (
                envelope.type == type_hint
                and envelope.schema_version in SUPPORTED_SCHEMA_VERSIONS
                and getattr(envelope.payload, "application_id", envelope.subject)
                == envelope.subject
            ):
                return envelope
    return _decode(raw)


def _decode(raw: bytes) -> Envelope[Any]:
    # Reading the header first costs little (unused values are skipped, not built) and picks
    # the model, so the full validation runs once, in JSON mode, exactly as the schema says.
    try:
        header = _Header.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        if any(error["type"] in _UNDECODABLE_ERRORS for error in errors):
            raise DecodeError(f"message is not a UTF-8 JSON object: {errors[0]['msg']}") from exc
        raise SchemaInvalid(
            "message has no valid envelope `type`/`schema_version`: " + _summary(exc),
            errors=errors,
        ) from exc

    message_type = header.type
    if header.schema_version not in SUPPORTED_SCHEMA_VERSIONS:
        raise UnsupportedSchemaVersion(
            f"schema_version {header.schema_version} of {message_type!r} is not supported "
            f"(supported: {sorted(SUPPORTED_SCHEMA_VERSIONS)})",
            message_type=message_type,
        )

    model = envelope_model(message_type)
    try:
        envelope = model.model_validate_json(raw)
    except ValidationError as exc:
        raise SchemaInvalid(
            f"{message_type!r} does not match its schema: {_summary(exc)}",
            message_type=message_type,
            errors=exc.errors(include_url=False, include_input=False, include_context=False),
        ) from exc

    application_id = getattr(envelope.payload, "application_id", envelope.subject)
    if application_id != envelope.subject:
        raise SchemaInvalid(
            f"subject {envelope.subject!r} differs from payload.application_id {application_id!r}",
            message_type=message_type,
            errors=[
                {
                    "loc": ("subject",),
                    "msg": "must equal payload.application_id",
                    "type": "subject_mismatch",
                }
            ],
        )
    return envelope


def _summary(exc: ValidationError, limit: int = 5) -> str:
    # Locations and messages only: inputs may hold personal data and end up in logs.
    shown = "; ".join(
        f"{'.'.join(map(str, error['loc'])) or '<root>'}: {error['msg']}"
        for error in exc.errors()[:limit]
    )
    more = exc.error_count() - limit
    return shown + (f" (and {more} more)" if more > 0 else "")


def example_payloads(message_type: str) -> list[BaseModel]:
    """The validated example payloads documented on the model of ``message_type``.

    Useful for tests and demos in every service; the same examples appear in the JSON Schemas.
    """
    model = payload_model(message_type)
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples", []) if isinstance(extra, dict) else []
    if not isinstance(examples, list):
        return []
    return [model.model_validate(example) for example in examples]
