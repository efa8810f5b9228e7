"""The zones service on the real stack: two replicas in one consumer group on the Kafka broker
and one PostgreSQL database, the admin API, and dead letters for commands it cannot apply."""

from __future__ import annotations

import contextlib
import functools
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from contracts import catalog
from contracts.envelope import Actor, utcnow
from contracts.topics import TOPICS
from contracts.v1.zones import ConfirmZoneHold
from services.kit.logging import configure_logging
from services.kit.messaging import create_producer, ensure_topics
from services.zones import commands
from services.zones.main import create_app
from services.zones.settings import Settings
from tests.applications.helpers import auth
from tests.kit.helpers import eventually, fresh_database, read_topic
from tests.support import free_port, healthy, serving
from tests.zones.helpers import GPU, SEAT, Db, hold_command, origin, zones_db

pytestmark = pytest.mark.integration

CAPACITY = 5
CATALOGUE = f"""
[[zone]]
id = "z-small"
name = "Small Zone"
city = "Lahore"
sectors = []
capacity = {{ gpu_rack_unit = {CAPACITY}, office_seat = 3 }}
"""


@dataclass
class Replicas:
    clients: list[httpx.AsyncClient]
    db: Db
    producer: AIOKafkaProducer
    bootstrap: str


@pytest.fixture(scope="module")
async def replicas(
    pg_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Replicas]:
    configure_logging("zones", "WARNING")
    await ensure_topics(
        kafka_bootstrap,
        [(name, topic.partitions) for topic in TOPICS for name in (topic.name, topic.dlq)],
    )
    var = tmp_path_factory.mktemp("zones")
    (var / "catalogue.toml").write_text(CATALOGUE)
    group = f"zones-test-{uuid.uuid4().hex[:8]}-"
    async with fresh_database(pg_url, "zones_svc") as url, zones_db(url, []) as db:
        apps = []
        for _ in range(2):
            settings = Settings(
                kafka_bootstrap=kafka_bootstrap,
                database_url=url,
                port=free_port(),
                var_dir=var,
                catalogue=var / "catalogue.toml",
                consumer_group_prefix=group,
                sweep_interval_seconds=0.2,
            )
            apps.append((create_app(settings), settings.port))
        producer = create_producer(kafka_bootstrap, client_id="zones-tests")
        await producer.start()
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(serving(app, port)) for app, port in apps]
            for client in clients:
                await eventually(functools.partial(healthy, client), timeout=60)
            try:
                yield Replicas(clients, db, producer, kafka_bootstrap)
            finally:
                await producer.stop()


async def _send(replicas: Replicas, message_type: str, payload: Any) -> uuid.UUID:
    envelope = catalog.make_envelope(
        message_type,
        payload,
        subject=payload.application_id,
        actor=Actor.system("workflow"),
        producer="workflow",
        correlation_id=uuid.uuid4(),
    )
    raw = catalog.encode(envelope)
    await replicas.producer.send_and_wait(
        "zones.commands", raw, key=payload.application_id.encode(), headers=envelope.headers()
    )
    return envelope.event_id


async def _processed(db: Db) -> int:
    (row,) = await db.rows("SELECT count(*) FROM processed_messages")
    return int(row[0])


async def test_competing_holds_through_two_replicas_never_exceed_capacity(
    replicas: Replicas,
) -> None:
    db = replicas.db
    before = await _processed(db)
    sent: list[tuple[str, bool]] = []
    for i in range(200):
        allocation_id = f"race-{i:03d}"
        wait = i % 3 == 0
        sent.append((allocation_id, wait))
        command = hold_command(allocation_id, (GPU, 1, ["z-small"]), allow_waitlist=wait)
        command = command.model_copy(update={"hold_seconds": 3600})
        await _send(replicas, "zone.hold", command)
        if i % 10 == 0:  # the same request again, as a retried activity would send it
            await _send(replicas, "zone.hold", command)
    await replicas.producer.flush()

    async def all_processed() -> bool:
        return await _processed(db) >= before + 220

    await eventually(all_processed, timeout=120, interval=0.25)
    assert await db.counter("z-small", GPU) == (CAPACITY, CAPACITY, 0)
    answers: dict[str, str] = {}
    for kind, payload in await db.events():
        if payload["allocation_id"].startswith("race-"):
            assert payload["allocation_id"] not in answers, "a request answered twice"
            answers[payload["allocation_id"]] = kind
    assert set(answers) == {a for a, _ in sent}
    counts = Counter(answers.values())
    waiting = sum(1 for a, wait in sent if wait and answers[a] != "zone.held")
    assert counts == {
        "zone.held": CAPACITY,
        "zone.waitlisted": waiting,
        "zone.refused": len(sent) - CAPACITY - waiting,
    }


