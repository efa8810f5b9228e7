"""Generate the committed JSON Schemas and guard them against drift and breaking changes.

Usage::

    python -m contracts.schemas_tool write                 # regenerate contracts/schemas/v1/
    python -m contracts.schemas_tool check                 # drift + compatibility vs committed
    python -m contracts.schemas_tool check --against DIR   # compatibility vs another baseline

There is one file per message type, ``<type>.json``, holding the full ``Envelope[Payload]``
schema, plus ``index.json`` listing every type with its topic, and the schemas of the Kafka
headers: ``headers.json`` (every record of a primary topic) and ``dlq-headers.json`` (every
record of a ``.dlq`` topic). The schemas are generated from the
models and never edited by hand.

The committed files are the compatibility baseline. ``check`` regenerates the schemas in memory
and reports two things separately:

* **drift**: generated text differs from the committed files. Exit code 1; running ``write`` is
  the fix.
* **breaking changes**: a regenerated v1 schema no longer accepts what the baseline accepted (a
  removed property, a changed type, a new required field, a narrowed enum, a tightened
  constraint, a removed message type). Exit code 3; ``write`` refuses such a change, which needs a
  new major version instead. Additive changes (new optional fields, new message types, widened
  types) are compatible.

CI should also run ``check --against`` a baseline taken from the main branch, so that a
breaking change cannot slip in by being written and committed together with the models.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel

from contracts.catalog import MESSAGE_TYPES, envelope_model, example_payloads, make_envelope
from contracts.envelope import Actor, deterministic_event_id
from contracts.headers import DeadLetterHeaders, MessageHeaders
from contracts.topics import TOPICS, topic_for_type

#: Where the v1 schemas are committed.
SCHEMA_DIR: Final = Path(__file__).resolve().parent / "schemas" / "v1"
INDEX_FILE: Final = "index.json"
#: Header schema name (its file is ``<name>.json``; hyphens keep it apart from message types)
#: -> the model it is generated from.
HEADER_MODELS: Final[Mapping[str, type[BaseModel]]] = {
    "headers": MessageHeaders,
    "dlq-headers": DeadLetterHeaders,
}
JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

EXIT_OK: Final = 0
EXIT_DRIFT: Final = 1
EXIT_BREAKING: Final = 3

# Fixed values so the example message embedded in each schema is byte-for-byte reproducible.
_EXAMPLE_CORRELATION_ID: Final = uuid.UUID("6a1e1f7e-0d64-4f67-9d4a-77c8c9b0a001")
_EXAMPLE_OCCURRED_AT: Final = datetime(2026, 11, 26, 10, 35, 2, tzinfo=UTC)


# --- generation ----------------------------------------------------------------------------------


def schema_file_name(message_type: str) -> str:
    """The file holding the schema of ``message_type``."""
    return f"{message_type}.json"


def _example_message(message_type: str) -> dict[str, Any]:
    payload = example_payloads(message_type)[0]
    producer = topic_for_type(message_type).name.split(".")[0]
    envelope = make_envelope(
        message_type,
        payload,
        subject=getattr(payload, "application_id", "app_01HZX3Q8W6"),
        actor=Actor.system(producer),
        producer=producer,
        correlation_id=_EXAMPLE_CORRELATION_ID,
        event_id=deterministic_event_id("schema-example", message_type),
        occurred_at=_EXAMPLE_OCCURRED_AT,
    )
    return envelope.model_dump(mode="json")


def generate_schema(message_type: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a whole message of type ``message_type``."""
    generated = envelope_model(message_type).model_json_schema(mode="validation")
    schema: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"urn:incentives:contracts:v1:{message_type}",
        **generated,
    }
    # The envelope model accepts any well-formed type; each message's schema pins its own.
    schema["properties"]["type"] = {**schema["properties"]["type"], "const": message_type}
    schema["examples"] = [_example_message(message_type)]
    return schema


def generate_schemas() -> dict[str, dict[str, Any]]:
    """Message type -> schema, for every type in the catalog."""
    return {message_type: generate_schema(message_type) for message_type in MESSAGE_TYPES}


