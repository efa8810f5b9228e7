"""The payment rail failing for a minute under load: payouts wait, then every tranche is paid once.

The disbursement service runs with the simulated rail; awards are opened and their signing
tranches released through ``disbursement.commands`` throughout. For a minute the rail answers
every payment with 503 (its dev-mode control). Meanwhile ``/health`` says the service waits
for the ``rail``; afterwards every tranche is paid exactly once (one rail payment per key, one
``tranche.paid`` per award), no command is dead-lettered, and the time from the end of the
outage to the last payment is printed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from contracts import catalog
from contracts.envelope import Actor
from contracts.topics import TOPICS, get_topic
from contracts.v1.disbursement import ReleaseTranche
from contracts.v1.disbursement import budget_id as fiscal_year_budget_id
from services.disbursement.main import create_app
from services.disbursement.settings import Settings
from services.kit.db import create_engine
from services.kit.messaging import Record, create_producer, ensure_topics
from tests.applications.helpers import auth
from tests.disbursement.helpers import award_command, running_rail
from tests.kit.helpers import fresh_database, scalar
from tests.outages.helpers import (
    OUTAGE_SECONDS,
    RECOVERY_TIMEOUT,
    TEST_TIMEOUT,
    Load,
    event_ids_by_subject,
    is_ok,
    records_with_keys,
    report,
    wait_for,
    waits_for,
)
from tests.support import free_port, serving

pytestmark = [pytest.mark.integration, pytest.mark.resilience, pytest.mark.timeout(TEST_TIMEOUT)]

#: Awards per second (two commands each), before, during and after the outage.
RATE = 2.0
BEFORE_SECONDS = 5.0
AFTER_SECONDS = 5.0
FISCAL_YEAR = 2032
#: More failing answers than a minute of probing asks for (the control's maximum).
FAILING_ANSWERS = 10_000


def _commands(count: int, budget_id: str) -> tuple[list[Record], list[str]]:
    """For ``count`` awards: open it, then release its signing tranche."""
    run = uuid.uuid4().hex[:6]
    records: list[Record] = []
    subjects: list[str] = []
    for i in range(count):
        award_id = f"award-out{run}{i:05d}"
        opened = award_command(award_id, "250000.00", budget_id)
        released = ReleaseTranche(
            award_id=award_id,
            application_id=opened.application_id,
            sequence=1,
            approved_by="rev.nguyen@gaip.example",
        )
        correlation = uuid.uuid4()
        for message_type, payload in (("award.open", opened), ("tranche.release", released)):
            env = catalog.make_envelope(
                message_type,
                payload,
                subject=opened.application_id,
                actor=Actor.system("workflow"),
                producer="workflow",
                correlation_id=correlation,
            )
            records.append(
                Record(
                    topic=get_topic("disbursement.commands").name,
                    value=catalog.encode(env),
                    key=env.subject.encode(),
                    headers=tuple(env.headers()),
                )
            )
        subjects.append(opened.application_id)
    return records, subjects


async def test_the_rail_failing_for_a_minute_under_load(
    kafka_bootstrap: str, pg_url: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    await ensure_topics(
        kafka_bootstrap,
        [(name, t.partitions) for t in TOPICS for name in (t.name, t.dlq)],
    )
    total = int(RATE * (BEFORE_SECONDS + OUTAGE_SECONDS + AFTER_SECONDS))
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    load: Load | None = None
    try:
        async with (
            fresh_database(pg_url, "disb_outage") as url,
            running_rail(tmp_path / "rail") as rail,
        ):
            settings = Settings(
                kafka_bootstrap=kafka_bootstrap,
                database_url=url,
                port=free_port(),
                var_dir=tmp_path,
                rail_url=str(rail.base_url),
                consumer_group_prefix=f"{unique_name('outage-rail')}-",
                payout_interval_seconds=0.2,
            )
            direct = create_engine(url)
            try:
                async with serving(create_app(settings), settings.port) as client:
                    await wait_for(lambda: is_ok(client), timeout=60)
                    created = await client.post(
                        "/v1/budgets",
                        json={
                            "incentive_type": "grant",
                            "fiscal_year": FISCAL_YEAR,
                            "amount": {"amount": "1000000000.00", "currency": "EUR"},
                        },
                        headers=auth("admin"),
                    )
                    assert created.status_code == 201, created.text
                    budget_id = fiscal_year_budget_id("grant", FISCAL_YEAR)
                    records, subjects = _commands(total, budget_id)
                    load = Load(producer, records, RATE * 2)
                    load.start()
                    await wait_for(lambda: _paid_at_least(direct, 1), timeout=60)
                    await wait_for(
                        lambda: _true(load is not None and load.sent >= RATE * 2 * BEFORE_SECONDS),
                        timeout=30,
                    )

                    await _control(rail, "fail_transiently", FAILING_ANSWERS)
                    failing_at = time.monotonic()
                    paid_at_failure = await _paid(direct)
                    await wait_for(lambda: waits_for(client, "rail"), timeout=OUTAGE_SECONDS / 2)
                    waiting = (await client.get("/health")).json()
                    await wait_for(
                        lambda: _true(time.monotonic() - failing_at >= OUTAGE_SECONDS),
                        timeout=OUTAGE_SECONDS + 5,
                        interval=1,
                    )
                    paid_during = await _paid(direct) - paid_at_failure
                    await _control(rail, "normal", 1)
                    restored_at = time.monotonic()
                    at_restore = await _paid(direct)
                    backlog = total - at_restore
                    await wait_for(
                        lambda: _paid_at_least(direct, at_restore + 1), timeout=RECOVERY_TIMEOUT
                    )
                    first_s = time.monotonic() - restored_at

                    await load.finished()
                    await wait_for(lambda: _paid_at_least(direct, total), timeout=RECOVERY_TIMEOUT)
                    recovered_s = time.monotonic() - restored_at
                    await wait_for(lambda: is_ok(client), timeout=30)

                    listed = await rail.get(
                        "/v1/payments", params={"since": "2000-01-01T00:00:00Z"}
                    )
                    rail_keys = [p["idempotency_key"] for p in listed.json()["payments"]]
                    payment_ids = {
                        str(row) for row in await _column(direct, "SELECT id FROM payments")
                    }
                    dead_payments = await scalar(
                        direct, "SELECT count(*) FROM payments WHERE state <> 'paid'"
                    )
            finally:
                await direct.dispose()
    finally:
        if load is not None:
            await load.stop()
        await producer.stop()

    assert "rail" in waiting["waiting_for"]
    assert waiting["status"] == "degraded"
    assert paid_during <= 1, "the rail paid nothing while failing (one may have been in flight)"
    # Each tranche paid once: one rail payment per key, every payment settled as paid.
    assert len(payment_ids) == total
    assert sorted(k for k in rail_keys if k in payment_ids) == sorted(payment_ids)
    assert dead_payments == 0
    keys = {subject.encode() for subject in subjects}
    events = await records_with_keys(kafka_bootstrap, get_topic("disbursement.events").name, keys)
    paid_events = event_ids_by_subject([v for _k, v in events], "tranche.paid")
    assert set(paid_events) == set(subjects)
    assert all(len(ids) == 1 for ids in paid_events.values())
    dlq = get_topic("disbursement.commands").dlq
    assert await records_with_keys(kafka_bootstrap, dlq, keys) == []

    report(
        "rail",
        outage_s=OUTAGE_SECONDS,
        awards=total,
        backlog_at_restore=backlog,
        first_payment_s=round(first_s, 2),
        recovery_s=round(recovered_s, 2),
    )


async def _control(rail: httpx.AsyncClient, mode: str, count: int) -> None:
    response = await rail.post("/v1/control", json={"mode": mode, "count": count})
    assert response.status_code == 204, response.text


async def _paid(engine) -> int:  # type: ignore[no-untyped-def]
    try:
        return int(await scalar(engine, "SELECT count(*) FROM payments WHERE state = 'paid'"))
    except Exception:  # the service has not created its tables yet
        return 0


async def _paid_at_least(engine, count: int) -> bool:  # type: ignore[no-untyped-def]
    return await _paid(engine) >= count


async def _column(engine, sql: str) -> list[object]:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    async with engine.connect() as conn:
        return list((await conn.execute(sa.text(sql))).scalars())


async def _true(value: bool) -> bool:
    return value
