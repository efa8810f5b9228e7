"""Every service starts on the real broker and PostgreSQL, passes its health check and consumes
its topics; ``main()`` serves until SIGTERM and exits cleanly; a missing broker is waited for."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import json
import os
import signal
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from contracts import catalog
from contracts.envelope import Actor
from contracts.topics import TOPICS, topic_for_type
from services.audit.domain.leaves import parse_leaf
from services.cli.embedded import TansuBroker
from services.kit import messaging
from services.kit.db import create_engine
from services.kit.logging import configure_logging
from services.kit.messaging import create_producer, ensure_topics
from tests.kit.helpers import eventually, fresh_database, scalar
from tests.support import Attempts, free_port, healthy, serving

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Each service and one message type it consumes.
SERVICES: dict[str, str] = {
    "applications": "eligibility.assessed",
    "eligibility": "application.submitted",
    "zones": "zone.allocate",
    "disbursement": "award.open",
    "review": "review.task_assigned",
    "audit": "application.approved",
}


@pytest.fixture(scope="module")
async def registry_topics(kafka_bootstrap: str) -> None:
    """The registry's topics and DLQ twins, created as ``incentives topics create`` would."""
    await ensure_topics(
        kafka_bootstrap,
        [(name, topic.partitions) for topic in TOPICS for name in (topic.name, topic.dlq)],
    )


def service_settings(name: str, **values: Any) -> Any:
    # A consumer group of its own: other packages' services use the default groups on the
    # same session broker, and joining a group another test left mid-rebalance can stall.
    values.setdefault("consumer_group_prefix", f"{uuid.uuid4().hex[:8]}-")
    return importlib.import_module(f"services.{name}.settings").Settings(**values)


def service_app(name: str, settings: Any) -> FastAPI:
    app: FastAPI = importlib.import_module(f"services.{name}.main").create_app(settings)
    return app


def sample(message_type: str) -> Any:
    subject = f"app_{uuid.uuid4().hex[:12]}"
    payload = catalog.example_payloads(message_type)[0]
    payload = payload.model_copy(update={"application_id": subject})
    return catalog.make_envelope(
        message_type,
        payload,
        subject=subject,
        actor=Actor.system("tests"),
        producer="tests",
        correlation_id=uuid.uuid4(),
    )


@pytest.mark.usefixtures("registry_topics")
@pytest.mark.parametrize("name", list(SERVICES))
async def test_service_is_healthy_and_consumes_its_topics(
    name: str, pg_url: str, kafka_bootstrap: str, temporal_dev: str, tmp_path: Path
) -> None:
    async with fresh_database(pg_url, name) as database_url:
        port = free_port()
        settings = service_settings(
            name,
            kafka_bootstrap=kafka_bootstrap,
            temporal_address=temporal_dev,
            database_url=database_url,
            port=port,
            var_dir=tmp_path,
        )
        async with serving(service_app(name, settings), port) as client:
            await eventually(lambda: healthy(client), timeout=30)
            health = (await client.get("/health")).json()
            assert health["status"] == "ok"
            assert health["service"] == name
            expected = {"database", "broker", "outbox_relay"}
            if name == "review":  # the desk sends decisions to Temporal
                expected.add("temporal")
            if name == "audit":  # the transparency log's single writer
                expected.add("log_writer")
            assert {k: v["status"] for k, v in health["checks"].items()} == dict.fromkeys(
                expected, "ok"
            )
            assert (await client.get("/openapi.json")).status_code == 200
            asyncapi = (await client.get("/asyncapi.json")).json()
            message_type = SERVICES[name]
            topic = topic_for_type(message_type).name
            assert message_type in asyncapi["channels"][topic]["messages"]
            assert (await client.get("/asyncapi")).headers["content-type"].startswith("text/html")

            envelope = sample(message_type)
            producer = create_producer(kafka_bootstrap)
            await producer.start()
            try:
                await producer.send_and_wait(
                    topic,
                    catalog.encode(envelope),
                    key=envelope.subject.encode(),
                    headers=envelope.headers(),
                )
            finally:
                await producer.stop()

            engine = create_engine(database_url)
            try:

                async def processed() -> bool:
                    if name == "audit":  # the log keeps records, not processed-message marks
                        count = await scalar(
                            engine,
                            "SELECT count(*) FROM audit_leaves WHERE subject = :subject",
                            subject=envelope.subject,
                        )
                    else:
                        count = await scalar(
                            engine,
                            "SELECT count(*) FROM processed_messages WHERE event_id = :id",
                            id=envelope.event_id,
                        )
                    return bool(count)

                await eventually(processed, timeout=30)
                if name == "audit":
                    stored = await scalar(
                        engine,
                        "SELECT leaf FROM audit_leaves WHERE subject = :subject",
                        subject=envelope.subject,
                    )
                    assert parse_leaf(bytes(stored)).value == catalog.encode(envelope)
            finally:
                await engine.dispose()


