"""Dead-letter records match their published contract: the committed ``dlq-headers.json``."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from contracts.headers import DeadLetterReason
from contracts.schemas_tool import SCHEMA_DIR
from services.kit.dlq import MAX_ERROR_BYTES, ConsumedRecord, dead_letter, parse_dead_letter
from services.kit.errors import Reason

VALIDATOR = Draft202012Validator(
    json.loads((SCHEMA_DIR / "dlq-headers.json").read_text(encoding="utf-8")),
    format_checker=Draft202012Validator.FORMAT_CHECKER,
)


def _headers(record_headers: tuple[tuple[str, bytes], ...]) -> dict[str, str]:
    names = [name for name, _ in record_headers]
    assert len(names) == len(set(names)), names
    return {name: value.decode() for name, value in record_headers}


@pytest.mark.parametrize("reason", list(DeadLetterReason))
@pytest.mark.parametrize("timestamp_ms", [None, 1_764_000_000_000])
def test_dead_letters_match_the_committed_header_schema(
    reason: DeadLetterReason, timestamp_ms: int | None
) -> None:
    record = ConsumedRecord(
        topic="zones.commands",
        partition=3,
        offset=41,
        key=b"app_1",
        value=b"\xffnot json",
        headers=(("origin", b"fuzzer"), ("dlq.reason", b"stale")),
        timestamp_ms=timestamp_ms,
    )
    letter = dead_letter(
        record, reason=Reason(reason.value), error=ValueError("bad"), consumer="zones", attempts=2
    )
    headers = _headers(tuple(letter.headers))
    assert [e.message for e in VALIDATOR.iter_errors(headers)] == []
    assert headers["dlq.reason"] == reason.value
    assert ("dlq.source.timestamp_ms" in headers) is (timestamp_ms is not None)
    assert (letter.topic, letter.key, letter.value) == (
        "zones.commands.dlq",
        b"app_1",
        b"\xffnot json",
    )
    assert parse_dead_letter(letter.headers).original_headers == (("origin", b"fuzzer"),)


def test_a_long_error_is_cut_at_a_character_boundary() -> None:
    record = ConsumedRecord(topic="zones.commands", partition=0, offset=0, key=None, value=b"")
    letter = dead_letter(
        record,
        reason=Reason.BUSINESS_REFUSAL,
        error=ValueError("é" * MAX_ERROR_BYTES),
        consumer="zones",
        attempts=1,
    )
    error = dict(letter.headers)["dlq.error"]
    assert len(error) <= MAX_ERROR_BYTES
    assert error.decode() == "é" * (MAX_ERROR_BYTES // 2)


def test_the_schema_refuses_an_unknown_reason() -> None:
    record = ConsumedRecord(topic="zones.commands", partition=0, offset=0, key=None, value=b"")
    letter = dead_letter(
        record, reason=Reason.UNDECODABLE, error=ValueError("x"), consumer="zones", attempts=1
    )
    headers = _headers(tuple(letter.headers)) | {"dlq.reason": "internal_error"}
    assert not VALIDATOR.is_valid(headers)


def test_the_kit_dead_letters_only_with_contract_reasons() -> None:
    # The message-path codes of the kit are the contract's, by value.
    assert {r.value for r in DeadLetterReason} <= {r.value for r in Reason}


@pytest.mark.parametrize(
    "reason", [r for r in Reason if r.value not in {d.value for d in DeadLetterReason}]
)
def test_a_handler_raising_an_http_only_reason_is_a_business_refusal(reason: Reason) -> None:
    record = ConsumedRecord(topic="zones.commands", partition=0, offset=0, key=None, value=b"")
    letter = dead_letter(record, reason=reason, error=KeyError("x"), consumer="zones", attempts=1)
    headers = _headers(tuple(letter.headers))
    assert headers["dlq.reason"] == "business_refusal"
    assert headers["dlq.error_type"] == "builtins.KeyError"
    assert VALIDATOR.is_valid(headers)
