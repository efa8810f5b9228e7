"""What travels on the wire is what the documents say, read by a client the platform never uses.

A journey runs on the real stack (Tansu, the Temporal dev server, PostgreSQL, the simulated rail,
and every process that has a document: applications, eligibility, review, zones, disbursement,
audit and the workflow worker). An admin funds the grant budget; a firm submits; a reviewer
asks for more information; the firm amends; eligibility assesses again; every stage is
approved; the firm accepts its offer; the space is held and allocated and the signing tranche
paid; the firm reports a milestone, a reviewer verifies it and the second tranche is paid. Then
a record that no consumer can read is put on every topic, so each consumer that dead-letters
writes it to the topic's ``.dlq`` twin. Then confluent-kafka reads every topic and every record
must be:

- valid against its committed JSON Schema in ``contracts/schemas/v1``, headers included;
- declared, type and headers, by exactly one AsyncAPI document: its producer's (or, on a
  ``.dlq`` topic, the document of the consumer that dead-lettered it).

The audit log, which only reads, must hold each distinct record of the wire once.
"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.topics import DLQ_SUFFIX, TOPICS, all_topic_names
from contracts.v1.applications import CONTENT_EXAMPLE
from services.audit.main import create_app as create_audit
from services.audit.settings import Settings as AuditSettings
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
from tests.review.award_journey import (
    Journey,
    approve,
    award_platform,
    fund_grants,
    offered,
    second_paid,
)
from tests.review.helpers import AUDITOR

pytestmark = pytest.mark.integration

#: Every process with an AsyncAPI document runs in the journey.
RUNNING = frozenset(
    {"applications", "eligibility", "review", "zones", "disbursement", "audit", "worker"}
)
#: Processes that publish nothing, not even dead letters.
READERS = frozenset({"audit"})
#: Topics only operators' commands publish on (``incentives dlq redrive``), not the journey;
#: tests/kit/test_dlq_redrive.py checks their records and the commands' own document.
OPERATOR_TOPICS = frozenset({"operations.events"})
POISON = b"\xff\xfe not an envelope"
#: The firm's answer to the information request: a longer residency.
AMENDED = copy.deepcopy(CONTENT_EXAMPLE)
AMENDED["commitments"]["training"]["engineers_per_year"] += 10
#: What the journey must have put on the wire, at the least.
JOURNEY_TYPES = frozenset(
    {
        "application.submitted",
        "application.amended",
        "eligibility.assessed",
        "review.task_assigned",
        "review.information_requested",
        "review.decision_recorded",
        "application.approved",
        "application.offer_made",
        "application.offer_accepted",
        "zone.hold",
        "zone.held",
        "zone.confirm",
        "zone.allocated",
        "award.open",
        "award.opened",
        "tranche.release",
        "tranche.paid",
        "application.fast_track_granted",
        "application.milestone_reported",
        "application.milestone_verified",
    }
)


async def _journey(journey: Journey) -> None:
    """Ask for information once, amend, approve every stage, then take the award to tranche 2."""
    asked: list[str] = []

    def ask_once(task: dict[str, Any]) -> dict[str, Any]:
        if asked:
            return approve(task)
        asked.append(task["task_id"])
        return {
            "decision": "request_information",
            "comment": "Please detail the training plan.",
            "requested_fields": ["commitments"],
        }

    await journey.decide_until(lambda v: v["status"] == "information_requested", ask_once)
    await journey.firm_posts("amend", {"content": AMENDED, "reason": "Training plan detailed."})
    await journey.decide_until(offered)
    await journey.accept_offer()
    await journey.report_milestone()
    await journey.decide_until(second_paid)
    assert len(asked) == 1


def _dead_letterers(documents: dict[str, dict[str, Any]], topic: str) -> set[str]:
    """The consumers whose documents say they dead-letter what they cannot read of ``topic``."""
    return {
        operation["x-consumer"]
        for document in documents.values()
        for operation in document["operations"].values()
        if operation["action"] == "receive"
        and operation["channel"]["$ref"] == f"#/channels/{topic}"
        and operation.get("x-dead-letters", True)
    }


def _leaf(record: WireRecord) -> tuple[object, ...]:
    """What the audit log keeps of a record: a redelivered copy is the same leaf."""
    return (record.topic, record.key, record.headers, record.value)


async def _logged(audit: httpx.AsyncClient) -> int:
    """The size of the audit log's latest signed checkpoint."""
    response = await audit.get("/v1/log/checkpoint", headers=AUDITOR)
    assert response.status_code == 200, response.text
    return int(response.text.splitlines()[1])


