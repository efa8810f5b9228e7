"""A decision whose COMMIT reached PostgreSQL but whose answer was lost is not made twice.

The assessing consumer runs on a database reached through a TCP proxy that lets one ``COMMIT``
through and drops the server's answer (resetting that connection): the commit is durable, but
the consumer sees it fail, retries the batch, and the same message is delivered again, as Kafka
does when its offset was never committed. The processed marks committed with the decision, and
the decisions table's key (application, revision), leave one decision and one outbox row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import make_url

from contracts import catalog
from services.eligibility.handlers import CONSUMED_TYPES, Assessor
from services.eligibility.main import MIGRATIONS
from services.eligibility.rulefiles import load_catalog
from services.kit.consumer import IdempotentConsumer, Outcome
from services.kit.db import create_engine, create_session_factory
from services.kit.dlq import ConsumedRecord
from services.kit.messaging import Record
from services.kit.migrations import upgrade_to_head
from services.kit.retry import RetryPolicy
from services.kit.uow import UnitOfWorkFactory
from tests.eligibility.builders import amended, new_application_id, submitted
from tests.kit.helpers import fresh_database, scalar
from tests.tcp_proxy import TcpProxy, tcp_proxy

pytestmark = pytest.mark.integration

IN_2026 = datetime(2026, 12, 31, 18, 0, tzinfo=UTC)


@pytest.fixture
async def database(pg_url: str) -> AsyncIterator[str]:
    async with fresh_database(pg_url, "commitlost") as url:
        yield url


@pytest.fixture
async def proxy(database: str) -> AsyncIterator[TcpProxy]:
    target = make_url(database)
    async with tcp_proxy(target.host or "127.0.0.1", target.port or 5432) as line:
        yield line


def _record(envelope: object, offset: int) -> ConsumedRecord:
    return ConsumedRecord(
        topic="applications.events",
        partition=0,
        offset=offset,
        key=envelope.subject.encode(),  # type: ignore[attr-defined]
        value=catalog.encode(envelope),  # type: ignore[arg-type]
    )


async def test_a_commit_whose_answer_is_lost_decides_once(database: str, proxy: TcpProxy) -> None:
    direct = create_engine(database)
    await upgrade_to_head(direct, MIGRATIONS)
    proxied = make_url(database).set(host="127.0.0.1", port=proxy.port)
    engine = create_engine(proxied.render_as_string(hide_password=False))
    dead: list[Record] = []

    async def collect(records: Sequence[Record]) -> None:
        dead.extend(records)

    consumer = IdempotentConsumer(
        "eligibility",
        Assessor(load_catalog()),
        uow_factory=UnitOfWorkFactory(create_session_factory(engine)),
        dead_letters=collect,
        types=CONSUMED_TYPES,
        retry=RetryPolicy(initial_delay=0.01, max_delay=0.05, jitter=0.0),
    )
    app_id = new_application_id()
    first = _record(submitted(app_id, submitted_at=IN_2026), 1)
    try:
        proxy.lose_next_commit_answer()
        # The lost answer fails the commit; the retry finds the message already marked.
        assert await consumer.process(first) is Outcome.DUPLICATE
        assert proxy.commit_answers_lost == 1
        # Kafka's redelivery of the uncommitted offset changes nothing either.
        assert await consumer.process(first) is Outcome.DUPLICATE

        # An amendment is a new revision: its decision is a second row, made once as well.
        second = _record(
            amended(
                app_id,
                revision=2,
                submitted_at=IN_2026,
                amended_at=datetime(2027, 1, 20, tzinfo=UTC),
            ),
            2,
        )
        proxy.lose_next_commit_answer()
        assert await consumer.process(second) is Outcome.DUPLICATE
        assert proxy.commit_answers_lost == 2
        assert await consumer.process(second) is Outcome.DUPLICATE

        decisions = await scalar(
            direct,
            "SELECT count(*) FROM eligibility_decisions WHERE application_id = :id",
            id=app_id,
        )
        revisions = await scalar(
            direct,
            "SELECT count(DISTINCT application_revision) FROM eligibility_decisions"
            " WHERE application_id = :id",
            id=app_id,
        )
        outbox = await scalar(direct, "SELECT count(*) FROM outbox WHERE key = :id", id=app_id)
        assert (decisions, revisions, outbox) == (2, 2, 2)
        assert dead == []
    finally:
        await engine.dispose()
        await direct.dispose()
