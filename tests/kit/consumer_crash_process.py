"""A batch consumer process that dies (SIGKILL) in the middle of its work.

Run by ``test_batch_delivery``::

    python -m tests.kit.consumer_crash_process DB_URL BOOTSTRAP TOPIC GROUP MODE AT MAX_RECORDS

``MODE`` ``handler``: killed inside the ``AT``-th handler call, mid-batch, before the batch's
transaction commits. ``MODE`` ``commit``: killed right after the ``AT``-th batch committed its
transaction (and published its dead letters), before the Kafka offsets are committed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from functools import partial

from faststream.kafka import KafkaBroker

from contracts.envelope import deterministic_event_id
from services.kit.consumer import IdempotentConsumer, Incoming, Outcome, subscribe
from services.kit.db import create_engine, create_session_factory
from services.kit.dlq import ConsumedRecord
from services.kit.messaging import create_producer, send_all
from services.kit.uow import UnitOfWork, UnitOfWorkFactory
from tests.kit.helpers import envelope, increment_counter

#: Where the handler stages its output (the outbox is checked, never published, in the test).
OUTPUT_TOPIC = "crash.output"
CONSUMER = "downstream"


class CountAndEmit:
    """A handler with state and output: counter[subject] += 1, plus one outbox row per input.

    The output's event id derives from the input's, so a second output for one input would be
    visible as a repeated event id in the outbox.
    """

    def __init__(self, kill_at_call: int | None = None) -> None:
        self.calls = 0
        self._kill_at_call = kill_at_call

    async def __call__(self, incoming: Incoming, uow: UnitOfWork) -> None:
        self.calls += 1
        await increment_counter(incoming, uow)
        received = incoming.envelope
        uow.add_outbox(
            envelope(
                received.subject,
                event_id=deterministic_event_id("crash-test", str(received.event_id)),
            ),
            OUTPUT_TOPIC,
        )
        if self.calls == self._kill_at_call:
            os.kill(os.getpid(), signal.SIGKILL)


class DiesAfterCommit(IdempotentConsumer):
    """Killed after its ``at``-th batch is durable, before the subscriber commits offsets."""

    def __init__(self, *args, at: int | None, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._at = at
        self._batches = 0

    async def process_batch(self, records: Sequence[ConsumedRecord]) -> list[Outcome]:
        outcomes = await super().process_batch(records)
        self._batches += 1
        if self._batches == self._at:
            os.kill(os.getpid(), signal.SIGKILL)
        return outcomes


async def main(
    database_url: str, bootstrap: str, topic: str, group: str, mode: str, at: int, max_records: int
) -> None:
    engine = create_engine(database_url)
    producer = create_producer(bootstrap)
    await producer.start()
    broker = KafkaBroker(bootstrap, acks="all")
    consumer = DiesAfterCommit(
        CONSUMER,
        CountAndEmit(kill_at_call=at if mode == "handler" else None),
        uow_factory=UnitOfWorkFactory(create_session_factory(engine)),
        dead_letters=partial(send_all, producer),
        lanes=3,
        at=at if mode == "commit" else None,
    )
    subscribe(broker, consumer, topic, group_id=group, max_records=max_records)
    await broker.start()
    await asyncio.sleep(120)
    raise SystemExit("unreachable: the consumer should have been killed")


if __name__ == "__main__":
    url, bootstrap_servers, topic_name, group_id, crash_mode, crash_at, batch = sys.argv[1:8]
    asyncio.run(
        main(url, bootstrap_servers, topic_name, group_id, crash_mode, int(crash_at), int(batch))
    )
