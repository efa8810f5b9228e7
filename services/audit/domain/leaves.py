"""A record's leaf bytes: RFC 8785 canonical JSON of its topic, key, headers and value.

``{"topic": ..., "key": base64 or null, "headers": [[name, base64 value], ...], "value": base64}``
with the headers in record order. Partition, offset and arrival time change when a record is
republished and are not part of the leaf, so a republished record gives the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass

import rfc8785


class LeafFormatError(ValueError):
    """Bytes that are not a leaf in the log's format."""


@dataclass(frozen=True, slots=True)
class LeafRecord:
    """The part of a Kafka record a leaf covers, exactly as it was on the wire."""

    topic: str
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    value: bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def leaf_bytes(
    topic: str, key: bytes | None, headers: Sequence[tuple[str, bytes]], value: bytes
) -> bytes:
    """The leaf bytes of a record (deterministic: one record, one byte string)."""
    document = {
        "topic": topic,
        "key": None if key is None else _b64(key),
        "headers": [[name, _b64(val)] for name, val in headers],
        "value": _b64(value),
    }
    return rfc8785.dumps(document)


def parse_leaf(data: bytes) -> LeafRecord:
    """The record a leaf's bytes describe; :class:`LeafFormatError` for anything else.

    Refuses bytes that parse but are not canonical, so a leaf has exactly one encoding.
    """
    try:
        document = json.loads(data)
        if not isinstance(document, dict) or set(document) != {"topic", "key", "headers", "value"}:
            raise LeafFormatError("a leaf has exactly the members topic, key, headers and value")
        topic, key, headers, value = (document[k] for k in ("topic", "key", "headers", "value"))
        if not isinstance(topic, str) or not isinstance(value, str):
            raise LeafFormatError("topic and value must be strings")
        if key is not None and not isinstance(key, str):
            raise LeafFormatError("key must be a base64 string or null")
        if not isinstance(headers, list) or not all(
            isinstance(h, list) and len(h) == 2 and all(isinstance(p, str) for p in h)
            for h in headers
        ):
            raise LeafFormatError("headers must be a list of [name, base64 value] pairs")
        record = LeafRecord(
            topic=topic,
            key=None if key is None else base64.b64decode(key, validate=True),
            headers=tuple((name, base64.b64decode(v, validate=True)) for name, v in headers),
            value=base64.b64decode(value, validate=True),
        )
    except (ValueError, binascii.Error) as exc:
        if isinstance(exc, LeafFormatError):
            raise
        raise LeafFormatError(f"not a leaf: {exc}") from exc
    if leaf_bytes(record.topic, record.key, record.headers, record.value) != data:
        raise LeafFormatError("leaf bytes are not in RFC 8785 canonical form")
    return record
