"""The publish activity hands the workflow's messages to the worker's outbox, once per event id.

In process: the worker's real app on its SQLite default, no broker or Temporal reachable. The
outbox is what the worker republishes to a broker that lost what it held (see
``tests/audit/test_broker_loss.py`` for the whole platform).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI

from contracts import catalog
from services.kit.messaging import Record
from tests.applications.helpers import event
from tests.inprocess import InProcess, in_process_settings
from workflows.activities import OutgoingMessage, Publisher
from workflows.settings import Settings
from workflows.worker import create_app, outbox_publisher


async def test_a_retried_publish_keeps_one_outbox_row(
    in_process: Callable[[FastAPI], Awaitable[InProcess]], tmp_path: Path
) -> None:
    worker = await in_process(create_app(in_process_settings(Settings, tmp_path)))
    publish = outbox_publisher(worker.service)
    first = event("review.task_assigned", "app_outbox", task_id="t1")
    second = event("review.task_assigned", "app_outbox", task_id="t2")
    record = Record(
        topic="review.events",
        value=catalog.encode(first),
        key=b"app_outbox",
        headers=tuple(first.headers()),
    )
    await publish([record])
    await publish([record])  # the activity retried after its first attempt was kept
    activity = Publisher(publish).publish_message
    await activity(
        OutgoingMessage(
            topic="review.events",
            key="app_outbox",
            value=catalog.encode(second).decode(),
            headers=[(k, v.decode()) for k, v in second.headers()],
        )
    )
    kept = await worker.outbox()
    assert [e.event_id for e in kept] == [first.event_id, second.event_id]
    assert kept[0] == first
