"""PostgreSQL unreachable for a minute under load: the eligibility service waits, then catches up.

The service's database is reached through a TCP proxy the test cuts (the shared PostgreSQL is
never stopped). Submissions keep arriving on ``applications.events`` throughout. While the
line is cut, ``/health`` says the service is degraded and waits for the ``database``; once it
is back, every submission gets exactly one decision, nothing is dead-lettered, and the time
from the end of the outage to the last decision is printed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from contracts.topics import TOPICS, get_topic
from services.eligibility.main import create_app
from services.eligibility.settings import Settings
from services.kit.db import create_engine
from services.kit.messaging import create_producer, ensure_topics
from tests.bench.eligibility import make_submissions
from tests.kit.helpers import fresh_database, scalar
from tests.outages.helpers import (
    OUTAGE_SECONDS,
    RECOVERY_TIMEOUT,
    TEST_TIMEOUT,
    Load,
    decisions_of,
    event_ids_by_subject,
    is_ok,
    records_with_keys,
    report,
    wait_for,
    waits_for,
)
from tests.support import free_port, serving
from tests.tcp_proxy import TcpProxy, tcp_proxy

pytestmark = [pytest.mark.integration, pytest.mark.resilience, pytest.mark.timeout(TEST_TIMEOUT)]

#: Submissions per second, before, during and after the outage.
RATE = 25.0
#: Seconds of load before the line is cut, and after it is back.
BEFORE_SECONDS = 5.0
AFTER_SECONDS = 5.0


async def _health(client: httpx.AsyncClient) -> dict[str, object]:
    response = await client.get("/health")
    body: dict[str, object] = response.json()
    body["http_status"] = response.status_code
    return body


@pytest.fixture
async def database(pg_url: str) -> AsyncIterator[str]:
    async with fresh_database(pg_url, "outage") as url:
        yield url


@pytest.fixture
async def proxy(database: str) -> AsyncIterator[TcpProxy]:
    target = make_url(database)
    async with tcp_proxy(target.host or "127.0.0.1", target.port or 5432) as line:
        yield line


async def test_postgresql_unreachable_for_a_minute_under_load(
    kafka_bootstrap: str,
    database: str,
    proxy: TcpProxy,
    tmp_path: Path,
    unique_name: Callable[[str], str],
) -> None:
    await ensure_topics(
        kafka_bootstrap,
        [(name, topic.partitions) for topic in TOPICS for name in (topic.name, topic.dlq)],
    )
    proxied = (
        make_url(database)
        .set(host="127.0.0.1", port=proxy.port)
        .render_as_string(hide_password=False)
    )
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        database_url=proxied,
        port=free_port(),
        var_dir=tmp_path,
        consumer_group_prefix=f"{unique_name('outage-db')}-",
    )
    total = int(RATE * (BEFORE_SECONDS + OUTAGE_SECONDS + AFTER_SECONDS))
    records, subjects = make_submissions(total)
    direct = create_engine(database)  # the test's own view of the database, not through the line
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    load = Load(producer, records, RATE)
    try:
        async with serving(create_app(settings), settings.port) as client:
            await wait_for(lambda: is_ok(client), timeout=60)
            load.start()
            await wait_for(lambda: _decided_at_least(direct, subjects, 1), timeout=30)
            await wait_for(lambda: _sent_at_least(load, int(RATE * BEFORE_SECONDS)), timeout=30)

            await proxy.cut()
            cut_at = time.monotonic()
            # Degraded, and saying what it waits for, while the line is down.
            await wait_for(lambda: waits_for(client, "database"), timeout=OUTAGE_SECONDS / 2)
            waiting = await _health(client)
            # Counted once the service saw the cut: a commit already on the wire may land.
            decided_at_cut = await _decisions(direct, subjects)
            await wait_for(
                lambda: _elapsed(cut_at, OUTAGE_SECONDS), timeout=OUTAGE_SECONDS + 5, interval=1
            )
            decided_during = await _decisions(direct, subjects) - decided_at_cut
            await proxy.restore()
            restored_at = time.monotonic()
            at_restore = await _decisions(direct, subjects)
            backlog = load.sent - at_restore
            await wait_for(lambda: _decided_at_least(direct, subjects, at_restore + 1), timeout=60)
            first_s = time.monotonic() - restored_at

            await load.finished()
            await wait_for(
                lambda: _decided_at_least(direct, subjects, total), timeout=RECOVERY_TIMEOUT
            )
            recovered_s = time.monotonic() - restored_at
            await wait_for(lambda: _relayed(direct), timeout=60)
            relayed_s = time.monotonic() - restored_at
            await wait_for(lambda: is_ok(client), timeout=30)

        assert waiting["status"] == "degraded"
        assert waiting["http_status"] == 503
        assert "database" in waiting["waiting_for"]  # type: ignore[operator]
        assert decided_during == 0, "nothing can be decided without the database"

        # Every submission decided exactly once; nothing dead-lettered. Only this test's
        # applications count: the service also decides what other tests left on the topic.
        assert await decisions_of(direct, subjects) == (total, 0)
        keys = {subject.encode() for subject in subjects}
        events = get_topic("eligibility.events").name
        published = await records_with_keys(kafka_bootstrap, events, keys)
        by_subject = event_ids_by_subject([v for _k, v in published], "eligibility.assessed")
        assert set(by_subject) == set(subjects)
        assert all(len(ids) == 1 for ids in by_subject.values()), "one decision per submission"
        dlq = get_topic("applications.events").dlq
        assert await records_with_keys(kafka_bootstrap, dlq, keys) == []

        report(
            "postgresql",
            outage_s=OUTAGE_SECONDS,
            messages=total,
            backlog_at_restore=backlog,
            first_decision_s=round(first_s, 2),
            recovery_s=round(recovered_s, 2),
            relayed_s=round(relayed_s, 2),
        )
    finally:
        await load.stop()
        await producer.stop()
        await direct.dispose()


async def _decisions(engine, subjects: list[str]) -> int:  # type: ignore[no-untyped-def]
    decided, _beyond_one = await decisions_of(engine, subjects)
    return decided


async def _decided_at_least(engine, subjects: list[str], count: int) -> bool:  # type: ignore[no-untyped-def]
    try:
        return await _decisions(engine, subjects) >= count
    except Exception:  # the service has not created its tables yet
        return False


async def _relayed(engine) -> bool:  # type: ignore[no-untyped-def]
    return int(await scalar(engine, "SELECT count(*) FROM outbox WHERE published_at IS NULL")) == 0


async def _sent_at_least(load: Load, count: int) -> bool:
    return load.sent >= count


async def _elapsed(since: float, seconds: float) -> bool:
    return time.monotonic() - since >= seconds
