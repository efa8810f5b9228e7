"""The assessing handler inside the kit's idempotent consumer, on the embedded SQLite database.

No broker here: records are handed to the consumer directly, and dead letters are collected.
Delivery over the real broker and PostgreSQL is in ``test_integration.py``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import catalog
from contracts.envelope import Envelope
from services.eligibility.handlers import CONSUMED_TYPES, Assessor, decision_event_id
from services.eligibility.main import MIGRATIONS
from services.eligibility.rulefiles import load_catalog
from services.kit.consumer import IdempotentConsumer, Outcome
from services.kit.db import create_engine, create_session_factory
from services.kit.dlq import ConsumedRecord, parse_dead_letter
from services.kit.messaging import Record
from services.kit.migrations import upgrade_to_head
from services.kit.retry import RetryPolicy
from services.kit.uow import UnitOfWorkFactory
from tests.eligibility.builders import amended, money, new_application_id, submitted

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
IN_2026 = datetime(2026, 12, 31, 18, 0, tzinfo=UTC)
#: Eligible under the 2026 rules, below the 2027.1 minimum investment.
MID_INVESTMENT = {"proposal.investment_commitment": money("1200000.00")}


@dataclass
class Harness:
    engine: AsyncEngine
    consumer: IdempotentConsumer
    uow: UnitOfWorkFactory
    dead: list[Record] = field(default_factory=list)
    offset: int = 0

    async def deliver(self, value: bytes | Envelope[Any], key: str = "k") -> Outcome:
        raw = catalog.encode(value) if isinstance(value, Envelope) else value
        self.offset += 1
        record = ConsumedRecord(
            topic="applications.events",
            partition=0,
            offset=self.offset,
            key=key.encode(),
            value=raw,
        )
        return await self.consumer.process(record)

    async def deliver_batch(self, *values: Envelope[Any]) -> list[Outcome]:
        """``values`` as one polled batch of one partition."""
        batch = []
        for value in values:
            self.offset += 1
            batch.append(
                ConsumedRecord(
                    topic="applications.events",
                    partition=0,
                    offset=self.offset,
                    key=value.subject.encode(),
                    value=catalog.encode(value),
                )
            )
        return await self.consumer.process_batch(batch)

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(sa.text(sql), params)).all())

    async def outbox_envelopes(self, subject: str) -> list[Envelope[Any]]:
        rows = await self.rows("SELECT value FROM outbox WHERE key = :key ORDER BY id", key=subject)
        return [catalog.decode(bytes(row[0])) for row in rows]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'eligibility.db'}")
    await upgrade_to_head(engine, MIGRATIONS)
    dead: list[Record] = []

    async def collect(records: Sequence[Record]) -> None:
        dead.extend(records)

    uow = UnitOfWorkFactory(create_session_factory(engine))
    consumer = IdempotentConsumer(
        "eligibility",
        Assessor(load_catalog(), clock=lambda: NOW),
        uow_factory=uow,
        dead_letters=collect,
        types=CONSUMED_TYPES,
        retry=RetryPolicy(initial_delay=0.01, max_delay=0.02, jitter=0.0),
    )
    try:
        yield Harness(engine, consumer, uow, dead)
    finally:
        await engine.dispose()


async def test_submission_is_assessed_recorded_and_emitted_in_one_unit(harness: Harness) -> None:
    app_id = new_application_id()
    incoming = submitted(app_id, submitted_at=IN_2026)
    assert await harness.deliver(incoming, app_id) is Outcome.PROCESSED

    [row] = await harness.rows(
        "SELECT application_revision, firm_id, outcome, rule_set_version, rule_set_sha256, "
        "rule_results, missing_fields, source_event_id, event_id FROM eligibility_decisions "
        "WHERE application_id = :id",
        id=app_id,
    )
    rule_set = load_catalog().in_force(IN_2026)
    assert row[:5] == (1, "ACME", "eligible", "2026.2", rule_set.sha256)
    results = json.loads(row[5]) if isinstance(row[5], str) else row[5]
    assert [r["rule_id"] for r in results] == [rule.id for rule in rule_set.rules]
    assert all(r["status"] == "passed" and r["error"] is None for r in results)

    [out] = await harness.outbox_envelopes(app_id)
    assert out.type == "eligibility.assessed"
    assert out.event_id == decision_event_id(app_id, 1)
    assert out.causation_id == incoming.event_id
    assert out.correlation_id == incoming.correlation_id
    assert (out.actor.kind, out.actor.id) == ("system", "system:eligibility")
    assert out.producer == "eligibility"
    assert out.occurred_at == NOW
    assert out.payload.rule_set_version == "2026.2"
    assert out.payload.rule_set_sha256 == rule_set.sha256
    assert out.payload.application_revision == 1
    assert out.payload.assessed_at == NOW


async def test_ineligible_and_needs_information_reach_the_event(harness: Harness) -> None:
    ineligible, missing = new_application_id(), new_application_id()
    await harness.deliver(submitted(ineligible, submitted_at=NOW, changes=MID_INVESTMENT))
    await harness.deliver(
        submitted(
            missing, submitted_at=NOW, changes={"commitments.responsible_ai_attestation": None}
        )
    )
    [rejected] = await harness.outbox_envelopes(ineligible)
    assert rejected.payload.outcome == "ineligible"
    assert rejected.payload.rule_set_version == "2027.1"
    assert [r.rule_id for r in rejected.payload.rule_results if not r.passed] == [
        "minimum_investment"
    ]
    [asked] = await harness.outbox_envelopes(missing)
    assert asked.payload.outcome == "needs_information"
    assert asked.payload.missing_fields == ["commitments.responsible_ai_attestation"]


async def test_a_redelivered_event_changes_nothing(harness: Harness) -> None:
    app_id = new_application_id()
    incoming = submitted(app_id, submitted_at=IN_2026)
    assert await harness.deliver(incoming) is Outcome.PROCESSED
    assert await harness.deliver(incoming) is Outcome.DUPLICATE
    assert len(await harness.outbox_envelopes(app_id)) == 1
    async with harness.uow() as uow:
        assert await uow.is_processed("eligibility", incoming.event_id)


async def test_the_same_revision_under_a_new_event_id_is_recorded_once(harness: Harness) -> None:
    """A re-sent fact with a fresh event id gets past the event-id dedupe; the decision key
    (application, revision) still lets it change nothing."""
    app_id = new_application_id()
    correlation = uuid.uuid4()
    first = submitted(app_id, submitted_at=IN_2026, correlation_id=correlation)
    again = submitted(app_id, submitted_at=IN_2026, correlation_id=correlation)
    assert first.event_id != again.event_id
    assert await harness.deliver(first) is Outcome.PROCESSED
    assert await harness.deliver(again) is Outcome.PROCESSED
    assert len(await harness.outbox_envelopes(app_id)) == 1
    [[count]] = await harness.rows(
        "SELECT count(*) FROM eligibility_decisions WHERE application_id = :id", id=app_id
    )
    assert count == 1


def late_amendment(app_id: str) -> Envelope[Any]:
    """Revision 2, claiming a 2027 submission time; eligible only under the 2026.1 rules."""
    return amended(
        app_id,
        revision=2,
        submitted_at=datetime(2027, 1, 5, tzinfo=UTC),
        amended_at=datetime(2027, 2, 1, tzinfo=UTC),
        changes=MID_INVESTMENT,
    )


async def test_an_amendment_is_judged_by_the_rules_of_the_first_submission(
    harness: Harness,
) -> None:
    app_id = new_application_id()
    await harness.deliver(
        submitted(app_id, submitted_at=IN_2026, changes={"commitments.training": None})
    )
    # The amendment claims a 2027 submission time; the recorded one (2026) decides.
    amendment = late_amendment(app_id)
    assert await harness.deliver(amendment) is Outcome.PROCESSED
    first, second = await harness.outbox_envelopes(app_id)
    assert first.payload.application_revision == 1
    assert second.payload.application_revision == 2
    assert second.payload.rule_set_version == "2026.2"
    assert second.payload.outcome == "eligible"  # ineligible under 2027.1
    assert second.causation_id == amendment.event_id
    assert second.event_id == decision_event_id(app_id, 2)
    [[submitted_at]] = await harness.rows(
        "SELECT submitted_at FROM eligibility_decisions WHERE application_id = :id "
        "AND application_revision = 2",
        id=app_id,
    )
    assert str(submitted_at).startswith("2026-12-31 18:00")


async def test_the_attestation_window_counts_from_the_first_submission(harness: Harness) -> None:
    # The example's attestations were signed on 2026-11-20: fresh for a submission in 2027-11,
    # stale for one in 2027-12. The amendment claims the later time; the recorded one decides.
    app_id = new_application_id()
    await harness.deliver(submitted(app_id, submitted_at=datetime(2027, 11, 19, tzinfo=UTC)))
    amendment = amended(
        app_id,
        revision=2,
        submitted_at=datetime(2027, 12, 1, tzinfo=UTC),
        amended_at=datetime(2027, 12, 1, tzinfo=UTC),
    )
    await harness.deliver(amendment)
    first, second = await harness.outbox_envelopes(app_id)
    assert first.payload.outcome == second.payload.outcome == "eligible"

    late = new_application_id()
    await harness.deliver(submitted(late, submitted_at=datetime(2027, 12, 1, tzinfo=UTC)))
    [stale] = await harness.outbox_envelopes(late)
    assert stale.payload.outcome == "needs_information"
    assert stale.payload.missing_fields == [
        "commitments.data_protection_attestation",
        "commitments.responsible_ai_attestation",
    ]


async def test_one_batch_records_each_revision_once_and_amendments_see_earlier_messages(
    harness: Harness,
) -> None:
    """Decision rows are written at the batch's commit; an amendment later in the same batch
    still takes the submission time of the submission before it, and a re-sent revision under
    a new event id still emits nothing."""
    app_id, other = new_application_id(), new_application_id()
    correlation = uuid.uuid4()
    first = submitted(app_id, submitted_at=IN_2026, correlation_id=correlation)
    again = submitted(app_id, submitted_at=IN_2026, correlation_id=correlation)
    amendment = late_amendment(app_id)
    outcomes = await harness.deliver_batch(
        first, again, submitted(other, submitted_at=NOW), amendment
    )

    assert outcomes == [Outcome.PROCESSED] * 4
    one, two = await harness.outbox_envelopes(app_id)
    assert (one.payload.application_revision, one.causation_id) == (1, first.event_id)
    assert (two.payload.application_revision, two.payload.rule_set_version) == (2, "2026.2")
    assert two.payload.outcome == "eligible"  # ineligible under 2027.1
    [decided] = await harness.outbox_envelopes(other)
    assert decided.payload.rule_set_version == "2027.1"
    rows = await harness.rows(
        "SELECT application_revision, submitted_at FROM eligibility_decisions "
        "WHERE application_id = :id ORDER BY application_revision",
        id=app_id,
    )
    assert [(revision, str(at)[:16]) for revision, at in rows] == [
        (1, "2026-12-31 18:00"),
        (2, "2026-12-31 18:00"),
    ]


async def test_an_amendment_without_a_recorded_submission_uses_its_own_time(
    harness: Harness,
) -> None:
    app_id = new_application_id()
    amendment = amended(
        app_id,
        revision=3,
        submitted_at=IN_2026,
        amended_at=datetime(2027, 2, 1, tzinfo=UTC),
        changes=MID_INVESTMENT,
    )
    await harness.deliver(amendment)
    [out] = await harness.outbox_envelopes(app_id)
    assert (out.payload.rule_set_version, out.payload.outcome) == ("2026.2", "eligible")


async def test_no_rule_set_in_force_dead_letters_as_a_business_refusal(harness: Harness) -> None:
    app_id = new_application_id()
    early = submitted(app_id, submitted_at=datetime(2025, 6, 1, tzinfo=UTC))
    assert await harness.deliver(early, app_id) is Outcome.DEAD_LETTERED
    [dead] = harness.dead
    info = parse_dead_letter(dead.headers)
    assert info.reason == "business_refusal"
    assert "no eligibility rule set is in force on 2025-06-01" in info.error
    assert dead.topic == "applications.events.dlq"
    assert await harness.outbox_envelopes(app_id) == []
    # Not marked processed: once rules exist, replaying the dead letter assesses it.
    async with harness.uow() as uow:
        assert not await uow.is_processed("eligibility", early.event_id)


async def test_malformed_and_unknown_messages_are_dead_lettered(harness: Harness) -> None:
    unknown = json.loads(catalog.encode(submitted(new_application_id(), submitted_at=NOW)))
    unknown["type"] = "application.teleported"
    outcomes = [
        await harness.deliver(b"\x00 not json"),
        await harness.deliver(json.dumps(unknown).encode()),
        await harness.deliver(b'{"type": "application.submitted", "payload": {}}'),
    ]
    assert outcomes == [Outcome.DEAD_LETTERED] * 3
    reasons = [parse_dead_letter(r.headers).reason for r in harness.dead]
    assert reasons == ["undecodable", "unknown_message_type", "schema_invalid"]