async def test_a_command_that_cannot_be_applied_is_dead_lettered_with_its_reason(
    replicas: Replicas,
) -> None:
    event_id = await _send(
        replicas,
        "zone.confirm",
        ConfirmZoneHold(allocation_id="never-held", application_id="app-never-held"),
    )
    found: dict[str, str] = {}

    async def dead_lettered() -> bool:
        for record in await read_topic(replicas.bootstrap, "zones.commands.dlq", count=1):
            headers = {k: v.decode() for k, v in record.headers}
            if json.loads(record.value)["event_id"] == str(event_id):
                found.update(headers)
                return True
        return False

    await eventually(dead_lettered, timeout=60, interval=0.5)
    assert found["dlq.reason"] == "business_refusal"
    assert "never-held" in found["dlq.error"]
    states = await replicas.db.states()
    assert not any(k.startswith("never-held") for k in states)


async def test_admin_api_adds_resizes_deactivates_and_reports_occupancy(
    replicas: Replicas,
) -> None:
    client = replicas.clients[0]
    admin, auditor = auth("admin"), auth("auditor")
    body = {
        "id": "z-api",
        "name": "API Zone",
        "city": "Karachi",
        "sectors": ["fintech"],
        "capacity": {"office_seat": 4},
    }
    created = await client.post("/v1/zones", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["occupancy"] == [
        {
            "unit_type": "office_seat",
            "capacity": 4,
            "held": 0,
            "allocated": 0,
            "free": 4,
            "waitlist": 0,
        }
    ]
    again = await client.post("/v1/zones", json=body, headers=admin)
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")

    bad = await client.post("/v1/zones", json={**body, "capacity": {"sofa": 1}}, headers=admin)
    assert bad.status_code == 422
    assert any(e["field"].startswith("capacity") for e in bad.json()["errors"])

    async with replicas.db.uow() as uow:  # three seats held, as a zone.hold would
        command = hold_command("api-2", (SEAT, 3, ["z-api"]))
        await commands.hold(uow, command, origin(), utcnow(), default_hold_seconds=3600)
        await uow.commit()
    seats_url = "/v1/zones/z-api/capacity/office_seat"
    shrink = await client.put(seats_url, json={"capacity": 2}, headers=admin)
    assert shrink.status_code == 409
    assert shrink.json()["minimum"] == 3
    grow = await client.put(seats_url, json={"capacity": 6}, headers=admin)
    assert grow.status_code == 200
    seats = grow.json()["occupancy"][0]
    assert (seats["capacity"], seats["held"], seats["free"]) == (6, 3, 3)
    negative = await client.put(seats_url, json={"capacity": -1}, headers=admin)
    assert negative.status_code == 422

    assert (await client.post("/v1/zones/z-api/deactivate", headers=auditor)).status_code == 403
    off = await client.post("/v1/zones/z-api/deactivate", headers=admin)
    assert off.json()["active"] is False
    listed = await client.get("/v1/zones", headers=auditor)
    assert listed.status_code == 200
    assert {z["id"] for z in listed.json()["zones"]} >= {"z-small", "z-api"}
    firm_auth = auth("firm", "ACME")
    assert (await client.get("/v1/zones", headers=firm_auth)).status_code == 403
    assert (await client.get("/v1/zones/z-nowhere", headers=auditor)).status_code == 404
    assert (await client.get("/v1/zones")).status_code == 401
