"""``incentives audit export --format``: the bundle as JSON Lines or as CSV.

- **jsonl**: the bundle, one JSON object a line. The first line is the bundle's head
  (``{"source": "bundle", "format", "application_id", "verifier_key", "checkpoint"}``); then
  one ``{"source": "log", ...}`` line per entry, with the bundle entry's members plus the
  record decoded (``key``, ``headers`` as text, ``record``: the value's JSON, or ``null`` when
  it is not JSON); then one ``{"source": "workflow", "workflow_id", "run_id", "event_id",
  "event_time", "event_type", "event"}`` line per workflow history event, in order. It
  verifies like the bundle (:func:`bundle_from_jsonl`) and replays like it
  (:func:`workflows_from_jsonl`).
- **csv**: one row per record and per workflow history event, for reading in a spreadsheet
  (:data:`CSV_COLUMNS`); it carries no proofs, so it is not what an auditor verifies.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from services.audit.domain.bundle import BundleError
from services.audit.domain.leaves import LeafFormatError, parse_leaf

FORMATS: Final = ("bundle", "jsonl", "csv")

CSV_COLUMNS: Final = (
    "source",
    "application_id",
    "index",
    "topic",
    "partition",
    "offset",
    "logged_at",
    "event_id",
    "type",
    "occurred_at",
    "actor",
    "run_id",
    "detail",
)


def _decoded(leaf_b64: str) -> dict[str, Any]:
    try:
        record = parse_leaf(base64.b64decode(leaf_b64))
    except (LeafFormatError, ValueError):
        return {"key": None, "headers": {}, "record": None}
    try:
        value: Any = json.loads(record.value)
    except ValueError:
        value = None
    return {
        "key": None if record.key is None else record.key.decode("utf-8", "replace"),
        "headers": {name: raw.decode("utf-8", "replace") for name, raw in record.headers},
        "record": value,
    }


def _workflow_lines(workflows: Sequence[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    for run in workflows:
        for event in run["history"].get("events", []):
            yield {
                "source": "workflow",
                "workflow_id": run["workflow_id"],
                "run_id": run["run_id"],
                "event_id": int(event.get("eventId", 0)),
                "event_time": event.get("eventTime"),
                "event_type": event.get("eventType"),
                "event": event,
            }


def jsonl_lines(bundle: Mapping[str, Any]) -> Iterator[str]:
    """The bundle as JSON Lines (see the module docstring)."""
    head = {
        "source": "bundle",
        "format": bundle["format"],
        "application_id": bundle["application_id"],
        "verifier_key": bundle["verifier_key"],
        "checkpoint": bundle["checkpoint"],
    }
    yield json.dumps(head)
    for entry in bundle["entries"]:
        yield json.dumps({"source": "log", **entry, **_decoded(entry["leaf"])})
    for line in _workflow_lines(bundle.get("workflows", [])):
        yield json.dumps(line)


def _lines(text: str) -> list[dict[str, Any]]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise BundleError(f"line {number} is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise BundleError(f"line {number} is not a JSON object")
        out.append(value)
    return out


#: Members of a ``log`` line that are the decoded record, not the bundle entry.
_DECODED: Final = frozenset({"source", "key", "headers", "record"})


def bundle_from_jsonl(text: str) -> dict[str, Any]:
    """The bundle a JSON Lines export was written from (its workflow lines left out)."""
    lines = _lines(text)
    if not lines or lines[0].get("source") != "bundle":
        raise BundleError("the first line is not the bundle's head")
    head = lines[0]
    return {
        "format": head.get("format"),
        "application_id": head.get("application_id"),
        "verifier_key": head.get("verifier_key"),
        "checkpoint": head.get("checkpoint"),
        "entries": [
            {k: v for k, v in line.items() if k not in _DECODED}
            for line in lines[1:]
            if line.get("source") == "log"
        ],
    }


def workflows_from_jsonl(text: str) -> list[dict[str, Any]]:
    """The bundle's ``workflows`` member, rebuilt from a JSON Lines export's workflow lines."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for line in _lines(text):
        if line.get("source") == "workflow":
            runs.setdefault((line["workflow_id"], line["run_id"]), []).append(line["event"])
    return [
        {"workflow_id": wid, "run_id": rid, "history": {"events": events}}
        for (wid, rid), events in runs.items()
    ]


def _actor(record: Any) -> str:
    actor = record.get("actor") if isinstance(record, dict) else None
    if not isinstance(actor, dict):
        return ""
    return f"{actor.get('kind', '')} {actor.get('id', '')}".strip()


def csv_text(bundle: Mapping[str, Any]) -> str:
    """The bundle's records and workflow events as CSV (:data:`CSV_COLUMNS`)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for entry in bundle["entries"]:
        decoded = _decoded(entry["leaf"])
        record = decoded["record"] if isinstance(decoded["record"], dict) else {}
        payload = record.get("payload")
        writer.writerow(
            {
                "source": "log",
                "application_id": decoded["key"] or "",
                "index": entry["index"],
                "topic": entry["topic"],
                "partition": entry.get("partition", ""),
                "offset": entry.get("offset", ""),
                "logged_at": entry.get("logged_at", ""),
                "event_id": record.get("event_id", ""),
                "type": record.get("type", ""),
                "occurred_at": record.get("occurred_at", ""),
                "actor": _actor(record),
                "run_id": "",
                "detail": "" if payload is None else json.dumps(payload, sort_keys=True),
            }
        )
    for line in _workflow_lines(bundle.get("workflows", [])):
        event = line["event"]
        attributes = {k: v for k, v in event.items() if k.endswith("Attributes")}
        writer.writerow(
            {
                "source": "workflow",
                "application_id": line["workflow_id"],
                "index": line["event_id"],
                "topic": "",
                "partition": "",
                "offset": "",
                "logged_at": "",
                "event_id": "",
                "type": line["event_type"],
                "occurred_at": line["event_time"] or "",
                "actor": "",
                "run_id": line["run_id"],
                "detail": json.dumps(attributes, sort_keys=True),
            }
        )
    return out.getvalue()
