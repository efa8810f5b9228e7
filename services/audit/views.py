"""What the audit API answers: response models, and a readable summary of a logged record."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from services.audit.domain.leaves import LeafFormatError, parse_leaf
from services.audit.store import Entry


def b64(data: bytes) -> str:
    """Standard base64 text."""
    return base64.b64encode(data).decode("ascii")


class EntryView(BaseModel):
    """One leaf of the log and where its record came from."""

    index: int = Field(description="The leaf index (gap-free from 0).", examples=[0])
    leaf: str = Field(description="Base64 of the exact leaf bytes (RFC 8785 JSON).")
    topic: str = Field(description="Topic the record was consumed from.", examples=["x.events"])
    partition: int = Field(description="Its partition (not covered by the hash).", examples=[0])
    offset: int = Field(description="Its offset (not covered by the hash).", examples=[17])
    logged_at: datetime = Field(description="When the log appended it (UTC).")

    @classmethod
    def of(cls, entry: Entry) -> EntryView:
        return cls(
            index=entry.index,
            leaf=b64(entry.leaf),
            topic=entry.topic,
            partition=entry.partition,
            offset=entry.offset,
            logged_at=entry.logged_at,
        )


class EntriesView(BaseModel):
    """A page of leaves, ``start <= index < end``, at most 1,000."""

    entries: list[EntryView]


class InclusionProofView(BaseModel):
    """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``tree_size`` leaves."""

    index: int
    tree_size: int
    proof: list[str] = Field(description="Base64 hashes, from the leaf up.")


class ConsistencyProofView(BaseModel):
    """RFC 9162 consistency proof from the tree of ``first`` leaves to that of ``second``."""

    first: int
    second: int
    proof: list[str] = Field(description="Base64 hashes.")


class RecordSummary(BaseModel):
    """The decoded envelope of a logged record, as far as it decodes."""

    event_id: str | None = None
    type: str | None = None
    occurred_at: str | None = None
    producer: str | None = None
    actor: dict[str, Any] | None = Field(default=None, description="Kind, id (and firm).")
    reason: str | None = Field(default=None, description="The recorded reason, if any.")
    rule_set_version: str | None = None
    rule_set_sha256: str | None = None
    dead_letter_reason: str | None = Field(
        default=None, description="For a `.dlq` record: why it was dead-lettered."
    )
    decodable: bool = Field(description="Whether the record value is a JSON envelope.")


class HistoryItem(BaseModel):
    """One record of an application's history, with its proof."""

    index: int
    topic: str
    logged_at: datetime
    envelope: RecordSummary
    leaf: str = Field(description="Base64 of the exact leaf bytes.")
    inclusion_proof: list[str] = Field(description="Against the checkpoint's tree size.")


class HistoryView(BaseModel):
    """An application's records across every topic, in log order."""

    application_id: str
    tree_size: int = Field(description="Tree size of the checkpoint the proofs are against.")
    checkpoint: str = Field(description="That signed checkpoint.")
    records: list[HistoryItem]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def summarise(leaf: bytes) -> RecordSummary:
    """The envelope fields of a logged record; nothing is invented for what does not decode."""
    try:
        record = parse_leaf(leaf)
    except LeafFormatError:
        return RecordSummary(decodable=False)
    dlq_reason = next(
        (v.decode("utf-8", "replace") for k, v in record.headers if k == "dlq.reason"), None
    )
    try:
        document = json.loads(record.value)
    except ValueError:
        return RecordSummary(decodable=False, dead_letter_reason=dlq_reason)
    if not isinstance(document, dict):
        return RecordSummary(decodable=False, dead_letter_reason=dlq_reason)
    payload = document.get("payload")
    payload = payload if isinstance(payload, dict) else {}
    reason = _text(payload.get("reason"))
    reasons = payload.get("reasons")
    if reason is None and isinstance(reasons, list):
        reason = "; ".join(r for r in reasons if isinstance(r, str)) or None
    actor = document.get("actor")
    return RecordSummary(
        event_id=_text(document.get("event_id")),
        type=_text(document.get("type")),
        occurred_at=_text(document.get("occurred_at")),
        producer=_text(document.get("producer")),
        actor=actor if isinstance(actor, dict) else None,
        reason=reason,
        rule_set_version=_text(payload.get("rule_set_version")),
        rule_set_sha256=_text(payload.get("rule_set_sha256")),
        dead_letter_reason=dlq_reason,
        decodable=True,
    )
