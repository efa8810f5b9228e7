"""Create the platform's Kafka topics from the contracts registry (idempotent).

Topics are created explicitly because Tansu (and a locked-down Kafka) would otherwise auto-create
them with the wrong partition count. Each topic's ``.dlq`` twin gets the same partition count, so
a dead letter lands in the partition matching its application's key.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Kafka error code for "topic already exists": not a failure for an idempotent create.
TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create: its name and partition count."""

    name: str
    partitions: int


@dataclass(frozen=True)
class TopicResult:
    """What happened to one topic: created now, or already present (with its partition count)."""

    name: str
    wanted_partitions: int
    created: bool
    actual_partitions: int | None


class TopicCreationError(RuntimeError):
    """The broker refused to create a topic for a reason other than "already exists"."""


def registry_topics() -> list[TopicSpec]:
    """Every topic of ``contracts.topics.TOPICS`` plus its ``.dlq`` twin, in registry order.

    Names listed by ``all_topic_names()`` but not derived from a ``Topic`` (should the registry
    grow some) are created with one partition, so nothing the registry names is left missing.
    """
    from contracts import topics as registry

    specs: list[TopicSpec] = []
    seen: set[str] = set()
    for topic in registry.TOPICS:
        dlq = getattr(topic, "dlq", None) or f"{topic.name}.dlq"
        for name in (topic.name, dlq):
            if name not in seen:
                specs.append(TopicSpec(name, int(topic.partitions)))
                seen.add(name)
    for name in registry.all_topic_names():
        if name not in seen:
            specs.append(TopicSpec(name, 1))
            seen.add(name)
    return specs


async def create_topics(
    bootstrap: str,
    specs: list[TopicSpec],
    *,
    replication_factor: int = 1,
    timeout_s: float = 15.0,
) -> list[TopicResult]:
    """Create the missing topics of ``specs`` on ``bootstrap``; existing ones are left alone.

    Returns one result per spec with the partition count the broker reports, so a caller can
    flag a topic that pre-existed with a different count (Kafka cannot shrink partitions).
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        created: set[str] = set()
        if missing:
            response = await admin.create_topics(
                [NewTopic(spec.name, spec.partitions, replication_factor) for spec in missing],
                timeout_ms=int(timeout_s * 1000),
            )
            for error in response.topic_errors:
                # v0 responses carry (name, code); later versions add a message.
                name, code = error[0], error[1]
                message = error[2] if len(error) > 2 else ""
                if code == 0:
                    created.add(name)
                elif code != TOPIC_ALREADY_EXISTS:
                    raise TopicCreationError(
                        f"cannot create topic {name!r}: error {code} {message}"
                    )
        described = await admin.describe_topics([spec.name for spec in specs])
        partitions = {t["topic"]: len(t.get("partitions") or []) or None for t in described}
    finally:
        await admin.close()
    return [
        TopicResult(
            name=spec.name,
            wanted_partitions=spec.partitions,
            created=spec.name in created,
            actual_partitions=partitions.get(spec.name),
        )
        for spec in specs
    ]