def generate_header_schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the Kafka headers called ``name`` (a JSON object)."""
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"urn:incentives:contracts:v1:{name}",
        **HEADER_MODELS[name].model_json_schema(by_alias=True, mode="validation"),
    }


def generate_header_schemas() -> dict[str, dict[str, Any]]:
    """Header schema name -> schema, for every entry of :data:`HEADER_MODELS`."""
    return {name: generate_header_schema(name) for name in HEADER_MODELS}


def _compared_schemas() -> dict[str, dict[str, Any]]:
    # Headers are a contract like the payloads: they too may only change additively.
    return {**generate_schemas(), **generate_header_schemas()}


def generate_index() -> dict[str, Any]:
    """The index of message types and topics written next to the schemas."""
    return {
        "schema_version": 1,
        "generated_by": "python -m contracts.schemas_tool write",
        "messages": [
            {
                "type": message_type,
                "kind": "command" if topic_for_type(message_type).is_command_topic else "event",
                "payload": model.__name__,
                "topic": topic_for_type(message_type).name,
                "file": schema_file_name(message_type),
            }
            for message_type, model in MESSAGE_TYPES.items()
        ],
        "topics": [
            {
                "name": topic.name,
                "description": topic.description,
                "partitions": topic.partitions,
                "key": topic.key,
                "dlq": topic.dlq,
                "types": list(topic.types),
            }
            for topic in TOPICS
        ],
    }


def render(document: Mapping[str, Any]) -> str:
    """The committed text of a JSON document: stable, readable, newline-terminated."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def generate_files() -> dict[str, str]:
    """File name -> text of everything ``write`` puts in the schema directory."""
    files = {
        schema_file_name(message_type): render(schema)
        for message_type, schema in generate_schemas().items()
    }
    files.update(
        {f"{name}.json": render(schema) for name, schema in generate_header_schemas().items()}
    )
    files[INDEX_FILE] = render(generate_index())
    return files


# --- drift ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Drift:
    """A difference between the generated files and a schema directory."""

    file: str
    kind: Literal["changed", "missing", "unexpected"]

    def __str__(self) -> str:
        explanation = {
            "changed": "differs from the models",
            "missing": "is generated but not committed",
            "unexpected": "is committed but no longer generated",
        }[self.kind]
        return f"{self.file} {explanation}"


def find_drift(directory: Path, generated: Mapping[str, str]) -> list[Drift]:
    """Every file in ``directory`` that does not match ``generated`` (file name -> text)."""
    on_disk = {path.name: path for path in directory.glob("*.json")} if directory.is_dir() else {}
    drift = [
        Drift(name, "missing" if name not in on_disk else "changed")
        for name, text in sorted(generated.items())
        if name not in on_disk or on_disk[name].read_text(encoding="utf-8") != text
    ]
    drift += [Drift(name, "unexpected") for name in sorted(on_disk) if name not in generated]
    return drift


# --- compatibility -------------------------------------------------------------------------------

BreakingKind = Literal[
    "removed_message_type",
    "removed_property",
    "changed_type",
    "new_required",
    "narrowed_enum",
    "changed_const",
    "tightened_constraint",
    "closed_object",
]


@dataclass(frozen=True, slots=True)
class BreakingChange:
    """A way in which a new schema refuses messages the old schema accepted."""

    path: str
    kind: BreakingKind
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.detail} [{self.kind}]"


# JSON types a schema node accepts; None means "anything" (a schema with no type constraint).
_JsonTypes = frozenset[str] | None

# Keywords that bound what is accepted: raising a lower bound or lowering an upper bound, or
# changing an exact keyword, can refuse values the old schema accepted.
_LOWER_BOUNDS: Final = ("minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum")
_UPPER_BOUNDS: Final = ("maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum")
_EXACT_KEYWORDS: Final = ("pattern", "format", "multipleOf")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _covers(accepted: _JsonTypes, json_type: str) -> bool:
    if accepted is None:
        return True
    # Every JSON integer is a JSON number.
    return json_type in accepted or (json_type == "integer" and "number" in accepted)


#: A schema node together with the last ``$ref`` followed to reach it (None when inline).
_Resolved = tuple[Mapping[str, Any], str | None]


