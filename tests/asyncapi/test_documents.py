"""Every process's AsyncAPI document tells the whole truth, and the official parser accepts it."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.topics import get_topic
from services.cli.settings import SERVICE_NAMES, SIMULATORS, WEB_SERVICES
from services.kit.asyncapi import (
    DEAD_LETTER_HEADERS,
    DEAD_LETTER_PREFIX,
    MESSAGE_HEADERS,
    SENT_PREFIX,
)
from tests.asyncapi.documents import REPO_ROOT, OfficialParser, served_documents
from workflows.approval import PRODUCER as WORKFLOW_PRODUCER
from workflows.worker import PUBLISHED, create_app

HISTORIES = REPO_ROOT / "tests" / "workflows" / "histories"


@pytest.fixture(scope="module")
async def documents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return await served_documents(tmp_path_factory.mktemp("asyncapi"))


def _ref_name(ref: dict[str, str]) -> str:
    return ref["$ref"].rsplit("/", 1)[-1]


def _operations(document: dict[str, Any], action: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (operation["channel"]["$ref"].removeprefix("#/channels/"), operation)
        for operation in document["operations"].values()
        if operation["action"] == action
    ]


def _pinned(message: dict[str, Any]) -> dict[str, Any]:
    """The header constants a message pins, e.g. ``{"type": ..., "producer": ...}``."""
    base, pins = message["headers"]["allOf"]
    assert base["$ref"].startswith("#/components/schemas/")
    return {name: rule["const"] for name, rule in pins["properties"].items()}


def test_every_process_serves_a_document(documents: dict[str, dict[str, Any]]) -> None:
    assert set(documents) == set(SERVICE_NAMES) - (SIMULATORS | WEB_SERVICES)
    for document in documents.values():
        assert document["asyncapi"] == "3.0.0"


def test_the_official_parser_accepts_every_document(
    documents: dict[str, dict[str, Any]], official_parser: OfficialParser, tmp_path: Path
) -> None:
    files = []
    for name, document in documents.items():
        path = tmp_path / f"{name}.asyncapi.json"
        path.write_text(json.dumps(document), encoding="utf-8")
        files.append(path)
    results = official_parser(files)
    problems = {r["file"]: r["errors"] + r["warnings"] for r in results if not r["valid"]}
    assert problems == {}
    # Warnings too: a document the parser has doubts about is not yet a contract.
    assert {r["file"]: r["warnings"] for r in results if r["warnings"]} == {}


def test_the_official_parser_rejects_a_broken_document(
    documents: dict[str, dict[str, Any]], official_parser: OfficialParser, tmp_path: Path
) -> None:
    broken = json.loads(json.dumps(documents["zones"]))
    broken["components"]["messages"].clear()
    path = tmp_path / "broken.asyncapi.json"
    path.write_text(json.dumps(broken), encoding="utf-8")
    (result,) = official_parser([path])
    assert not result["valid"]
    assert any("does not exist" in error for error in result["errors"])


def test_consumer_channels_list_every_type_the_topic_carries(
    documents: dict[str, dict[str, Any]],
) -> None:
    checked = 0
    for document in documents.values():
        for address, operation in _operations(document, "receive"):
            if address.endswith(".dlq"):  # the audit log reads dead letters as they are
                source = address.removesuffix(".dlq")
                assert [_ref_name(ref) for ref in operation["messages"]] == [
                    f"{DEAD_LETTER_PREFIX}any.{get_topic(source).name}"
                ]
                continue
            topic = get_topic(address)
            assert [_ref_name(ref) for ref in operation["messages"]] == list(topic.types)
            channel_messages = document["channels"][address]["messages"]
            assert set(topic.types) <= set(channel_messages)
            checked += 1
    assert checked >= len(set(SERVICE_NAMES) - (SIMULATORS | WEB_SERVICES))


def test_messages_declare_their_kafka_headers_and_key(
    documents: dict[str, dict[str, Any]],
) -> None:
    for document in documents.values():
        schemas = document["components"]["schemas"]
        for name, message in document["components"]["messages"].items():
            base = message["headers"]["allOf"][0]["$ref"].rsplit("/", 1)[-1]
            assert base in schemas
            assert message["bindings"]["kafka"]["key"]["type"] == "string"
            if base == MESSAGE_HEADERS:
                pins = _pinned(message)
                assert pins["type"] == name.removeprefix(SENT_PREFIX)
                assert ("producer" in pins) is name.startswith(SENT_PREFIX)
                assert message["correlationId"]["location"] == "$message.header#/correlation_id"
                header_schema = schemas[MESSAGE_HEADERS]
                assert "causation_id" not in header_schema["required"]
                assert header_schema["properties"]["causation_id"]["type"] == "string"
            else:
                assert base == DEAD_LETTER_HEADERS


def test_every_consumed_topic_documents_its_dead_letters(
    documents: dict[str, dict[str, Any]],
) -> None:
    for document in documents.values():
        sends: dict[str, list[dict[str, Any]]] = {}
        for address, operation in _operations(document, "send"):
            sends.setdefault(address, []).append(operation)
        receives = _operations(document, "receive")
        consumers = {
            (address, operation["x-consumer"])
            for address, operation in receives
            if operation.get("x-dead-letters", True) and not address.endswith(".dlq")
        }
        assert consumers or all(op.get("x-dead-letters") is False for _, op in receives)
        for address, consumer in consumers:
            dlq = get_topic(address).dlq
            assert dlq in sends, dlq
            messages = [
                document["components"]["messages"][_ref_name(ref)]
                for operation in sends[dlq]
                for ref in operation["messages"]
            ]
            pinned = [_pinned(message) for message in messages]
            assert {"dlq.source.topic": address, "dlq.consumer": consumer} in pinned
            for message in messages:
                assert message["contentType"] == "application/octet-stream"
                assert message["payload"]["format"] == "binary"
        reasons = document["components"]["schemas"].get("DeadLetterReason", {}).get("enum")
        assert reasons is not None
        assert {"undecodable", "schema_invalid", "business_refusal", "retries_exhausted"} <= set(
            reasons
        )


def test_the_worker_declares_everything_its_workflows_publish(
    documents: dict[str, dict[str, Any]],
) -> None:
    worker = documents["worker"]
    declared: dict[str, set[str]] = {}
    for address, operation in _operations(worker, "send"):
        for ref in operation["messages"]:
            message = worker["components"]["messages"][_ref_name(ref)]
            pins = _pinned(message)
            if "producer" in pins:
                assert pins["producer"] == WORKFLOW_PRODUCER
                declared.setdefault(address, set()).add(pins["type"])
    assert declared == {topic: set(types) for topic, types in PUBLISHED.items()}
    assert declared["applications.events"] == {"application.withdrawn"}
    assert declared["approvals.events"] == set(get_topic("approvals.events").types)
    assert declared["zones.commands"] == {"zone.hold", "zone.confirm", "zone.release"}
    assert declared["disbursement.commands"] == {
        "award.open",
        "tranche.release",
        "award.cancel",
        "award.charge",
    }
    assert declared["review.events"] == set(get_topic("review.events").types)


def test_the_worker_reads_back_the_dead_letters_of_its_commands(
    documents: dict[str, dict[str, Any]],
) -> None:
    worker = documents["worker"]
    reads = {
        address: operation
        for address, operation in _operations(worker, "receive")
        if operation["x-consumer"] == "worker-bridge-refusals"
    }
    assert set(reads) == {"zones.commands.dlq", "disbursement.commands.dlq"}
    for operation in reads.values():
        assert operation["x-dead-letters"] is False
        assert "refusal" in operation["description"]
    # It reads only the twins: the command topics themselves belong to their services.
    assert not {
        address
        for address, operation in _operations(worker, "receive")
        if address in ("zones.commands", "disbursement.commands")
    }


def _published_in_history(path: Path) -> list[tuple[str, str, str]]:
    """(topic, type, producer) of every publish activity scheduled in a recorded history."""
    found = []
    for event in json.loads(path.read_text(encoding="utf-8"))["events"]:
        scheduled = event.get("activityTaskScheduledEventAttributes")
        if not scheduled or scheduled["activityType"]["name"] != "publish_message":
            continue
        (payload,) = scheduled["input"]["payloads"]
        message = json.loads(base64.b64decode(payload["data"]))
        headers = dict(message["headers"])
        found.append((message["topic"], headers["type"], headers["producer"]))
    return found


def test_recorded_workflow_histories_publish_only_what_the_worker_declares() -> None:
    published = [
        item for path in sorted(HISTORIES.glob("*.json")) for item in _published_in_history(path)
    ]
    assert published, "no publish activity in the recorded histories"
    undeclared = {
        (topic, message_type)
        for topic, message_type, producer in published
        if message_type not in PUBLISHED.get(topic, ()) or producer != WORKFLOW_PRODUCER
    }
    assert undeclared == set()
    # The information timeout's withdrawal is among them: the case the document once missed.
    assert ("applications.events", "application.withdrawn", WORKFLOW_PRODUCER) in published


async def test_the_html_page_works_offline(tmp_path: Path) -> None:
    from workflows.settings import Settings

    app = create_app(Settings(var_dir=tmp_path))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
        page = await client.get("/asyncapi")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.text.lower()
    # Nothing to fetch: no script, no stylesheet link, no address outside this server.
    assert "<script" not in text
    assert "<link" not in text
    assert "http://" not in text
    assert "https://" not in text
    assert "/asyncapi.json" in text
    assert "approvals.events" in text


def test_a_process_cannot_declare_a_type_its_topic_does_not_carry() -> None:
    from services.kit.asyncapi import Sends

    with pytest.raises(ValueError, match=r"do not flow on 'approvals\.events'"):
        Sends(topic="approvals.events", types=("zone.allocate",), producer="workflows")
    with pytest.raises(ValueError, match="at least one"):
        Sends(topic="approvals.events", types=(), producer="workflows")
