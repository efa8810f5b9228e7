"""Why the database outage test counts only its own applications.

The eligibility service of an outage test joins a consumer group of its own, which starts at
the beginning of the session's ``applications.events``: it also decides what other tests
published there. An application another test amended has two revisions, so two decisions (one
per revision, by design), and a count over the whole decisions table saw "applications decided
twice" that the outage test never sent. This test leaves such an application on the topic
first, then checks that the whole-table count sees it and :func:`decisions_of` does not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts import catalog
from contracts.topics import TOPICS, get_topic
from services.eligibility.main import create_app
from services.eligibility.settings import Settings
from services.kit.db import create_engine
from services.kit.messaging import create_producer, ensure_topics
from tests.bench.eligibility import make_submissions
from tests.eligibility.builders import amended, new_application_id, submitted
from tests.kit.helpers import fresh_database, scalar
from tests.outages.helpers import decisions_of, is_ok, wait_for
from tests.support import free_port, serving

pytestmark = pytest.mark.integration

IN_2026 = datetime(2026, 12, 31, 18, 0, tzinfo=UTC)
#: The whole-table count the outage test used to make.
WHOLE_TABLE_DECIDED_TWICE = (
    "SELECT count(*) FROM (SELECT application_id FROM eligibility_decisions"
    " GROUP BY application_id HAVING count(*) > 1) AS d"
)


@pytest.fixture
async def database(pg_url: str) -> AsyncIterator[str]:
    async with fresh_database(pg_url, "counts") as url:
        yield url


async def test_a_new_group_decides_other_tests_amendments_and_only_own_ones_count(
    kafka_bootstrap: str,
    database: str,
    tmp_path: Path,
    unique_name: Callable[[str], str],
) -> None:
    await ensure_topics(
        kafka_bootstrap,
        [(name, topic.partitions) for topic in TOPICS for name in (topic.name, topic.dlq)],
    )
    topic = get_topic("applications.events").name
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    direct = create_engine(database)
    try:
        # What another test leaves on the topic: an application and its amendment.
        other = new_application_id()
        for envelope in (
            submitted(other, submitted_at=IN_2026),
            amended(
                other,
                revision=2,
                submitted_at=IN_2026,
                amended_at=datetime(2027, 1, 20, tzinfo=UTC),
            ),
        ):
            await producer.send_and_wait(topic, catalog.encode(envelope), key=other.encode())

        settings = Settings(
            kafka_bootstrap=kafka_bootstrap,
            database_url=database,
            port=free_port(),
            var_dir=tmp_path,
            consumer_group_prefix=f"{unique_name('counts')}-",
        )
        records, subjects = make_submissions(3)
        async with serving(create_app(settings), settings.port) as client:
            await wait_for(lambda: is_ok(client), timeout=60)
            for record in records:
                await producer.send_and_wait(
                    record.topic, record.value, key=record.key, headers=list(record.headers)
                )

            async def decided() -> bool:
                own, _ = await decisions_of(direct, subjects)
                others, _ = await decisions_of(direct, [other])
                return own == len(subjects) and others == 2

            await wait_for(decided, timeout=120)

        assert await decisions_of(direct, [other]) == (2, 1)  # two revisions, two decisions
        assert await scalar(direct, WHOLE_TABLE_DECIDED_TWICE) >= 1  # the old count's finding
        assert await decisions_of(direct, subjects) == (len(subjects), 0)
    finally:
        await producer.stop()
        await direct.dispose()
