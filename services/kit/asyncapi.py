"""A process's AsyncAPI 3.0 document, generated from the topic registry and its own wiring.

Nothing here is written by hand per service. A :class:`~services.kit.runtime.Service` records
what it consumes (each ``consume`` call) and what it publishes (each ``sends`` call); this module
turns that into a document:

- one channel per topic the process touches, listing **every** message type the registry
  (:mod:`contracts.topics`) says the topic carries, whatever the handler accepts;
- a ``receive`` operation per consumer and topic (with its consumer group), and a ``send``
  operation per published topic with exactly the types the process publishes;
- the Kafka headers of every message (:class:`contracts.headers.MessageHeaders`); on a message
  the process sends, ``producer`` is pinned to the name it writes into the envelope;
- the ``.dlq`` twin of every consumed topic, with the dead-letter format as a schema: the
  original bytes as the payload and :class:`contracts.headers.DeadLetterHeaders`, with
  ``dlq.consumer`` pinned to the consumer that writes them.

Payload schemas are the committed JSON Schemas of :mod:`contracts.schemas_tool`, their ``$defs``
hoisted into ``components.schemas``. ``GET /asyncapi.json`` serves the document and
``GET /asyncapi`` a static HTML summary of it (no script, nothing fetched from elsewhere).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from contracts.schemas_tool import generate_header_schema, generate_schema
from contracts.topics import DLQ_SUFFIX, Topic, get_topic, topic_for_type

ASYNCAPI_VERSION: Final = "3.0.0"
#: Version of the Kafka bindings used in the document.
KAFKA_BINDING_VERSION: Final = "0.5.0"
#: Component names of the header schemas.
MESSAGE_HEADERS: Final = "MessageHeaders"
DEAD_LETTER_HEADERS: Final = "DeadLetterHeaders"
#: Prefix of the component name of a message as this process sends it (headers pinned).
SENT_PREFIX: Final = "sent."
#: Prefix of the component name of a dead letter one consumer writes for one topic.
DEAD_LETTER_PREFIX: Final = "dead_letter."

_DEFS: Final = "#/$defs/"
_COMPONENT_SCHEMAS: Final = "#/components/schemas/"


@dataclass(frozen=True, slots=True)
class Receives:
    """One consumer's subscription: what ``Service.consume`` wired."""

    consumer: str
    group_id: str
    topics: tuple[str, ...]
    #: The types the handler acts on (``None``: all); the others are acknowledged and skipped.
    handled: frozenset[str] | None = None
    description: str | None = None
    #: Whether the consumer dead-letters what it cannot process (a send on each ``.dlq`` twin).
    dead_letters: bool = True
    #: Whether it also reads every ``.dlq`` twin, whoever wrote the dead letters (the audit log).
    reads_dead_letters: bool = False
    #: Whether it reads the topics themselves (False: only their ``.dlq`` twins).
    reads_topics: bool = True


@dataclass(frozen=True, slots=True)
class Sends:
    """Message types a process publishes on one topic, with the envelope ``producer`` it writes."""

    topic: str
    types: tuple[str, ...]
    producer: str
    description: str | None = None

    def __post_init__(self) -> None:
        unknown = set(self.types) - set(get_topic(self.topic).types)
        if unknown:
            raise ValueError(f"{sorted(unknown)} do not flow on {self.topic!r}")
        if not self.types:
            raise ValueError(f"declare at least one message type sent on {self.topic!r}")