class _Schema:
    """One schema document, able to resolve its local ``$ref`` pointers."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def resolve(self, node: Mapping[str, Any]) -> _Resolved:
        """Follow ``$ref`` chains; keywords beside a ``$ref`` (annotations) are kept."""
        seen: list[str] = []
        while "$ref" in node:
            ref = node["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#/") or ref in seen:
                raise ValueError(f"cannot resolve $ref {ref!r}: only acyclic local refs")
            seen.append(ref)
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            siblings = {key: value for key, value in node.items() if key != "$ref"}
            node = {**target, **siblings} if siblings else target
        return node, (seen[-1] if seen else None)

    def variants(self, node: Mapping[str, Any]) -> list[_Resolved]:
        """The alternatives a node accepts: its ``anyOf``/``oneOf`` branches, flattened."""
        resolved, ref = self.resolve(node)
        for keyword in ("anyOf", "oneOf"):
            if keyword in resolved:
                return [
                    variant for branch in resolved[keyword] for variant in self.variants(branch)
                ]
        if "allOf" in resolved and len(resolved["allOf"]) == 1:
            merged = {key: value for key, value in resolved.items() if key != "allOf"}
            inner, inner_ref = self.resolve(resolved["allOf"][0])
            return [({**merged, **inner}, inner_ref or ref)]
        return [(resolved, ref)]


def _types_of(node: Mapping[str, Any]) -> _JsonTypes:
    if "type" in node:
        declared = node["type"]
        return frozenset([declared] if isinstance(declared, str) else declared)
    if "const" in node:
        return frozenset({_json_type(node["const"])})
    if "enum" in node:
        return frozenset(_json_type(value) for value in node["enum"])
    if "properties" in node:
        return frozenset({"object"})
    if "items" in node or "prefixItems" in node:
        return frozenset({"array"})
    return None


def _describe(types: _JsonTypes) -> str:
    return "any" if types is None else " | ".join(sorted(types))


class _Comparator:
    def __init__(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        self.old = _Schema(old)
        self.new = _Schema(new)
        self.changes: list[BreakingChange] = []
        # ($ref, $ref) pairs being compared by an ancestor call: recursive schemas terminate.
        self._in_progress: set[tuple[str, str]] = set()

    def report(self, path: str, kind: BreakingKind, detail: str) -> None:
        self.changes.append(BreakingChange(path, kind, detail))

    def compare(self, old_node: Mapping[str, Any], new_node: Mapping[str, Any], path: str) -> None:
        old_variants = self.old.variants(old_node)
        new_variants = self.new.variants(new_node)
        old_types = _union_types(node for node, _ in old_variants)
        new_types = _union_types(node for node, _ in new_variants)
        for old_variant, old_ref in old_variants:
            accepted = _types_of(old_variant)
            if accepted is None:
                if new_types is not None:
                    self.report(
                        path,
                        "changed_type",
                        f"type changed from {_describe(old_types)} to {_describe(new_types)}",
                    )
                continue
            for json_type in sorted(accepted):
                match = _pick(new_variants, json_type, old_variant)
                if match is None:
                    self.report(
                        path,
                        "changed_type",
                        f"type changed from {_describe(old_types)} to {_describe(new_types)}",
                    )
                    return
                new_variant, new_ref = match
                if old_ref is not None and new_ref is not None:
                    key = (old_ref, new_ref)
                    if key in self._in_progress:
                        continue
                    self._in_progress.add(key)
                    self._compare_variant(old_variant, new_variant, json_type, path)
                    self._in_progress.discard(key)
                else:
                    self._compare_variant(old_variant, new_variant, json_type, path)

    def _compare_variant(
        self, old: Mapping[str, Any], new: Mapping[str, Any], json_type: str, path: str
    ) -> None:
        if "const" in new and ("const" not in old or old["const"] != new["const"]):
            self.report(
                path,
                "changed_const",
                f"value fixed to {new['const']!r} (was {old.get('const', 'free')!r})",
            )
        if "enum" in new:
            old_values = (
                old["enum"] if "enum" in old else ([old["const"]] if "const" in old else None)
            )
            if old_values is None:
                self.report(path, "narrowed_enum", "restricted to an enumeration")
            else:
                removed = [value for value in old_values if value not in new["enum"]]
                if removed:
                    self.report(path, "narrowed_enum", f"no longer accepts {removed!r}")
        self._compare_bounds(old, new, path)
        if json_type == "object":
            self._compare_object(old, new, path)
        elif json_type == "array":
            old_items, new_items = old.get("items"), new.get("items")
            if isinstance(old_items, Mapping) and isinstance(new_items, Mapping):
                self.compare(old_items, new_items, f"{path}[]")
            elif new_items is not None and old_items is None:
                self.report(f"{path}[]", "tightened_constraint", "array items became constrained")

    def _compare_bounds(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        for keyword in _LOWER_BOUNDS:
            if keyword in new and (keyword not in old or new[keyword] > old[keyword]):
                self.report(
                    path,
                    "tightened_constraint",
                    f"{keyword} raised to {new[keyword]!r} (was {old.get(keyword, 'unset')!r})",
                )
        for keyword in _UPPER_BOUNDS:
            if keyword in new and (keyword not in old or new[keyword] < old[keyword]):
                self.report(
                    path,
                    "tightened_constraint",
                    f"{keyword} lowered to {new[keyword]!r} (was {old.get(keyword, 'unset')!r})",
                )
        for keyword in _EXACT_KEYWORDS:
            if keyword in new and new[keyword] != old.get(keyword):
                self.report(
                    path,
                    "tightened_constraint",
                    f"{keyword} changed to {new[keyword]!r} (was {old.get(keyword, 'unset')!r})",
                )

    def _compare_object(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        old_properties: Mapping[str, Any] = old.get("properties", {})
        new_properties: Mapping[str, Any] = new.get("properties", {})
        for name, old_property in old_properties.items():
            if name not in new_properties:
                self.report(f"{path}.{name}", "removed_property", "property removed")
            else:
                self.compare(old_property, new_properties[name], f"{path}.{name}")
        old_required = set(old.get("required", ()))
        for name in new.get("required", ()):
            if name not in old_required:
                was = "optional" if name in old_properties else "absent"
                self.report(f"{path}.{name}", "new_required", f"became required (was {was})")
        old_extra, new_extra = old.get("additionalProperties"), new.get("additionalProperties")
        if new_extra is False and old_extra is not False:
            self.report(path, "closed_object", "no longer accepts additional properties")
        elif isinstance(old_extra, Mapping) and isinstance(new_extra, Mapping):
            # A map type (dict[str, X]): its values must stay compatible.
            self.compare(old_extra, new_extra, f"{path}.*")


def _union_types(variants: Iterable[Mapping[str, Any]]) -> _JsonTypes:
    types: set[str] = set()
    for variant in variants:
        accepted = _types_of(variant)
        if accepted is None:
            return None
        types |= accepted
    return frozenset(types)


def _pick(
    candidates: Sequence[_Resolved], json_type: str, old: Mapping[str, Any]
) -> _Resolved | None:
    matches = [(node, ref) for node, ref in candidates if _covers(_types_of(node), json_type)]
    if len(matches) > 1 and "title" in old:
        # A union of several models: compare each old model with its namesake.
        same_title = [(node, ref) for node, ref in matches if node.get("title") == old["title"]]
        matches = same_title or matches
    return matches[0] if matches else None


def find_breaking_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[BreakingChange]:
    """How schema ``new`` refuses messages that schema ``old`` accepted (pure; resolves ``$ref``).

    Reported: removed properties, changed types (including a field that no longer accepts
    null), newly required properties, narrowed enums or consts, tightened constraints
    (lengths, bounds, patterns, formats) and objects closed to additional properties.
    Compatible, so not reported: new optional properties, widened types, relaxed constraints,
    new enum values and any change of annotations (titles, descriptions, examples, defaults).
    """
    comparator = _Comparator(old, new)
    comparator.compare(old, new, "$")
    # A node accepting several JSON types is compared once per type; report each change once.
    return list(dict.fromkeys(comparator.changes))


def find_breaking_changes_in_catalog(
    baseline: Mapping[str, Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]]
) -> dict[str, list[BreakingChange]]:
    """Breaking changes per message type between two ``type -> schema`` maps.

    A message type present in ``baseline`` but absent from ``current`` is itself breaking.
    """
    result: dict[str, list[BreakingChange]] = {}
    for message_type, old_schema in sorted(baseline.items()):
        if message_type not in current:
            result[message_type] = [
                BreakingChange("$", "removed_message_type", "message type removed")
            ]
            continue
        changes = find_breaking_changes(old_schema, current[message_type])
        if changes:
            result[message_type] = changes
    return result


def load_schema_dir(directory: Path) -> dict[str, dict[str, Any]]:
    """``name -> schema`` for every ``<name>.json`` in ``directory`` (the index is skipped).

    Names are message types, plus the header schemas once they are committed.
    """
    if not directory.is_dir():
        raise FileNotFoundError(f"schema directory {directory} does not exist")
    return {
        path.name.removesuffix(".json"): json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*.json"))
        if path.name != INDEX_FILE
    }


# --- commands ------------------------------------------------------------------------------------


def write(directory: Path = SCHEMA_DIR, *, allow_breaking: bool = False) -> int:
    """Regenerate every schema file in ``directory``; refuse breaking changes unless allowed."""
    current = _compared_schemas()
    if directory.is_dir() and not allow_breaking:
        breaking = find_breaking_changes_in_catalog(load_schema_dir(directory), current)
        if breaking:
            _print_breaking(breaking, directory)
            print(
                "Refusing to write: a breaking change needs a new major version, not an edit "
                "of v1 (use --allow-breaking only before v1 has ever been released).",
                file=sys.stderr,
            )
            return EXIT_BREAKING
    files = generate_files()
    directory.mkdir(parents=True, exist_ok=True)
    drift = find_drift(directory, files)
    for item in drift:
        target = directory / item.file
        if item.kind == "unexpected":
            target.unlink()
        else:
            target.write_text(files[item.file], encoding="utf-8")
    for item in drift:
        print(f"{'removed' if item.kind == 'unexpected' else 'wrote'} {directory / item.file}")
    print(f"{len(files)} schema files up to date in {directory}")
    return EXIT_OK


def check(directory: Path = SCHEMA_DIR, *, against: Path | None = None) -> int:
    """Compare the models with the committed schemas (and a baseline); return the exit code."""
    baseline_dir = against or directory
    if not baseline_dir.is_dir():
        print(f"error: baseline directory {baseline_dir} does not exist", file=sys.stderr)
        return EXIT_BREAKING
    breaking = find_breaking_changes_in_catalog(load_schema_dir(baseline_dir), _compared_schemas())
    drift = find_drift(directory, generate_files())

    if drift:
        print(f"Schema drift: {len(drift)} file(s) in {directory} do not match the models:")
        for item in drift:
            print(f"  - {item}")
    if breaking:
        _print_breaking(breaking, baseline_dir)
        print(
            "These changes break v1 consumers. Make them additive (optional fields, new types) "
            "or introduce a new major version; `write` will refuse them.",
            file=sys.stderr,
        )
        return EXIT_BREAKING
    if drift:
        print("The changes are backward compatible: run `python -m contracts.schemas_tool write`.")
        return EXIT_DRIFT
    print(f"OK: {len(MESSAGE_TYPES)} message schemas match the models and {baseline_dir}.")
    return EXIT_OK


def _print_breaking(breaking: Mapping[str, list[BreakingChange]], baseline_dir: Path) -> None:
    total = sum(len(changes) for changes in breaking.values())
    print(f"Breaking changes against the baseline {baseline_dir} ({total}):", file=sys.stderr)
    for message_type, changes in breaking.items():
        for change in changes:
            print(f"  - {message_type}: {change}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m contracts.schemas_tool",
        description="Generate and check the committed JSON Schemas of the message contracts.",
        epilog=(
            f"Exit codes: {EXIT_OK} ok, {EXIT_DRIFT} drift only (run write), "
            f"{EXIT_BREAKING} breaking change."
        ),
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=SCHEMA_DIR,
        help="schema directory to write or check (default: the committed contracts/schemas/v1)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    write_parser = commands.add_parser("write", help="regenerate the schema files")
    write_parser.add_argument(
        "--allow-breaking",
        action="store_true",
        help="write even if the result breaks the schemas already in the directory",
    )
    check_parser = commands.add_parser("check", help="fail on drift or on a breaking change")
    check_parser.add_argument(
        "--against",
        type=Path,
        default=None,
        metavar="DIR",
        help="baseline directory of <type>.json files for the compatibility check "
        "(default: the schema directory itself)",
    )
    args = parser.parse_args(argv)
    if args.command == "write":
        return write(args.dir, allow_breaking=args.allow_breaking)
    return check(args.dir, against=args.against)


if __name__ == "__main__":
    sys.exit(main())
