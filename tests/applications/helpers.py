"""Helpers for the applications service tests: tokens, events, and reading the broker."""

from __future__ import annotations

import copy
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr

from contracts import catalog
from contracts.envelope import Actor, ActorKind, Envelope, utcnow
from contracts.topics import topic_for_type
from contracts.v1.applications import CONTENT_EXAMPLE
from services.kit.auth import Principal, Role, TokenService
from services.kit.settings import DEV_JWT_SECRET

TOKENS = TokenService(SecretStr(DEV_JWT_SECRET))


def auth(role: str = "firm", firm: str | None = "ACME", sub: str | None = None) -> dict[str, str]:
    """An ``Authorization`` header for a principal signed with the development key."""
    parsed = Role(role)
    principal = Principal(
        sub=sub or (f"dev@{firm}.example" if parsed is Role.FIRM else f"{role}@gaip.example"),
        role=parsed,
        firm_id=firm if parsed is Role.FIRM else None,
    )
    return {"Authorization": f"Bearer {TOKENS.issue(principal)}"}


def new_firm() -> str:
    """A firm id no other test uses, so listings see only this test's applications."""
    return f"FIRM-{uuid.uuid4().hex[:10].upper()}"


#: When the test content's attestations were signed: a week before this test run, to the second.
SIGNED_RECENTLY = (
    (utcnow() - timedelta(days=7)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
)


def content(**changes: Any) -> dict[str, Any]:
    """The contract's complete example content, with dotted-path ``changes`` applied.

    Its attestations are signed a week before the test run, so the example stays within every
    rule set's attestation window whenever the tests run (and every call gives the same body).
    """
    body = copy.deepcopy(CONTENT_EXAMPLE)
    commitments = body["commitments"]
    for name in ("data_protection_attestation", "responsible_ai_attestation"):
        commitments[name] = {**commitments[name], "attested_at": SIGNED_RECENTLY}
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target: Any = body
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[leaf] = value
    return body


def key() -> str:
    """A fresh idempotency key."""
    return str(uuid.uuid4())


def event(
    message_type: str,
    application_id: str,
    *,
    actor: Actor | None = None,
    occurred_at: datetime | None = None,
    correlation_id: uuid.UUID | None = None,
    **payload_changes: Any,
) -> Envelope[Any]:
    """A valid envelope of ``message_type`` about ``application_id``, from the documented example.

    ``payload_changes`` are validated: the payload is rebuilt from the updated example.
    """
    example = catalog.example_payloads(message_type)[0]
    data = example.model_dump(mode="json")
    data.update({"application_id": application_id})
    for name, value in payload_changes.items():
        data[name] = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
    payload = type(example).model_validate(data)
    producer = message_type.split(".")[0]
    return catalog.make_envelope(
        message_type,
        payload,
        subject=application_id,
        actor=actor or Actor.system(producer),
        producer=producer,
        correlation_id=correlation_id or uuid.uuid4(),
        occurred_at=occurred_at or utcnow(),
    )


def assessed(
    application_id: str,
    outcome: str = "eligible",
    *,
    revision: int = 1,
    version: str = "2026.1",
    occurred_at: datetime | None = None,
    missing_fields: list[str] | None = None,
) -> Envelope[Any]:
    """An ``eligibility.assessed`` event with a realistic rule-by-rule result."""
    passed = outcome == "eligible"
    results = [
        {
            "rule_id": "priority_sector",
            "passed": True,
            "explanation": "Health is a priority sector.",
        },
        {
            "rule_id": "minimum_investment",
            "passed": passed,
            "explanation": (
                "The investment commitment meets the minimum."
                if passed
                else "The investment commitment is below the EUR 1,000,000 minimum."
            ),
        },
    ]
    if outcome == "needs_information":
        missing_fields = missing_fields or ["commitments.data_protection_attestation"]
    when = occurred_at or utcnow()
    return event(
        "eligibility.assessed",
        application_id,
        actor=Actor.system("eligibility"),
        occurred_at=when,
        application_revision=revision,
        outcome=outcome,
        rule_set_version=version,
        rule_results=results,
        missing_fields=missing_fields or [],
        assessed_at=when.isoformat(),
    )


def staff(kind: ActorKind, actor_id: str) -> Actor:
    """A staff actor."""
    return Actor(kind=kind, id=actor_id)


def ago(seconds: float) -> datetime:
    """A time ``seconds`` in the past."""
    return utcnow() - timedelta(seconds=seconds)


async def publish(producer: Any, envelope: Envelope[Any]) -> None:
    """Send ``envelope`` to its registry topic, keyed by its subject, and wait for the ack."""
    await producer.send_and_wait(
        topic_for_type(envelope.type).name,
        catalog.encode(envelope),
        key=envelope.subject.encode(),
        headers=envelope.headers(),
    )


async def find_record(
    bootstrap: str, topic: str, event_id: uuid.UUID, *, timeout: float = 20.0
) -> Envelope[Any]:
    """The envelope with ``event_id`` on ``topic``, read from the beginning (no consumer group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        partitions: set[int] | None = None
        while not partitions and time.monotonic() < deadline:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(topic)
        assert partitions, f"topic {topic} has no partitions"
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        wanted = str(event_id).encode()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    if ("event_id", wanted) in list(record.headers):
                        return catalog.decode(record.value)
        raise AssertionError(f"event {event_id} not found on {topic} within {timeout}s")
    finally:
        await consumer.stop()