@dataclass(slots=True)
class _Builder:
    schemas: dict[str, Any] = field(default_factory=dict)
    messages: dict[str, Any] = field(default_factory=dict)
    channels: dict[str, Any] = field(default_factory=dict)
    operations: dict[str, Any] = field(default_factory=dict)

    def hoist(self, name: str, schema: Mapping[str, Any]) -> dict[str, Any]:
        """Put ``schema`` (a committed JSON Schema) into components; return a reference to it."""
        text = json.dumps(schema).replace(f'"{_DEFS}', f'"{_COMPONENT_SCHEMAS}')
        body: dict[str, Any] = json.loads(text)
        # The identifiers would rebase the references; the dialect is implied by the format.
        for key in ("$schema", "$id"):
            body.pop(key, None)
        for def_name, definition in body.pop("$defs", {}).items():
            known = self.schemas.setdefault(def_name, definition)
            if known != definition:
                raise ValueError(f"two different schemas are both called {def_name!r}")
        self.schemas[name] = body
        return {"$ref": f"{_COMPONENT_SCHEMAS}{name}"}

    def schema_ref(self, name: str, build: Callable[[], Mapping[str, Any]]) -> dict[str, Any]:
        if name not in self.schemas:
            return self.hoist(name, build())
        return {"$ref": f"{_COMPONENT_SCHEMAS}{name}"}

    def channel(self, address: str) -> dict[str, Any]:
        known: dict[str, Any] | None = self.channels.get(address)
        if known is not None:
            return known
        dead_letters = address.endswith(DLQ_SUFFIX)
        topic = get_topic(address.removesuffix(DLQ_SUFFIX))
        description = (
            f"Dead letters of `{topic.name}`: records a consumer could not process."
            if dead_letters
            else f"{topic.description} Carries: {', '.join(f'`{t}`' for t in topic.types)}."
        )
        channel: dict[str, Any] = {
            "address": address,
            "title": address,
            "description": description,
            "messages": {},
            "bindings": {
                "kafka": {
                    "topic": address,
                    "partitions": topic.partitions,
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }
        self.channels[address] = channel
        return channel

    def add_message(self, address: str, name: str, message: Mapping[str, Any]) -> dict[str, str]:
        """Register ``message`` in components and on the channel; return the channel's ref."""
        self.messages.setdefault(name, dict(message))
        self.channel(address)["messages"][name] = {"$ref": f"#/components/messages/{name}"}
        return {"$ref": f"#/channels/{address}/messages/{name}"}

    def envelope_message(self, message_type: str, producer: str | None) -> dict[str, Any]:
        payload = self.schema_ref(message_type, lambda: generate_schema(message_type))
        headers = self.schema_ref(MESSAGE_HEADERS, lambda: generate_header_schema("headers"))
        pinned: dict[str, Any] = {"type": {"const": message_type}}
        if producer is not None:
            pinned["producer"] = {"const": producer}
        topic = topic_for_type(message_type)
        kind = "command" if topic.is_command_topic else "event"
        return {
            "name": message_type,
            "title": message_type + (f" (sent by {producer})" if producer else ""),
            "summary": f"The `{message_type}` {kind}, as UTF-8 JSON of its envelope.",
            "contentType": "application/json",
            "headers": {"allOf": [headers, {"type": "object", "properties": pinned}]},
            "payload": payload,
            "correlationId": {
                "description": "The application's journey.",
                "location": "$message.header#/correlation_id",
            },
            "bindings": {
                "kafka": {
                    "key": {
                        "type": "string",
                        "description": f"The {topic.key} (the envelope `subject`), UTF-8.",
                    },
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }

    def dead_letter_message(self, topic: str, consumer: str | None) -> dict[str, Any]:
        """A dead letter of ``topic`` written by ``consumer`` (``None``: by any consumer)."""
        headers = self.schema_ref(
            DEAD_LETTER_HEADERS, lambda: generate_header_schema("dlq-headers")
        )
        pinned: dict[str, Any] = {"dlq.source.topic": {"const": topic}}
        if consumer is not None:
            pinned["dlq.consumer"] = {"const": consumer}
        writer = consumer or "a consumer"
        return {
            "name": f"{DEAD_LETTER_PREFIX}{consumer or 'any'}.{topic}",
            "title": f"Dead letter of {writer}",
            "summary": (
                f"A record of `{topic}` that {writer} gave up on: the original key and value,"
                " byte for byte, with the original headers followed by the `dlq.*` ones."
            ),
            "contentType": "application/octet-stream",
            "headers": {"allOf": [headers, {"type": "object", "properties": pinned}]},
            "payload": {
                "type": "string",
                "format": "binary",
                "description": (
                    f"The original record value, unchanged: normally an envelope of one of the"
                    f" types of `{topic}`, but undecodable bytes stay as they were. Replaying is"
                    f" publishing it back to `{topic}` with its key."
                ),
            },
            "bindings": {
                "kafka": {
                    "key": {
                        "type": "string",
                        "description": "The original record key, unchanged.",
                    },
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }


def _receive_dead_letters(b: _Builder, topic: Topic, subscription: Receives) -> None:
    """Declare that ``subscription`` reads every dead letter of ``topic``."""
    any_ref = b.add_message(
        topic.dlq,
        f"{DEAD_LETTER_PREFIX}any.{topic.name}",
        b.dead_letter_message(topic.name, None),
    )
    described = subscription.description if not subscription.reads_topics else None
    b.operations[f"receive.{topic.dlq}.{subscription.consumer}"] = {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{topic.dlq}"},
        "title": f"{subscription.consumer} consumes {topic.dlq}",
        "description": described or "Every dead letter of the topic, whichever consumer wrote it.",
        "messages": [any_ref],
        "x-consumer": subscription.consumer,
        "x-dead-letters": False,
    }


def build_document(
    *,
    title: str,
    version: str,
    description: str | None,
    receives: Sequence[Receives],
    sends: Sequence[Sends],
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of a process that consumes ``receives`` and sends ``sends``."""
    b = _Builder()
    for sent in sends:
        refs = [
            b.add_message(
                sent.topic,
                f"{SENT_PREFIX}{message_type}",
                b.envelope_message(message_type, sent.producer),
            )
            for message_type in sent.types
        ]
        b.operations[f"send.{sent.topic}.{sent.producer}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{sent.topic}"},
            "title": f"{sent.producer} publishes on {sent.topic}",
            "description": sent.description
            or f"Published by {sent.producer}: {', '.join(f'`{t}`' for t in sent.types)}.",
            "messages": refs,
        }
    for subscription in receives:
        for topic_name in subscription.topics:
            topic = get_topic(topic_name)
            if not subscription.reads_topics:
                _receive_dead_letters(b, topic, subscription)
                continue
            refs = [
                b.add_message(topic.name, message_type, b.envelope_message(message_type, None))
                for message_type in topic.types
            ]
            handled = subscription.handled
            skipped = [t for t in topic.types if handled is not None and t not in handled]
            acts_on = (
                "Acts on every type."
                if not skipped
                else "Acts on "
                + (", ".join(f"`{t}`" for t in topic.types if t not in skipped) or "no type")
                + "; the other types are acknowledged and skipped."
            )
            b.operations[f"receive.{topic.name}.{subscription.consumer}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{topic.name}"},
                "title": f"{subscription.consumer} consumes {topic.name}",
                "description": (
                    f"{subscription.description or ''} {acts_on} Consumed at least once,"
                    " deduplicated on `event_id`."
                ).strip(),
                "messages": refs,
                # The name its dead letters carry in `dlq.consumer`, and its dedupe scope.
                "x-consumer": subscription.consumer,
                "bindings": {
                    "kafka": {
                        "groupId": {"type": "string", "enum": [subscription.group_id]},
                        "bindingVersion": KAFKA_BINDING_VERSION,
                    }
                },
                **(
                    {"x-handled-types": [t for t in topic.types if t in handled]}
                    if handled is not None
                    else {}
                ),
                # A reader that never dead-letters (the audit log records even poison as is).
                **({} if subscription.dead_letters else {"x-dead-letters": False}),
            }
            if subscription.reads_dead_letters:
                _receive_dead_letters(b, topic, subscription)
            if not subscription.dead_letters:
                continue
            ref = b.add_message(
                topic.dlq,
                f"{DEAD_LETTER_PREFIX}{subscription.consumer}.{topic.name}",
                b.dead_letter_message(topic.name, subscription.consumer),
            )
            b.operations[f"send.{topic.dlq}.{subscription.consumer}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{topic.dlq}"},
                "title": f"{subscription.consumer} dead-letters records of {topic.name}",
                "description": (
                    "A record that cannot be processed (undecodable, schema-invalid, unknown"
                    " type, or refused by a business rule) is published here with the reason;"
                    " the consumer keeps going. Transient errors never dead-letter: the"
                    " consumer waits until its dependency answers."
                ),
                "messages": [ref],
            }
    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": info,
        "defaultContentType": "application/json",
        "channels": dict(sorted(b.channels.items())),
        "operations": dict(sorted(b.operations.items())),
        "components": {
            "messages": dict(sorted(b.messages.items())),
            "schemas": dict(sorted(b.schemas.items())),
        },
    }


def render_html(document: Mapping[str, Any], *, json_path: str) -> str:
    """A static, self-contained HTML summary of ``document`` (no script, no external asset)."""
    e = html.escape
    info = document["info"]
    rows = []
    for name, operation in document["operations"].items():
        address = operation["channel"]["$ref"].removeprefix("#/channels/")
        types = ", ".join(ref["$ref"].rsplit("/", 1)[-1] for ref in operation["messages"])
        rows.append(
            f"<tr><td>{e(operation['action'])}</td><td><code>{e(address)}</code></td>"
            f"<td>{e(types)}</td><td>{e(operation.get('description', ''))}</td>"
            f"<td><code>{e(name)}</code></td></tr>"
        )
    body = json.dumps(document, indent=2)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{e(info["title"])} · AsyncAPI</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; line-height: 1.4; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .3rem .5rem;
vertical-align: top; text-align: left; }} pre {{ background: #f6f6f6; padding: 1rem;
overflow: auto; }}
</style></head><body>
<h1>{e(info["title"])} <small>{e(info["version"])}</small></h1>
<p>{e(info.get("description", ""))}</p>
<p>AsyncAPI {e(document["asyncapi"])} document: <a href="{e(json_path)}">{e(json_path)}</a></p>
<h2>Operations</h2>
<table><tr><th>action</th><th>channel</th><th>messages</th><th>description</th><th>id</th></tr>
{"".join(rows)}
</table>
<h2>Document</h2>
<pre>{e(body)}</pre>
</body></html>
"""


def asyncapi_router(
    document: Callable[[], Mapping[str, Any]], *, path: str = "/asyncapi"
) -> APIRouter:
    """``GET {path}`` (static HTML) and ``GET {path}.json`` (the document) from ``document``.

    The document is built on first request (the wiring is complete by then) and kept. There is
    no "try it out" endpoint: an unauthenticated route publishing to production topics is not
    something to ship.
    """
    cache: dict[str, Mapping[str, Any]] = {}

    def current() -> Mapping[str, Any]:
        if "spec" not in cache:
            cache["spec"] = document()
        return cache["spec"]

    router = APIRouter(tags=["asyncapi"])

    @router.get(path, response_class=HTMLResponse, summary="AsyncAPI documentation")
    def asyncapi_html() -> HTMLResponse:
        return HTMLResponse(render_html(current(), json_path=f"{path}.json"))

    @router.get(f"{path}.json", summary="AsyncAPI document (JSON)")
    def asyncapi_json() -> Response:
        return Response(json.dumps(current(), indent=2), media_type="application/json")

    return router