async def test_every_record_on_the_wire_is_declared_by_exactly_one_document(
    pg_url: str, temporal_dev: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    configure_logging("tests", "WARNING")
    documents = await served_documents(tmp_path / "documents")
    assert set(documents) == RUNNING
    for name in READERS:
        assert all(op["action"] == "receive" for op in documents[name]["operations"].values())
    poison_key = f"wire-poison-{unique_name('p')}".encode()
    expected_dead_letters = {t.name: _dead_letterers(documents, t.name) for t in TOPICS}
    assert all(expected_dead_letters.values()), expected_dead_letters

    async with award_platform(
        pg_url,
        temporal_dev,
        tmp_path,
        unique_name("wire"),
        more={"audit": lambda kw: create_audit(AuditSettings(**kw))},
    ) as running:
        await fund_grants(running.clients["disbursement"])
        await _journey(await Journey.submitted(running))

        producer = create_producer(running.bootstrap)
        await producer.start()
        try:
            await send_all(
                producer,
                [Record(t.name, POISON, poison_key, (("origin", b"wire-test"),)) for t in TOPICS],
            )
        finally:
            await producer.stop()

        dlqs = [t.dlq for t in TOPICS]

        async def all_dead_lettered() -> bool:
            records = await asyncio.to_thread(read_every_record, running.bootstrap, dlqs)
            written = {
                t.name: {
                    r.header_map().get("dlq.consumer")
                    for r in records
                    if r.key == poison_key and r.topic == t.dlq
                }
                for t in TOPICS
            }
            return written == expected_dead_letters

        await eventually(all_dead_lettered, timeout=60, interval=0.5)
        # Every process is still up while the wire is read: nothing is half-published.
        records = await asyncio.to_thread(read_every_record, running.bootstrap, all_topic_names())
        leaves = len({_leaf(r) for r in records})

        async def audit_caught_up() -> bool:
            return await _logged(running.clients["audit"]) >= leaves

        await eventually(audit_caught_up, timeout=60, interval=0.5)
        # The log holds each distinct record once and nothing else: the audit service wrote
        # nothing to the wire that the read above did not see.
        assert await _logged(running.clients["audit"]) == leaves

    judged: list[WireRecord] = [
        r for r in records if not (r.key == poison_key and not r.topic.endswith(DLQ_SUFFIX))
    ]
    assert len(judged) == len(records) - len(TOPICS)  # only the poison itself has no producer

    invalid = {r.where: committed_errors(r) for r in judged}
    assert {where: errors for where, errors in invalid.items() if errors} == {}
    # One application's history stays in one partition of each topic, dead letters included.
    partitions: dict[tuple[str, bytes | None], set[int]] = {}
    for r in judged:
        partitions.setdefault((r.topic, r.key), set()).add(r.partition)
    assert {where: found for where, found in partitions.items() if len(found) != 1} == {}

    declared_by = {r.where: declaring_documents(documents, r) for r in judged}
    not_exactly_one = {where: found for where, found in declared_by.items() if len(found) != 1}
    assert not_exactly_one == {}

    # The journey covered what it set out to: every running producer, every topic, the
    # information loop, the offer, the space, both tranches and the milestone, and the dead
    # letters of every consumer of every topic.
    producers = Counter(declared_by[r.where][0][0] for r in judged)
    assert set(producers) == RUNNING - READERS, producers
    assert {r.topic for r in judged} == set(all_topic_names()) - OPERATOR_TOPICS
    types = Counter(r.header_map()["type"] for r in judged if not r.topic.endswith(DLQ_SUFFIX))
    assert sorted(JOURNEY_TYPES - set(types)) == []
    assert types["tranche.paid"] == 2, types
    dead = [r for r in judged if r.topic.endswith(DLQ_SUFFIX)]
    assert {
        t.name: {r.header_map()["dlq.consumer"] for r in dead if r.topic == t.dlq} for t in TOPICS
    } == expected_dead_letters
    assert all(r.value == POISON and r.header_map()["dlq.reason"] == "undecodable" for r in dead)
    # As the documents describe a dead letter: the original headers first, then the `dlq.*`
    # ones pointing at the original record.
    poisons = {
        r.topic: r for r in records if r.key == poison_key and not r.topic.endswith(DLQ_SUFFIX)
    }
    for r in dead:
        source = poisons[r.header_map()["dlq.source.topic"]]
        assert r.topic == f"{source.topic}{DLQ_SUFFIX}"
        assert r.headers[: len(source.headers)] == source.headers, r.where
        assert r.header_map()["dlq.source.partition"] == str(source.partition), r.where
        assert r.header_map()["dlq.source.offset"] == str(source.offset), r.where
