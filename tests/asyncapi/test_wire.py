"""What travels on the wire is what the documents say, read by a client the platform never uses.

A journey runs on the real stack (Tansu, the Temporal dev server, PostgreSQL, and the
applications, eligibility and review services plus the workflow worker): a firm submits, a
reviewer asks for more information, the firm amends, eligibility assesses again, every stage is
approved. A record that no consumer can read is put on ``applications.events`` too, so each
consumer of that topic dead-letters it. Then confluent-kafka reads every topic and every record
must be:

- valid against its committed JSON Schema in ``contracts/schemas/v1``, headers included;
- declared, type and headers, by exactly one AsyncAPI document: its producer's (or, on a
  ``.dlq`` topic, the document of the consumer that dead-lettered it).
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.topics import all_topic_names
from contracts.v1.applications import CONTENT_EXAMPLE
from services.kit.logging import configure_logging
from services.kit.messaging import Record, create_producer, send_all
from tests.asyncapi.documents import served_documents
from tests.asyncapi.wire import (
    WireRecord,
    committed_errors,
    declaring_documents,
    read_every_record,
)
from tests.kit.helpers import eventually
from tests.review.helpers import reviewer
from tests.review.test_full_run import FIRM, platform, status_of, submit, tasks_of

pytestmark = pytest.mark.integration

#: The processes the journey runs (the platform fixture of the review journey).
RUNNING = ("applications", "eligibility", "review", "worker")
POISON = b"\xff\xfe not an envelope"
#: The firm's answer to the information request: a longer residency.
AMENDED = copy.deepcopy(CONTENT_EXAMPLE)
AMENDED["commitments"]["training"]["engineers_per_year"] += 10


async def _journey(applications: httpx.AsyncClient, desk: httpx.AsyncClient) -> str:
    """Submit, ask for information once, amend, then approve every stage; the application id."""
    application_id = await submit(applications)
    asked = False
    amended = False

    async def step() -> bool:
        nonlocal asked, amended
        status = await status_of(applications, application_id)
        if status == "approved":
            return True
        if status == "information_requested" and not amended:
            response = await applications.post(
                f"/v1/applications/{application_id}/amend",
                json={"content": AMENDED, "reason": "Training plan detailed."},
                headers={**FIRM, "Idempotency-Key": str(uuid.uuid4())},
            )
            assert response.status_code == 200, response.text
            amended = True
            return False
        for task in await tasks_of(desk, application_id):
            if task["status"] != "open":
                continue
            body: dict[str, Any] = {"decision": "approve", "comment": "Sound."}
            if not asked:
                body = {
                    "decision": "request_information",
                    "comment": "Please detail the training plan.",
                    "requested_fields": ["commitments"],
                }
            response = await desk.post(
                f"/v1/tasks/{task['task_id']}/decision",
                json=body,
                headers={**reviewer(task["reviewer_id"]), "Idempotency-Key": str(uuid.uuid4())},
            )
            if response.status_code == 409:
                continue  # the stage closed or paused a moment ago; look again
            assert response.status_code == 200, response.text
            if not asked:
                asked = True
                return False
        return False

    await eventually(step, timeout=300, interval=0.5)
    assert asked
    assert amended
    return application_id


def _consumers_of(documents: dict[str, dict[str, Any]], topic: str) -> set[str]:
    return {
        operation["x-consumer"]
        for name in RUNNING
        for operation in documents[name]["operations"].values()
        if operation["action"] == "receive"
        and operation["channel"]["$ref"] == f"#/channels/{topic}"
    }


async def test_every_record_on_the_wire_is_declared_by_exactly_one_document(
    pg_url: str, temporal_dev: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    configure_logging("tests", "WARNING")
    documents = await served_documents(tmp_path / "documents")
    poison_key = f"wire-poison-{uuid.uuid4().hex[:8]}".encode()
    expected_dead_letters = _consumers_of(documents, "applications.events")
    assert len(expected_dead_letters) == len(RUNNING)

    async with platform(pg_url, temporal_dev, tmp_path, unique_name("wire")) as running:
        await _journey(running.clients["applications"], running.clients["review"])

        producer = create_producer(running.bootstrap)
        await producer.start()
        try:
            await send_all(
                producer,
                [Record("applications.events", POISON, poison_key, (("origin", b"wire-test"),))],
            )
        finally:
            await producer.stop()

        async def all_dead_lettered() -> bool:
            records = await asyncio.to_thread(
                read_every_record, running.bootstrap, ["applications.events.dlq"]
            )
            consumers = {r.header_map().get("dlq.consumer") for r in records if r.key == poison_key}
            return consumers == expected_dead_letters

        await eventually(all_dead_lettered, timeout=60, interval=0.5)
        # Every process is still up while the wire is read: nothing is half-published.
        records = await asyncio.to_thread(read_every_record, running.bootstrap, all_topic_names())

    judged: list[WireRecord] = [
        r for r in records if not (r.key == poison_key and not r.topic.endswith(".dlq"))
    ]
    assert len(judged) == len(records) - 1  # only the poison itself has no producer

    invalid = {r.where: committed_errors(r) for r in judged}
    assert {where: errors for where, errors in invalid.items() if errors} == {}

    declared_by = {r.where: declaring_documents(documents, r) for r in judged}
    not_exactly_one = {where: found for where, found in declared_by.items() if len(found) != 1}
    assert not_exactly_one == {}

    # The journey covered what it set out to: every running producer, the information loop,
    # the workflow's own events and the dead letters of every consumer of the poisoned topic.
    producers = Counter(declared_by[r.where][0][0] for r in judged)
    assert set(producers) == set(RUNNING), producers
    types = {r.header_map().get("type") for r in judged if not r.topic.endswith(".dlq")}
    assert {
        "application.submitted",
        "application.amended",
        "eligibility.assessed",
        "review.task_assigned",
        "review.information_requested",
        "review.decision_recorded",
        "application.approved",
    } <= types
    dead = [r for r in judged if r.topic.endswith(".dlq")]
    assert {r.header_map()["dlq.consumer"] for r in dead} == expected_dead_letters
    assert all(r.value == POISON and r.header_map()["dlq.reason"] == "undecodable" for r in dead)
