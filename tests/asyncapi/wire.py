"""Reading the wire with an independent client, and judging records against the documents.

The reader is confluent-kafka (librdkafka), which shares no code with the platform's aiokafka
and FastStream. The judge knows only published artefacts: the committed JSON Schemas in
``contracts/schemas/v1`` and the AsyncAPI documents the processes serve.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from jsonschema import Draft202012Validator

from contracts.schemas_tool import SCHEMA_DIR
from contracts.topics import DLQ_SUFFIX, get_topic


@dataclass(frozen=True)
class WireRecord:
    """One record as the independent client read it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def header_map(self) -> dict[str, str]:
        """Headers as name -> UTF-8 text; a repeated name or non-UTF-8 value fails."""
        names = [name for name, _ in self.headers]
        assert len(names) == len(set(names)), f"repeated header in {self.where}: {names}"
        return {name: value.decode() for name, value in self.headers}

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def read_every_record(
    bootstrap: str, topics: list[str], *, timeout: float = 60
) -> list[WireRecord]:
    """Every record of ``topics`` up to their current end, read from the beginning.

    The end is each partition's high watermark when the read starts, so the read finishes by
    counting offsets, not by waiting for silence. No consumer group is joined or committed.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"wire-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        metadata = consumer.list_topics(timeout=10)
        ends: dict[tuple[str, int], int] = {}
        for topic in topics:
            assert topic in metadata.topics, f"{topic} does not exist on the broker"
            for partition in metadata.topics[topic].partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                if high > low:
                    ends[(topic, partition)] = high
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in ends])
        records: list[WireRecord] = []
        pending = set(ends)
        deadline = time.monotonic() + timeout
        while pending:
            assert time.monotonic() < deadline, f"partitions not read to their end: {pending}"
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                raise KafkaException(message.error())
            where = (message.topic(), message.partition())
            records.append(
                WireRecord(
                    topic=message.topic(),
                    partition=message.partition(),
                    offset=message.offset(),
                    key=message.key(),
                    value=message.value() or b"",
                    headers=tuple(message.headers() or ()),
                )
            )
            if message.offset() + 1 >= ends[where]:
                pending.discard(where)
        return records
    finally:
        consumer.close()


@cache
def committed_validator(name: str) -> Draft202012Validator:
    """The validator of ``contracts/schemas/v1/<name>.json``."""
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _within(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    # The document's references point into its components; give the schema that root.
    return Draft202012Validator(
        {**schema, "components": document["components"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def committed_errors(record: WireRecord) -> list[str]:
    """Why ``record`` does not match the committed schemas of its value and headers."""
    headers = record.header_map()
    if record.topic.endswith(DLQ_SUFFIX):
        return [
            f"headers: {e.message}" for e in committed_validator("dlq-headers").iter_errors(headers)
        ]
    errors = [f"headers: {e.message}" for e in committed_validator("headers").iter_errors(headers)]
    value = json.loads(record.value)
    message_type = value.get("type")
    if message_type not in get_topic(record.topic).types:
        return [*errors, f"type {message_type!r} does not flow on {record.topic}"]
    errors += [f"value: {e.message}" for e in committed_validator(message_type).iter_errors(value)]
    # The headers mirror the envelope; a missing causation header means a null cause.
    mirrored = {
        name: value[name] if name != "causation_id" else value.get(name)
        for name in (
            "event_id",
            "type",
            "schema_version",
            "correlation_id",
            "causation_id",
            "producer",
        )
    }
    for name, expected in mirrored.items():
        if headers.get(name) != (None if expected is None else str(expected)):
            errors.append(f"header {name}={headers.get(name)!r} but envelope says {expected!r}")
    if record.key != value["subject"].encode():
        errors.append(f"key {record.key!r} is not the subject {value['subject']!r}")
    return errors


def declaring_documents(
    documents: dict[str, dict[str, Any]], record: WireRecord
) -> list[tuple[str, str]]:
    """(document, message) pairs whose ``send`` on the record's channel declares the record.

    A message declares a record when the record's headers validate against the message's
    headers schema (which pins the type and the producer, or the dead-lettering consumer), and
    its value against the message's payload schema.
    """
    headers = record.header_map()
    dead_letter = record.topic.endswith(DLQ_SUFFIX)
    value = None if dead_letter else json.loads(record.value)
    found = []
    for name, document in documents.items():
        for operation in document["operations"].values():
            if operation["action"] != "send":
                continue
            if operation["channel"]["$ref"] != f"#/channels/{record.topic}":
                continue
            for ref in operation["messages"]:
                message_name = ref["$ref"].rsplit("/", 1)[-1]
                message = document["components"]["messages"][message_name]
                if not _within(document, message["headers"]).is_valid(headers):
                    continue
                if value is not None and not _within(document, message["payload"]).is_valid(value):
                    continue
                found.append((name, message_name))
    return found
