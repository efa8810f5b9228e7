"""The disbursement service on the real stack: budgets through its API, awards and tranche
releases through Kafka, payouts through the simulated rail, ledger views, and dead letters."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from contracts import catalog
from contracts.envelope import utcnow
from contracts.topics import TOPICS
from contracts.v1.disbursement import ReleaseTranche
from services.disbursement.main import create_app
from services.disbursement.settings import Settings
from services.kit.logging import configure_logging
from services.kit.messaging import create_producer, ensure_topics
from tests.applications.helpers import auth
from tests.disbursement.helpers import award_command, running_rail, workflow_command
from tests.kit.helpers import eventually, fresh_database, read_topic
from tests.support import free_port, healthy, serving

pytestmark = pytest.mark.integration


@dataclass
class Running:
    client: httpx.AsyncClient
    producer: AIOKafkaProducer
    bootstrap: str


@pytest.fixture(scope="module")
async def running(
    pg_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    configure_logging("disbursement", "WARNING")
    await ensure_topics(
        kafka_bootstrap,
        [(name, topic.partitions) for topic in TOPICS for name in (topic.name, topic.dlq)],
    )
    var = Path(tmp_path_factory.mktemp("disbursement"))
    async with (
        fresh_database(pg_url, "disb_svc") as url,
        running_rail(var / "rail") as rail,
    ):
        port = free_port()
        settings = Settings(
            kafka_bootstrap=kafka_bootstrap,
            database_url=url,
            port=port,
            var_dir=var,
            rail_url=str(rail.base_url),
            consumer_group_prefix=f"disb-test-{uuid.uuid4().hex[:8]}-",
            payout_interval_seconds=0.2,
        )
        producer = create_producer(kafka_bootstrap, client_id="disbursement-tests")
        await producer.start()
        try:
            async with serving(create_app(settings), port) as client:
                await eventually(lambda: healthy(client), timeout=60)
                yield Running(client, producer, kafka_bootstrap)
        finally:
            await producer.stop()


async def _send(running: Running, message_type: str, payload: Any) -> uuid.UUID:
    envelope = workflow_command(message_type, payload)
    await running.producer.send_and_wait(
        "disbursement.commands",
        catalog.encode(envelope),
        key=envelope.subject.encode(),
        headers=envelope.headers(),
    )
    return envelope.event_id


async def test_budget_award_release_and_payout_end_to_end(running: Running) -> None:
    client, admin, auditor = running.client, auth("admin"), auth("auditor")
    body = {
        "incentive_type": "grant",
        "fiscal_year": 2031,
        "amount": {"amount": "1000000.00", "currency": "EUR"},
    }
    created = await client.post("/v1/budgets", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["free"] == {"amount": "1000000.00", "currency": "EUR"}
    assert (await client.post("/v1/budgets", json=body, headers=admin)).status_code == 409
    assert (await client.post("/v1/budgets", json=body, headers=auditor)).status_code == 403

    for amount in ("0", "-5"):
        refused = await client.post(
            "/v1/budgets/grant-2031/top-ups",
            json={"amount": {"amount": amount, "currency": "EUR"}},
            headers=admin,
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"].startswith("amount")
    topped = await client.post(
        "/v1/budgets/grant-2031/top-ups",
        json={"amount": {"amount": "500.00", "currency": "EUR"}},
        headers=admin,
    )
    assert topped.json()["funded"]["amount"] == "1000500.00"

    award_id = f"award-{uuid.uuid4().hex[:8]}"
    await _send(running, "award.open", award_command(award_id, "250000.00", "grant-2031"))
    await _send(
        running,
        "tranche.release",
        ReleaseTranche(
            award_id=award_id,
            application_id=f"app-{award_id}",
            sequence=1,
            approved_by="rev.nguyen@gaip.example",
        ),
    )

    async def paid() -> bool:
        view = await client.get(f"/v1/awards/{award_id}/ledger", headers=auditor)
        return view.status_code == 200 and view.json()["tranches"][0]["state"] == "paid"

    await eventually(paid, timeout=60, interval=0.25)
    award = (await client.get(f"/v1/awards/{award_id}/ledger", headers=auditor)).json()
    assert award["paid"]["amount"] == "100000.00"
    assert award["reserved"]["amount"] == "150000.00"
    assert [e["cause"] for e in award["entries"]] == ["reserve", "pay"]
    assert [t["state"] for t in award["tranches"]] == ["paid", "scheduled", "scheduled"]
    budget = (await client.get("/v1/budgets/grant-2031/ledger", headers=auditor)).json()
    assert budget["free"]["amount"] == "750500.00"
    assert budget["reserved"]["amount"] == "150000.00"
    assert budget["paid"]["amount"] == "100000.00"
    assert [e["cause"] for e in budget["entries"]] == ["top_up", "top_up", "reserve", "pay"]
    assert budget["entries"][0]["actor"] == "admin:admin@gaip.example"
    firm_auth = auth("firm", "ACME")
    assert (await client.get("/v1/budgets", headers=firm_auth)).status_code == 403


async def test_a_release_on_an_unknown_award_is_dead_lettered_with_its_reason(
    running: Running,
) -> None:
    event_id = await _send(
        running,
        "tranche.release",
        ReleaseTranche(
            award_id="award-nowhere",
            application_id="app-nowhere",
            sequence=1,
            approved_by="rev.nguyen@gaip.example",
        ),
    )
    found: dict[str, str] = {}

    async def dead_lettered() -> bool:
        for record in await read_topic(running.bootstrap, "disbursement.commands.dlq", count=1):
            if json.loads(record.value)["event_id"] == str(event_id):
                found.update({k: v.decode() for k, v in record.headers})
                return True
        return False

    await eventually(dead_lettered, timeout=60, interval=0.5)
    assert found["dlq.reason"] == "business_refusal"
    assert "award-nowhere" in found["dlq.error"]


async def test_the_new_years_budget_opens_an_award_that_waited_for_last_years(
    running: Running,
) -> None:
    client, admin, auditor = running.client, auth("admin"), auth("auditor")
    this_year = utcnow().year
    award_id = f"award-{uuid.uuid4().hex[:8]}"
    last_year = f"yearend-{this_year - 1}"
    body = {
        "incentive_type": "yearend",
        "fiscal_year": this_year - 1,
        "amount": {"amount": "1000.00", "currency": "EUR"},
    }
    assert (await client.post("/v1/budgets", json=body, headers=admin)).status_code == 201
    await _send(running, "award.open", award_command(award_id, "250000.00", last_year))

    async def waiting() -> bool:
        view = await client.get(f"/v1/budgets/{last_year}/ledger", headers=auditor)
        return view.json()["waitlist"] == [award_id]

    await eventually(waiting, timeout=60, interval=0.25)
    body = {
        "incentive_type": "yearend",
        "fiscal_year": this_year,
        "amount": {"amount": "300000.00", "currency": "EUR"},
    }
    created = await client.post("/v1/budgets", json=body, headers=admin)
    assert created.status_code == 201, created.text
    view = (await client.get(f"/v1/awards/{award_id}/ledger", headers=auditor)).json()
    assert view["budget_id"] == f"yearend-{this_year}"
    assert view["reserved"]["amount"] == "250000.00"
    budget = (await client.get(f"/v1/budgets/yearend-{this_year}/ledger", headers=auditor)).json()
    assert budget["free"]["amount"] == "50000.00"
    assert budget["waitlist"] == []
    old = (await client.get(f"/v1/budgets/{last_year}/ledger", headers=auditor)).json()
    assert old["waitlist"] == []
    assert old["free"]["amount"] == "1000.00", "last year's money untouched"
