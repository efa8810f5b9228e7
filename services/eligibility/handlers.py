"""Message handlers of the eligibility service: assess an application, record, emit.

The handler is thin: it picks the rule set in force at the application's *first* submission,
lets the pure domain evaluate it, records the decision and stages ``eligibility.assessed`` in
the outbox, all in the consumer's unit of work (one commit, made by the kit).

It is a batch handler (see the kit's README): ``preload`` reads, with one statement per batch,
the recorded submission times of the applications the batch amends; each decision row is staged
with ``insert_once`` (written with the batch's other decisions in one statement) and its event
is published only if that revision had no decision yet.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from contracts import catalog
from contracts.envelope import Actor, deterministic_event_id, utcnow
from contracts.topics import get_topic
from contracts.v1.applications import ApplicationAmended, ApplicationSubmitted
from services.eligibility.domain import Decision, NoRuleSetInForce, RuleCatalog
from services.eligibility.models import EligibilityDecision
from services.kit.consumer import Incoming
from services.kit.errors import BusinessRefusal
from services.kit.logging import get_logger
from services.kit.uow import UnitOfWork

log = get_logger(__name__)

#: The message types this service assesses.
CONSUMED_TYPES = ("application.submitted", "application.amended")
#: Where decisions are published.
ELIGIBILITY_TOPIC = get_topic("eligibility.events").name
#: The producer name and system actor on every decision.
PRODUCER = "eligibility"
SYSTEM_ACTOR = Actor.system(PRODUCER)
#: The decisions table, and the key that records each revision once.
DECISIONS: sa.Table = EligibilityDecision.__table__  # type: ignore[attr-defined]
DECISION_KEY = ("application_id", "application_revision")
#: ``uow.memo`` key: application id -> (revision, submitted_at) of its earliest decision.
_FIRST_DECISION = "eligibility.first_decision"


def decision_event_id(application_id: str, revision: int) -> uuid.UUID:
    """The id of the ``eligibility.assessed`` event of one application revision.

    Derived, not random: should the same revision ever be assessed twice (a lost decision row
    restored from a backup, a replay), the event repeats its id and consumers drop the copy.
    """
    return deterministic_event_id("eligibility.assessed", application_id, str(revision))


class Assessor:
    """Handles ``application.submitted`` and ``application.amended``.

    ``catalog`` is loaded once by the composition root; nothing here reads files.
    """

    def __init__(self, catalog: RuleCatalog, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.catalog = catalog
        self._clock = clock

    async def preload(self, batch: Sequence[Incoming], uow: UnitOfWork) -> None:
        """Read the earliest decision of every application the batch amends: one statement."""
        amended = {
            incoming.envelope.payload.application_id
            for incoming in batch
            if isinstance(incoming.envelope.payload, ApplicationAmended)
        }
        first: dict[str, tuple[int, datetime]] = {}
        if amended:
            for row in await uow.load_many(DECISIONS, "application_id", amended):
                _remember(first, row.application_id, row.application_revision, row.submitted_at)
        uow.memo[_FIRST_DECISION] = first

    async def __call__(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Assess the application revision in ``incoming`` (see the module doc)."""
        envelope = incoming.envelope
        payload = envelope.payload
        if not isinstance(payload, ApplicationSubmitted | ApplicationAmended):
            # The consumer filters types; anything else reaching here is a wiring error.
            raise BusinessRefusal(f"eligibility does not assess {envelope.type!r} messages")

        first: dict[str, tuple[int, datetime]] = uow.memo[_FIRST_DECISION]
        submitted_at = self._submission_time(first, payload)
        try:
            rule_set = self.catalog.in_force(submitted_at)
        except NoRuleSetInForce as exc:
            # Final: retrying cannot help; the DLQ keeps it for replay once rules exist.
            raise BusinessRefusal(f"{payload.application_id}: {exc}") from exc
        decision = rule_set.evaluate(payload.content, submitted_at)

        assessed_at = self._clock()
        event_id = decision_event_id(payload.application_id, payload.revision)
        assessed = catalog.make_envelope(
            "eligibility.assessed",
            decision.to_event(
                application_id=payload.application_id,
                application_revision=payload.revision,
                assessed_at=assessed_at,
            ),
            subject=payload.application_id,
            actor=SYSTEM_ACTOR,
            producer=PRODUCER,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
            event_id=event_id,
            occurred_at=assessed_at,
        )
        # Recorded once per revision: if this revision already has a decision (another event
        # id for the same content), nothing is written and nothing is emitted.
        uow.insert_once(
            DECISIONS,
            _decision_row(
                decision,
                payload,
                submitted_at=submitted_at,
                assessed_at=assessed_at,
                source_event_id=envelope.event_id,
                event_id=event_id,
                correlation_id=envelope.correlation_id,
            ),
            key=DECISION_KEY,
            outbox=[(assessed, ELIGIBILITY_TOPIC)],
        )
        # What later messages of this batch must see (the row is written at commit).
        _remember(first, payload.application_id, payload.revision, submitted_at)
        # Per-message lines are debug material at this rate; the decision itself is the record.
        log.debug(
            "application assessed",
            application_id=payload.application_id,
            revision=payload.revision,
            outcome=decision.outcome.value,
            rule_set=rule_set.label,
        )

    @staticmethod
    def _submission_time(
        first: dict[str, tuple[int, datetime]], payload: ApplicationSubmitted | ApplicationAmended
    ) -> datetime:
        """When the application was first submitted: this picks the rule set.

        A submission carries it. An amendment carries it too, but the time recorded with this
        application's earliest decision wins: the rule set that decided before decides again.
        """
        if isinstance(payload, ApplicationSubmitted):
            return payload.submitted_at
        known = first.get(payload.application_id)
        if known is None:
            return payload.submitted_at
        recorded = known[1]
        if recorded != payload.submitted_at:
            log.warning(
                "amendment names another submission time; the recorded one decides",
                application_id=payload.application_id,
                recorded=recorded.isoformat(),
                amendment=payload.submitted_at.isoformat(),
            )
        return recorded


def _remember(
    first: dict[str, tuple[int, datetime]], application_id: str, revision: int, at: datetime
) -> None:
    """Keep ``(revision, at)`` as the application's earliest decision if it is earlier."""
    known = first.get(application_id)
    if known is None or revision < known[0]:
        first[application_id] = (revision, at)


def _decision_row(
    decision: Decision,
    payload: ApplicationSubmitted | ApplicationAmended,
    *,
    submitted_at: datetime,
    assessed_at: datetime,
    source_event_id: uuid.UUID,
    event_id: uuid.UUID,
    correlation_id: uuid.UUID,
) -> dict[str, Any]:
    return {
        "application_id": payload.application_id,
        "application_revision": payload.revision,
        "firm_id": payload.firm_id,
        "outcome": decision.outcome.value,
        "rule_set_id": decision.rule_set_id,
        "rule_set_version": decision.rule_set_version,
        "rule_set_sha256": decision.rule_set_sha256,
        "rule_set_effective_from": decision.rule_set_effective_from,
        "rule_results": [result.as_dict() for result in decision.results],
        "missing_fields": list(decision.missing_fields),
        "submitted_at": submitted_at,
        "assessed_at": assessed_at,
        "source_event_id": source_event_id,
        "event_id": event_id,
        "correlation_id": correlation_id,
    }
