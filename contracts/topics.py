"""The topic registry: which topics exist, how they are keyed and which message types flow on each.

Facts go to ``<domain>.events`` and requests to ``<domain>.commands``. Every record is keyed by the
application id (the envelope ``subject``), so one application's history stays ordered within its
partition. Every topic has a ``<name>.dlq`` twin for messages that cannot be processed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from contracts.errors import UnknownMessageType

#: Partitions per topic unless a topic says otherwise. Six lets a consumer group scale to six
#: replicas; raising it later re-hashes keys, so pick the count before production traffic.
DEFAULT_PARTITIONS: Final = 6

#: Suffix of every dead-letter topic.
DLQ_SUFFIX: Final = ".dlq"


@dataclass(frozen=True, slots=True)
class Topic:
    """One Kafka topic and the contract of what flows on it."""

    #: Topic name, ``<domain>.events`` or ``<domain>.commands``.
    name: str
    #: Message types that flow on the topic; each type flows on exactly one topic.
    types: tuple[str, ...]
    #: What the topic is for.
    description: str
    #: Partition count used when the topic is created.
    partitions: int = DEFAULT_PARTITIONS
    #: What the record key holds (UTF-8 bytes of the envelope ``subject``).
    key: str = "application_id"

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"topic {self.name!r} needs at least one partition")
        if self.name.endswith(DLQ_SUFFIX):
            raise ValueError(f"{self.name!r}: dead-letter twins are derived, not declared")

    @property
    def dlq(self) -> str:
        """The dead-letter twin, ``<name>.dlq``."""
        return f"{self.name}{DLQ_SUFFIX}"

    @property
    def is_command_topic(self) -> bool:
        """True for a ``*.commands`` topic (requests rather than facts)."""
        return self.name.endswith(".commands")


TOPICS: Final[tuple[Topic, ...]] = (
    Topic(
        name="applications.events",
        description=(
            "What firms do with their applications: submit, amend, withdraw, answer the offer "
            "and report milestones; an administrator's cancellation, or revocation of a "
            "fast-track item."
        ),
        types=(
            "application.submitted",
            "application.amended",
            "application.withdrawn",
            "application.offer_accepted",
            "application.offer_declined",
            "application.milestone_reported",
            "application.cancelled",
            "application.fast_track_revoked",
        ),
    ),
    Topic(
        name="eligibility.events",
        description="Eligibility decisions, with the rule set that made them.",
        types=("eligibility.assessed",),
    ),
    Topic(
        name="review.events",
        description="Review tasks, reviewer decisions, information requests and SLA events.",
        types=(
            "review.task_assigned",
            "review.decision_recorded",
            "review.information_requested",
            "review.reminder_due",
            "review.escalated",
            "review.task_cancelled",
        ),
    ),
    Topic(
        name="approvals.events",
        description=(
            "The approval workflow's decisions: approval or rejection, the offer and its lapse, "
            "fast-track grants, milestone verifications, the award's completion and every "
            "compensation."
        ),
        types=(
            "application.approved",
            "application.rejected",
            "application.offer_made",
            "application.offer_lapsed",
            "application.fast_track_granted",
            "application.milestone_verified",
            "application.award_completed",
            "application.compensated",
        ),
    ),
    Topic(
        name="zones.commands",
        description=(
            "Requests to the zones service: hold, confirm, allocate or release "
            "technology-zone space."
        ),
        types=("zone.allocate", "zone.release", "zone.hold", "zone.confirm"),
    ),
    Topic(
        name="zones.events",
        description="Zone holds, allocations, waitlist entries, expiries, releases and refusals.",
        types=(
            "zone.allocated",
            "zone.waitlisted",
            "zone.released",
            "zone.refused",
            "zone.held",
            "zone.hold_expired",
        ),
    ),
    Topic(
        name="disbursement.commands",
        description=("Requests to disbursement: open, charge or cancel awards, release tranches."),
        types=("award.open", "tranche.release", "award.cancel", "award.charge"),
    ),
    Topic(
        name="disbursement.events",
        description="Awards, tranche payouts, budget shortfalls and every ledger movement.",
        types=(
            "award.opened",
            "tranche.released",
            "tranche.paid",
            "tranche.failed",
            "award.cancelled",
            "budget.exhausted",
            "award.charged",
            "ledger.transferred",
        ),
    ),
    Topic(
        name="operations.events",
        description=(
            "What operators did to the message flow itself: dead letters redriven, each naming"
            " the operator."
        ),
        types=("dead_letter.redriven",),
    ),
)

_BY_NAME: Final = {topic.name: topic for topic in TOPICS}
_BY_TYPE: Final = {message_type: topic for topic in TOPICS for message_type in topic.types}


def get_topic(name: str) -> Topic:
    """The topic called ``name`` (a primary topic, not a ``.dlq`` twin).

    Raises:
        KeyError: no such topic.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; known: {sorted(_BY_NAME)}") from None


def topic_for_type(message_type: str) -> Topic:
    """The topic a message type is published on.

    Raises:
        UnknownMessageType: the type flows on no topic.
    """
    try:
        return _BY_TYPE[message_type]
    except KeyError:
        raise UnknownMessageType(
            f"message type {message_type!r} flows on no topic", message_type=message_type
        ) from None


def all_topic_names() -> list[str]:
    """Every topic to create: each primary topic followed by its ``.dlq`` twin."""
    return [name for topic in TOPICS for name in (topic.name, topic.dlq)]