async def test_embedded_sqlite_default(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Without a database URL a service uses ``<var_dir>/<service>.db`` (WAL) and is healthy."""
    port = free_port()
    settings = service_settings(
        "zones", kafka_bootstrap=kafka_bootstrap, port=port, var_dir=tmp_path
    )
    assert settings.database_url.endswith(f"{tmp_path.name}/zones.db")
    async with serving(service_app("zones", settings), port) as client:
        await eventually(lambda: healthy(client), timeout=30)
    assert (tmp_path / "zones.db").exists()


async def test_waits_for_a_late_broker_with_one_log_line(
    pg_url: str, temporal_dev: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started before the broker: 503 naming the broker, one clear line, then healthy."""
    probes = Attempts()
    monkeypatch.setattr(messaging, "broker_reachable", probes.wrap(messaging.broker_reachable))
    buffer = io.StringIO()
    configure_logging("review", "INFO", stream=buffer)
    broker_port, http_port = free_port(), free_port()
    bootstrap = f"127.0.0.1:{broker_port}"
    broker = TansuBroker(port=broker_port, log_path=tmp_path / "tansu.log")
    try:
        async with fresh_database(pg_url, "late") as database_url:
            settings = service_settings(
                "review",
                kafka_bootstrap=bootstrap,
                temporal_address=temporal_dev,
                database_url=database_url,
                port=http_port,
                var_dir=tmp_path,
            )
            async with serving(service_app("review", settings), http_port) as client:

                async def answering() -> bool:
                    with contextlib.suppress(httpx.TransportError):
                        return (await client.get("/health")).status_code == 503
                    return False

                await eventually(answering, timeout=20)
                health = (await client.get("/health")).json()
                assert health["status"] == "degraded"
                assert health["checks"]["database"]["status"] == "ok"
                assert health["checks"]["broker"]["status"] == "error"
                assert bootstrap in health["checks"]["broker"]["detail"]
                await probes.reach(3)  # several reconnect attempts, still one line

                broker.start()
                await eventually(lambda: healthy(client), timeout=30)
    finally:
        broker.stop()
        configure_logging("tests", "WARNING")
    records = [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]
    waiting = [r for r in records if "not reachable yet" in r["event"]]
    assert [r["event"] for r in waiting] == [f"broker {bootstrap} not reachable yet, retrying"]
    assert all("exception" not in r for r in waiting)
    assert not [r for r in records if r["level"] == "error"]


def _service_env(tmp_path: Path, bootstrap: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCENTIVES_")}
    env.update(
        INCENTIVES_KAFKA_BOOTSTRAP=bootstrap,
        INCENTIVES_VAR_DIR=str(tmp_path),
        INCENTIVES_ZONES_PORT=str(port),
    )
    return env


async def test_main_serves_until_sigterm_and_exits_cleanly(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from services.zones.main import main; main()",
        cwd=REPO_ROOT,
        env=_service_env(tmp_path, kafka_bootstrap, port),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await eventually(lambda: healthy(client), timeout=30)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0
    assert process.stderr is not None
    output = (await process.stderr.read()).decode()
    events = [json.loads(line)["event"] for line in output.splitlines() if line.strip()]
    assert "service ready" in events
    assert "service stopped" in events


async def test_port_in_use_is_a_clear_error(kafka_bootstrap: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from services.zones.main import main; main()",
            cwd=REPO_ROOT,
            env=_service_env(tmp_path, kafka_bootstrap, port),
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert f"port {port} on 127.0.0.1 for zones is not available" in stderr.decode()


async def test_insecure_secret_outside_dev_mode_stops_main(tmp_path: Path) -> None:
    env = _service_env(tmp_path, "127.0.0.1:1", free_port())
    env["INCENTIVES_DEV_MODE"] = "false"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from services.zones.main import main; main()",
        cwd=REPO_ROOT,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert "refusing to start" in stderr.decode()
    assert "Traceback" not in stderr.decode()
