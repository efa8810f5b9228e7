"""The catalog and the wire codec: round trips, refusals and their DLQ reason codes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from contracts.catalog import (
    MESSAGE_TYPES,
    decode,
    encode,
    envelope_model,
    example_payloads,
    make_envelope,
    message_type_of,
    payload_model,
)
from contracts.envelope import Actor, ActorKind, Envelope, deterministic_event_id
from contracts.errors import (
    ContractError,
    DecodeError,
    SchemaInvalid,
    UnknownMessageType,
    UnsupportedSchemaVersion,
)
from contracts.money import Money
from contracts.v1.applications import ApplicationSubmitted
from contracts.v1.zones import AllocateZoneSpace

CORRELATION_ID = uuid.UUID("6a1e1f7e-0d64-4f67-9d4a-77c8c9b0a001")
FIRM_ACTOR = Actor(kind=ActorKind.FIRM, id="jana@acme.example", firm_id="ACME")

EXAMPLES = [
    pytest.param(message_type, index, id=f"{message_type}[{index}]")
    for message_type in sorted(MESSAGE_TYPES)
    for index in range(len(example_payloads(message_type)))
]


def _envelope(
    message_type: str, payload: BaseModel | None = None, **overrides: Any
) -> Envelope[Any]:
    payload = payload or example_payloads(message_type)[0]
    arguments: dict[str, Any] = {
        "subject": getattr(payload, "application_id", None),
        "actor": FIRM_ACTOR,
        "producer": "applications",
        "correlation_id": CORRELATION_ID,
    }
    return make_envelope(message_type, payload, **{**arguments, **overrides})


def _wire(message_type: str = "application.submitted") -> dict[str, Any]:
    document: dict[str, Any] = json.loads(encode(_envelope(message_type)))
    return document


@pytest.mark.parametrize(("message_type", "index"), EXAMPLES)
def test_every_example_round_trips_through_the_wire(message_type: str, index: int) -> None:
    payload = example_payloads(message_type)[index]
    envelope = _envelope(message_type, payload)

    decoded = decode(encode(envelope))

    assert decoded == envelope
    assert type(decoded.payload) is MESSAGE_TYPES[message_type]
    assert decoded.payload == payload
    assert encode(decoded) == encode(envelope)


def test_money_travels_as_strings_on_the_wire() -> None:
    raw = encode(_envelope("application.submitted"))
    grant = json.loads(raw)["payload"]["content"]["incentives"]["grant"]["amount"]

    assert grant == {"amount": "250000.00", "currency": "EUR"}


def test_make_envelope_fills_id_time_and_version() -> None:
    before = datetime.now(UTC)
    envelope = _envelope("application.submitted")

    assert envelope.event_id.version == 4
    assert envelope.schema_version == 1
    assert envelope.type == "application.submitted"
    assert envelope.occurred_at.tzinfo is not None
    assert before <= envelope.occurred_at <= datetime.now(UTC)
    assert envelope.causation_id is None


def test_make_envelope_keeps_given_ids_and_time() -> None:
    event_id = deterministic_event_id("app_01HZX3Q8W6", "eligibility", "1")
    causation_id = uuid.uuid4()
    occurred_at = datetime(2026, 11, 26, 12, 0, tzinfo=timezone(timedelta(hours=2)))

    envelope = _envelope(
        "application.submitted",
        event_id=event_id,
        causation_id=causation_id,
        occurred_at=occurred_at,
    )

    assert envelope.event_id == event_id
    assert envelope.causation_id == causation_id
    assert envelope.occurred_at == occurred_at
    assert envelope.occurred_at.utcoffset() == timedelta(0)


def test_make_envelope_refuses_a_naive_time() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        _envelope("application.submitted", occurred_at=datetime(2026, 11, 26, 12, 0))


def test_make_envelope_refuses_the_wrong_payload_model() -> None:
    payload = example_payloads("zone.allocate")[0]
    with pytest.raises(TypeError, match="ApplicationSubmitted"):
        _envelope("application.submitted", payload)


def test_make_envelope_refuses_a_subject_that_is_not_the_application() -> None:
    with pytest.raises(ValueError, match="subject"):
        _envelope("application.submitted", subject="app_SOMETHING_ELSE")


def test_make_envelope_refuses_an_unknown_type() -> None:
    with pytest.raises(UnknownMessageType):
        _envelope("application.teleported", example_payloads("application.submitted")[0])


def test_encode_refuses_an_unregistered_type() -> None:
    envelope = _envelope("application.submitted").model_copy(update={"type": "application.lost"})
    with pytest.raises(UnknownMessageType):
        encode(envelope)


def test_decode_refuses_an_unknown_type() -> None:
    document = _wire()
    document["type"] = "application.teleported"

    with pytest.raises(UnknownMessageType) as caught:
        decode(json.dumps(document).encode())

    assert caught.value.reason_code == "unknown_message_type"
    assert caught.value.message_type == "application.teleported"


@pytest.mark.parametrize(
    "raw",
    [b"", b"\xff\xfe\x00garbage", b"not json", b"{", b"[1, 2]", b'"text"', b"null", b"42"],
)
def test_decode_refuses_garbage_bytes(raw: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(raw)

    assert type(caught.value) is DecodeError
    assert caught.value.reason_code == "undecodable"


@pytest.mark.parametrize(
    ("mutate", "location"),
    [
        (lambda d: d.pop("type"), "type"),
        (lambda d: d.pop("event_id"), "event_id"),
        (lambda d: d.update(occurred_at="2026-11-26T10:35:02"), "occurred_at"),
        (lambda d: d["payload"].pop("firm_id"), "payload.firm_id"),
        (lambda d: d["payload"].update(extra_field=1), "payload.extra_field"),
        (lambda d: d.update(unexpected=True), "unexpected"),
        (
            lambda d: d["payload"]["content"]["incentives"]["grant"]["amount"].update(
                amount="-5.00"
            ),
            "payload.content.incentives.grant.amount.amount",
        ),
        (
            lambda d: d["payload"]["content"]["incentives"]["grant"]["amount"].update(
                amount=250000.5
            ),
            "payload.content.incentives.grant.amount.amount",
        ),
    ],
)
def test_decode_reports_schema_violations_with_their_location(mutate: Any, location: str) -> None:
    document = _wire()
    mutate(document)

    with pytest.raises(SchemaInvalid) as caught:
        decode(json.dumps(document).encode())

    assert caught.value.reason_code == "schema_invalid"
    assert location in {".".join(map(str, error["loc"])) for error in caught.value.errors}
    # Errors are safe to log: they do not echo the offending input.
    assert all("input" not in error for error in caught.value.errors)


def test_decode_refuses_a_subject_that_disagrees_with_the_payload() -> None:
    document = _wire()
    document["subject"] = "app_OTHER"

    with pytest.raises(SchemaInvalid, match="subject"):
        decode(json.dumps(document).encode())


def test_decode_refuses_an_unsupported_major_version() -> None:
    document = _wire()
    document["schema_version"] = 2

    with pytest.raises(UnsupportedSchemaVersion) as caught:
        decode(json.dumps(document).encode())

    assert caught.value.reason_code == "unsupported_schema_version"
    assert isinstance(caught.value, DecodeError)


def test_error_hierarchy_and_reason_codes_are_stable() -> None:
    assert issubclass(DecodeError, ContractError)
    assert issubclass(SchemaInvalid, DecodeError)
    assert issubclass(UnsupportedSchemaVersion, DecodeError)
    assert issubclass(UnknownMessageType, ContractError)
    assert not issubclass(UnknownMessageType, DecodeError)
    codes = {
        cls.reason_code
        for cls in (
            ContractError,
            DecodeError,
            SchemaInvalid,
            UnsupportedSchemaVersion,
            UnknownMessageType,
        )
    }
    assert codes == {
        "contract_violation",
        "undecodable",
        "schema_invalid",
        "unsupported_schema_version",
        "unknown_message_type",
    }


def test_lookups_by_type_and_by_model() -> None:
    assert payload_model("zone.allocate") is AllocateZoneSpace
    assert message_type_of(AllocateZoneSpace) == "zone.allocate"
    assert message_type_of(example_payloads("application.submitted")[0]) == "application.submitted"
    assert envelope_model("application.submitted") is envelope_model("application.submitted")
    with pytest.raises(UnknownMessageType):
        payload_model("zone.teleport")
    with pytest.raises(UnknownMessageType):
        message_type_of(Money)


def test_catalog_is_read_only_and_names_follow_the_convention() -> None:
    with pytest.raises(TypeError):
        MESSAGE_TYPES["x.y"] = ApplicationSubmitted  # type: ignore[index]
    for message_type in MESSAGE_TYPES:
        domain, _, name = message_type.partition(".")
        assert domain
        assert name
        assert message_type == message_type.lower()


def test_decoded_payload_values_are_typed() -> None:
    decoded = decode(encode(_envelope("application.submitted")))
    payload = decoded.payload
    assert isinstance(payload, ApplicationSubmitted)
    assert payload.content.incentives.grant is not None
    assert payload.content.incentives.grant.amount == Money.of("250000.00", "EUR")
    assert decoded.actor == FIRM_ACTOR


@pytest.mark.parametrize(("message_type", "index"), EXAMPLES)
def test_a_type_hint_decodes_the_same_envelope_whatever_it_names(
    message_type: str, index: int
) -> None:
    raw = encode(_envelope(message_type, example_payloads(message_type)[index]))
    other = "zone.hold" if message_type != "zone.hold" else "application.submitted"

    for hint in (message_type, other, "no.such_type"):
        assert decode(raw, hint) == decode(raw)


def _hinted_failures() -> list[Any]:
    def unsupported(d: dict[str, Any]) -> None:
        d["schema_version"] = 2

    def unknown(d: dict[str, Any]) -> None:
        d["type"] = "application.teleported"

    def other_subject(d: dict[str, Any]) -> None:
        d["subject"] = "app_OTHER"

    def bad_amount(d: dict[str, Any]) -> None:
        d["payload"]["content"]["incentives"]["grant"]["amount"].update(amount="-5.00")

    def other_type(d: dict[str, Any]) -> None:
        d["type"] = "application.amended"

    return [
        pytest.param(mutate, id=mutate.__name__)
        for mutate in (unsupported, unknown, other_subject, bad_amount, other_type)
    ]


@pytest.mark.parametrize("mutate", _hinted_failures())
def test_a_type_hint_never_changes_an_error(mutate: Any) -> None:
    """The record's header says `application.submitted`; the bytes say otherwise."""
    document = _wire()
    mutate(document)
    raw = json.dumps(document).encode()

    with pytest.raises(ContractError) as unhinted:
        decode(raw)
    with pytest.raises(ContractError) as hinted:
        decode(raw, "application.submitted")

    assert type(hinted.value) is type(unhinted.value)
    assert str(hinted.value) == str(unhinted.value)
    assert getattr(hinted.value, "errors", None) == getattr(unhinted.value, "errors", None)
