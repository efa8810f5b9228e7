"""Disbursement commands applied a consumer batch at a time, on PostgreSQL and SQLite.

One batch mixes new commands, a redelivered one, a second release of the same tranche and a
refusal: the refusal goes to the DLQ with its reason, everything else commits in the batch's
transaction, once, and the books balance; redelivering the whole batch changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from contracts import catalog
from contracts.v1.disbursement import CancelAward, ReleaseTranche
from services.disbursement.domain import AccountKind, award_account, budget_account
from services.disbursement.handlers import HANDLED, DisbursementCommands
from services.kit.consumer import IdempotentConsumer, Outcome
from services.kit.dlq import ConsumedRecord, parse_dead_letter
from services.kit.messaging import Record
from services.kit.retry import RetryPolicy
from tests.disbursement.helpers import Db, award_command, disbursement_db, fund, workflow_command
from tests.kit.helpers import fresh_database

TOPIC = "disbursement.commands"


# The PostgreSQL case is marked by hand: it reaches pg_url through getfixturevalue, which the
# tier marking (tests.tiers, from the fixtures a test declares) cannot see.
@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=[pytest.mark.integration, pytest.mark.postgres]),
    ]
)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Db]:
    if request.param == "sqlite":
        async with disbursement_db(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}") as db:
            yield db
        return
    pg_url: str = request.getfixturevalue("pg_url")
    async with fresh_database(pg_url, "disb_batch") as url, disbursement_db(url) as db:
        yield db


def _record(offset: int, message_type: str, payload: Any, event_id: uuid.UUID | None = None) -> Any:
    envelope = workflow_command(message_type, payload, event_id)
    return ConsumedRecord(
        topic=TOPIC,
        partition=0,
        offset=offset,
        key=envelope.subject.encode(),
        value=catalog.encode(envelope),
        headers=envelope.headers(),
    ), envelope.event_id


def _release(award_id: str, sequence: int = 1) -> ReleaseTranche:
    return ReleaseTranche(
        award_id=award_id,
        application_id=f"app-{award_id}",
        sequence=sequence,
        approved_by="rev.nguyen@gaip.example",
    )


class _Dlq:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def __call__(self, records: Sequence[Record]) -> None:
        self.records.extend(records)


async def test_a_batch_with_duplicates_and_a_refusal_dead_letters_the_refusal_only(db: Db) -> None:
    await fund(db, "600000.00")
    dlq = _Dlq()
    consumer = IdempotentConsumer(
        "disbursement",
        DisbursementCommands(),
        uow_factory=db.uow,
        dead_letters=dlq,
        types=HANDLED,
        retry=RetryPolicy(initial_delay=0.01, max_delay=0.05, jitter=0.0),
    )
    open_a, open_a_id = _record(0, "award.open", award_command("a", "250000.00"))
    again_a, _ = _record(1, "award.open", award_command("a", "250000.00"), open_a_id)
    release_a, _ = _record(2, "tranche.release", _release("a"))
    release_a_again, _ = _record(3, "tranche.release", _release("a"))  # another id, same tranche
    refused, refused_id = _record(4, "tranche.release", _release("nowhere"))
    open_b, _ = _record(5, "award.open", award_command("b", "300000.00"))
    cancel_b, _ = _record(
        6,
        "award.cancel",
        CancelAward(
            award_id="b",
            application_id="app-b",
            reason_code="offer_declined",
            reason="The firm declined the offer.",
        ),
    )
    release_b, _ = _record(7, "tranche.release", _release("b"))  # cancelled: refused too
    open_c, _ = _record(8, "award.open", award_command("c", "400000.00"))  # 350k left: waits
    records = [
        open_a,
        again_a,
        release_a,
        release_a_again,
        refused,
        open_b,
        cancel_b,
        release_b,
        open_c,
    ]

    outcomes = await consumer.process_batch(records)

    assert outcomes == [
        Outcome.PROCESSED,
        Outcome.DUPLICATE,
        Outcome.PROCESSED,
        Outcome.PROCESSED,
        Outcome.DEAD_LETTERED,
        Outcome.PROCESSED,
        Outcome.PROCESSED,
        Outcome.DEAD_LETTERED,
        Outcome.PROCESSED,
    ]
    assert len(dlq.records) == 2
    first, second = (parse_dead_letter(r.headers) for r in dlq.records)
    assert (first.reason, first.source_offset) == ("business_refusal", 4)
    assert "award nowhere does not exist" in first.error
    assert (second.reason, second.source_offset) == ("business_refusal", 7)
    assert "award b is cancelled" in second.error
    assert await db.rows("SELECT id, state FROM awards ORDER BY id") == [
        ("a", "open"),
        ("b", "cancelled"),
    ]
    assert await db.rows("SELECT award_id, sequence, state FROM payments") == [("a", 1, "pending")]
    assert await db.rows("SELECT award_id FROM budget_waitlist") == [("c",)]
    available = budget_account("grant-2027", AccountKind.AVAILABLE)
    assert await db.balance(available) == Decimal("350000.00")
    assert await db.balance(award_account("a", AccountKind.RESERVED)) == Decimal("250000.00")
    assert await db.event_types() == [
        "award.opened",
        "tranche.released",
        "award.opened",
        "award.cancelled",
        "budget.exhausted",
    ]
    refused_marks = await db.rows(
        "SELECT count(*) FROM processed_messages WHERE event_id = :e", e=str(refused_id)
    )
    assert refused_marks == [(0,)], "a dead letter is not marked processed"

    # The whole batch delivered again (a rebalance): nothing changes, the refusals repeat.
    again = await consumer.process_batch(records)
    assert again.count(Outcome.DUPLICATE) == 7
    assert again.count(Outcome.DEAD_LETTERED) == 2
    assert len(await db.rows("SELECT id FROM payments")) == 1
    assert len(await db.event_types()) == 5
    assert await db.balance(available) == Decimal("350000.00")
