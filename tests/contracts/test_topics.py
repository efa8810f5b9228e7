"""The topic registry: every message type flows on exactly one topic, each with a DLQ twin."""

from __future__ import annotations

from collections import Counter
from dataclasses import FrozenInstanceError, replace

import pytest

from contracts.catalog import MESSAGE_TYPES
from contracts.errors import UnknownMessageType
from contracts.topics import (
    DEFAULT_PARTITIONS,
    TOPICS,
    Topic,
    all_topic_names,
    get_topic,
    topic_for_type,
)

EXPECTED_TOPICS = {
    "applications.events",
    "eligibility.events",
    "review.events",
    "approvals.events",
    "zones.commands",
    "zones.events",
    "disbursement.commands",
    "disbursement.events",
    "operations.events",
}


def test_the_designed_topics_exist() -> None:
    assert {topic.name for topic in TOPICS} == EXPECTED_TOPICS


def test_every_message_type_flows_on_exactly_one_topic() -> None:
    occurrences = Counter(message_type for topic in TOPICS for message_type in topic.types)

    assert set(occurrences) == set(MESSAGE_TYPES), "types on topics differ from the catalog"
    assert {t: n for t, n in occurrences.items() if n != 1} == {}


@pytest.mark.parametrize("message_type", sorted(MESSAGE_TYPES))
def test_topic_for_type_finds_the_topic(message_type: str) -> None:
    assert message_type in topic_for_type(message_type).types


def test_commands_and_events_go_to_the_matching_topic_kind() -> None:
    assert topic_for_type("zone.allocate").name == "zones.commands"
    assert topic_for_type("zone.allocated").name == "zones.events"
    assert topic_for_type("award.open").name == "disbursement.commands"
    assert topic_for_type("tranche.paid").name == "disbursement.events"
    assert topic_for_type("eligibility.assessed").name == "eligibility.events"
    assert topic_for_type("application.approved").name == "approvals.events"
    assert get_topic("zones.commands").is_command_topic
    assert not get_topic("zones.events").is_command_topic


def test_all_topic_names_include_every_dlq_twin() -> None:
    names = all_topic_names()

    assert len(names) == len(set(names)) == 2 * len(TOPICS)
    for topic in TOPICS:
        assert topic.name in names
        assert f"{topic.name}.dlq" in names
        assert topic.dlq == f"{topic.name}.dlq"


def test_topics_are_keyed_by_application_and_partitioned() -> None:
    for topic in TOPICS:
        assert topic.key == "application_id"
        assert topic.partitions == DEFAULT_PARTITIONS == 6
        assert topic.description


def test_partitions_are_configurable_per_topic() -> None:
    topic = replace(get_topic("review.events"), partitions=12)
    assert topic.partitions == 12
    assert topic.dlq == "review.events.dlq"
    with pytest.raises(ValueError, match="partition"):
        replace(topic, partitions=0)


def test_topics_are_immutable() -> None:
    with pytest.raises(FrozenInstanceError):
        get_topic("review.events").partitions = 1  # type: ignore[misc]


def test_a_dlq_cannot_be_declared_as_a_topic() -> None:
    with pytest.raises(ValueError, match="dead-letter"):
        Topic(name="x.events.dlq", types=(), description="no")


def test_unknown_lookups_fail_clearly() -> None:
    with pytest.raises(KeyError, match="unknown topic"):
        get_topic("nowhere.events")
    with pytest.raises(UnknownMessageType):
        topic_for_type("zone.teleport")
