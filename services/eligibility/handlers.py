"""Message handlers of the eligibility service: assess an application, record, emit.

The handler is thin: it picks the rule set in force at the application's *first* submission,
lets the pure domain evaluate it, records the decision and stages ``eligibility.assessed`` in
the outbox, all in the consumer's unit of work (one commit, made by the kit).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from contracts import catalog
from contracts.envelope import Actor, deterministic_event_id, utcnow
from contracts.topics import get_topic
from contracts.v1.applications import ApplicationAmended, ApplicationSubmitted
from services.eligibility.domain import Decision, NoRuleSetInForce, RuleCatalog
from services.eligibility.models import EligibilityDecision
from services.kit.consumer import Incoming
from services.kit.db import insert_ignore
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

    async def __call__(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Assess the application revision in ``incoming`` (see the module doc)."""
        envelope = incoming.envelope
        payload = envelope.payload
        if not isinstance(payload, ApplicationSubmitted | ApplicationAmended):
            # The consumer filters types; anything else reaching here is a wiring error.
            raise BusinessRefusal(f"eligibility does not assess {envelope.type!r} messages")

        submitted_at = await self._submission_time(uow, payload)
        try:
            rule_set = self.catalog.in_force(submitted_at)
        except NoRuleSetInForce as exc:
            # Final: retrying cannot help; the DLQ keeps it for replay once rules exist.
            raise BusinessRefusal(f"{payload.application_id}: {exc}") from exc
        decision = rule_set.evaluate(payload.content, submitted_at)

        assessed_at = self._clock()
        event_id = decision_event_id(payload.application_id, payload.revision)
        recorded = await _insert_once(
            uow,
            _decision_row(
                decision,
                payload,
                submitted_at=submitted_at,
                assessed_at=assessed_at,
                source_event_id=envelope.event_id,
                event_id=event_id,
                correlation_id=envelope.correlation_id,
            ),
        )
        if not recorded:
            log.info(
                "revision already assessed, nothing emitted",
                application_id=payload.application_id,
                revision=payload.revision,
            )
            return
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
        uow.add_outbox(assessed, ELIGIBILITY_TOPIC)
        # Per-message lines are debug material at this rate; the decision itself is the record.
        log.debug(
            "application assessed",
            application_id=payload.application_id,
            revision=payload.revision,
            outcome=decision.outcome.value,
            rule_set=rule_set.label,
        )

    async def _submission_time(
        self, uow: UnitOfWork, payload: ApplicationSubmitted | ApplicationAmended
    ) -> datetime:
        """When the application was first submitted: this picks the rule set.

        A submission carries it. An amendment carries it too, but the time recorded with this
        application's earliest decision wins: the rule set that decided before decides again.
        """
        if isinstance(payload, ApplicationSubmitted):
            return payload.submitted_at
        result = await uow.session.exec(
            select(EligibilityDecision.submitted_at)
            .where(EligibilityDecision.application_id == payload.application_id)
            .order_by(col(EligibilityDecision.application_revision))
            .limit(1)
        )
        recorded = result.first()
        if recorded is None:
            return payload.submitted_at
        if recorded != payload.submitted_at:
            log.warning(
                "amendment names another submission time; the recorded one decides",
                application_id=payload.application_id,
                recorded=recorded.isoformat(),
                amendment=payload.submitted_at.isoformat(),
            )
        return recorded


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


async def _insert_once(uow: UnitOfWork, values: dict[str, Any]) -> bool:
    """Insert the decision unless its (application, revision) exists; ``False`` if it did.

    Insert-or-ignore rather than select-then-insert, as the kit's processed marks do: two
    deliveries racing through a rebalance serialise on the key, and the second inserts nothing.
    """
    session = uow.session
    table = EligibilityDecision.__table__  # type: ignore[attr-defined]
    result = await session.exec(insert_ignore(session.get_bind().dialect.name, table, values))
    return bool(result.rowcount)
