"""Structured logs: JSON lines with bound context, and secrets never printed."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from services.kit.logging import REDACTED, bind_context, configure_logging, get_logger


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging("tests", "DEBUG", stream=buffer)
    yield buffer
    configure_logging("tests", "WARNING")


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_lines_are_json_with_service_and_bound_context(stream: io.StringIO) -> None:
    log = get_logger("tests.logging")
    with bind_context(correlation_id="corr-1", causation_id="cause-1", event_id="evt-1"):
        log.info("handled", outcome="processed")
    log.info("after")
    first, second = lines(stream)[-2:]
    assert first["event"] == "handled"
    assert first["service"] == "tests"
    assert first["level"] == "info"
    assert (first["correlation_id"], first["causation_id"], first["event_id"]) == (
        "corr-1",
        "cause-1",
        "evt-1",
    )
    assert "timestamp" in first
    assert "correlation_id" not in second  # context is scoped to the block


def test_nested_contexts_add_to_each_other_and_a_lines_own_keys_win(stream: io.StringIO) -> None:
    log = get_logger("tests.logging")
    with bind_context(consumer="eligibility", event_id=None):
        with bind_context(event_id=uuid.UUID(int=7), offset=12):
            log.info("inner", offset="own")
        log.info("outer")
    inner, outer = lines(stream)[-2:]
    assert inner["consumer"] == "eligibility"
    assert inner["event_id"] == str(uuid.UUID(int=7))
    assert inner["offset"] == "own"
    assert outer["consumer"] == "eligibility"
    assert outer["event_id"] is None
    assert "offset" not in outer


def test_secrets_are_redacted(stream: io.StringIO) -> None:
    log = get_logger("tests.logging")
    log.info(
        "connecting",
        jwt_secret="s3cr3t-value",
        access_token="tok-123",
        db_password="pw-456",
        Authorization="Bearer abc.def.ghi",
        settings={"nested": {"client_secret": "deep-secret"}, "harmless": "visible"},
        key=SecretStr("secretstr-value"),
        note="called with Bearer eyJhbGciOi.payload.sig by mistake",
    )
    text = stream.getvalue()
    for leaked in (
        "s3cr3t-value",
        "tok-123",
        "pw-456",
        "abc.def.ghi",
        "deep-secret",
        "secretstr-value",
        "eyJhbGciOi.payload.sig",
    ):
        assert leaked not in text
    record = lines(stream)[-1]
    assert record["jwt_secret"] == REDACTED
    assert record["settings"]["nested"]["client_secret"] == REDACTED
    assert record["settings"]["harmless"] == "visible"
    assert record["key"] == REDACTED


def test_stdlib_records_are_json_and_redacted(stream: io.StringIO) -> None:
    logging.getLogger("some.library").warning("auth header was Bearer zzz.yyy.xxx")
    record = lines(stream)[-1]
    assert record["logger"] == "some.library"
    assert record["level"] == "warning"
    assert "zzz.yyy.xxx" not in stream.getvalue()
    assert record["service"] == "tests"


def test_exceptions_are_rendered(stream: io.StringIO) -> None:
    log = get_logger("tests.logging")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    record = lines(stream)[-1]
    assert "ValueError: boom" in record["exception"]


def test_without_a_stream_lines_go_to_the_stderr_of_the_moment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    configure_logging("tests", "INFO")
    first.close()  # e.g. the stream of a CLI command run by a test runner, now gone
    second = io.StringIO()
    monkeypatch.setattr("sys.stderr", second)
    try:
        logging.getLogger("aiokafka").error("broker unreachable")
        [line] = lines(second)
        assert line["event"] == "broker unreachable"
        assert "Logging error" not in second.getvalue()
    finally:
        configure_logging("tests", "WARNING")
