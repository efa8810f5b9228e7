"""Dead letters are found and redriven on the real broker (Tansu) and PostgreSQL.

A message a rule refuses dead-letters; ``incentives dlq list``/``show`` find it; once the rule
is fixed, ``incentives dlq redrive`` sends it back with its original event id and it is
processed once; a second redrive changes nothing downstream. Each redrive is recorded on
``operations.events`` naming the operator.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from contracts import catalog
from contracts.topics import get_topic
from contracts.v1.operations import DeadLetterRedriven
from services.cli.deadletters import (
    OPERATIONS_TOPIC,
    asyncapi_document,
    get_dead_letters,
    list_dead_letters,
    read_topics,
    redrive,
    redriven_ids,
)
from services.cli.main import app
from services.kit.consumer import Incoming, Outcome
from services.kit.errors import BusinessRefusal
from services.kit.messaging import ensure_topics
from services.kit.uow import UnitOfWork
from tests.asyncapi.documents import OfficialParser
from tests.kit.helpers import counter, envelope, eventually, increment_counter
from tests.kit.test_delivery_guarantees import consuming, delivered

pytestmark = pytest.mark.integration


async def _cli(*args: str) -> tuple[int, str]:
    # The commands run their own event loop, so they run in a thread, as from a shell.
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    return result.exit_code, result.output


async def test_a_refused_message_is_listed_shown_and_redriven_once_fixed(
    pg_engine: AsyncEngine,
    kafka_bootstrap: str,
    producer: AIOKafkaProducer,
    make_topic: Callable[..., Awaitable[str]],
    unique_name: Callable[[str], str],
) -> None:
    topic = await make_topic("redrive")
    operations = get_topic(OPERATIONS_TOPIC)
    await ensure_topics(kafka_bootstrap, [(operations.name, operations.partitions)])
    fixed = asyncio.Event()

    async def refuses_until_fixed(incoming: Incoming, uow: UnitOfWork) -> None:
        if not fixed.is_set():
            raise BusinessRefusal("no rule admits this application yet")
        await increment_counter(incoming, uow)

    message = envelope()
    await producer.send_and_wait(
        topic,
        catalog.encode(message),
        key=message.subject.encode(),
        headers=[*message.headers(), ("origin", b"portal")],
    )
    async with consuming(
        kafka_bootstrap, pg_engine, producer, topic, unique_name("redrive"), refuses_until_fixed
    ) as consumer:
        await eventually(delivered(consumer, 1))
        assert consumer.outcomes == [Outcome.DEAD_LETTERED]

        (letter,) = await list_dead_letters(kafka_bootstrap, [f"{topic}.dlq"])
        assert str(letter.id) == f"{topic}.dlq:0:0"
        assert letter.event_id == message.event_id
        assert letter.message_type == "application.submitted"
        assert letter.info.reason == "business_refusal"
        assert letter.info.consumer == "downstream"

        code, output = await _cli(
            "dlq", "list", "--topic", f"{topic}.dlq", "--bootstrap", kafka_bootstrap
        )
        assert code == 0, output
        assert str(letter.id) in output
        code, output = await _cli("dlq", "show", str(letter.id), "--bootstrap", kafka_bootstrap)
        assert code == 0, output
        shown = json.loads(output)
        assert shown["headers"]["event_id"] == str(message.event_id)
        assert shown["headers"]["origin"] == "portal"
        assert shown["reason"] == "business_refusal"
        assert shown["error"] == "no rule admits this application yet"
        assert not any(name.startswith("dlq.") for name in shown["headers"])

        fixed.set()
        code, output = await _cli(
            "dlq", "redrive", str(letter.id), "--reason", "rule fixed",
            "--operator", "ops.mensah", "--bootstrap", kafka_bootstrap,
        )  # fmt: skip
        assert code == 0, output
        await eventually(delivered(consumer, 2))
        assert consumer.outcomes[1] == Outcome.PROCESSED
        assert await counter(pg_engine, message.subject) == 1

        # Redriving it again reaches the consumer, which has seen the event id: no effect.
        (again,) = await get_dead_letters(kafka_bootstrap, [letter.id])
        await redrive(kafka_bootstrap, [again], operator="ops.kim")
        await eventually(delivered(consumer, 3))
        assert consumer.outcomes[2] == Outcome.DUPLICATE
        assert await counter(pg_engine, message.subject) == 1

    # The redriven record is the original: same bytes, key, and headers without dlq.*.
    records = [r for r in await read_topics(kafka_bootstrap, [topic])]
    assert len(records) == 3
    assert {r.value for r in records} == {catalog.encode(message)}
    assert all(r.key == message.subject.encode() for r in records)
    assert all(list(r.headers) == list(records[0].headers) for r in records)

    # Each redrive is an event naming its operator.
    events = [
        catalog.decode(r.value)
        for r in await read_topics(kafka_bootstrap, [OPERATIONS_TOPIC])
        if json.loads(r.value)["payload"]["dead_letter_id"] == str(letter.id)
    ]
    assert [e.actor.id for e in events] == ["ops.mensah", "ops.kim"]
    first = events[0].payload
    assert isinstance(first, DeadLetterRedriven)
    assert first.original_event_id == message.event_id
    assert first.note == "rule fixed"
    assert events[0].causation_id == message.event_id
    assert events[0].correlation_id == message.correlation_id
    assert (await redriven_ids(kafka_bootstrap))[str(letter.id)] == 2

    # By topic, only what was not redriven yet goes back: nothing here.
    code, output = await _cli(
        "dlq", "redrive", "--topic", f"{topic}.dlq", "--bootstrap", kafka_bootstrap
    )
    assert code == 0, output
    assert "0 dead letter(s) redriven" in output


async def test_an_unknown_dead_letter_is_refused(kafka_bootstrap: str) -> None:
    code, output = await _cli(
        "dlq", "show", "applications.events.dlq:0:999999", "--bootstrap", kafka_bootstrap
    )
    assert code == 1
    assert "no dead letter applications.events.dlq:0:999999" in output
    code, output = await _cli("dlq", "show", "not-an-id", "--bootstrap", kafka_bootstrap)
    assert code == 1
    assert "is not a dead-letter id" in output


def test_the_operations_document_declares_the_redrive_event(
    official_parser: OfficialParser, tmp_path: Path
) -> None:
    document = asyncapi_document()
    path = tmp_path / "operations.json"
    path.write_text(json.dumps(document))
    (result,) = official_parser([path])
    assert result["valid"], result
    assert result["warnings"] == []
    channel = document["channels"][OPERATIONS_TOPIC]
    assert channel["address"] == OPERATIONS_TOPIC
    sends = [op for op in document["operations"].values() if op["action"] == "send"]
    assert [op["channel"]["$ref"] for op in sends] == [f"#/channels/{OPERATIONS_TOPIC}"]
