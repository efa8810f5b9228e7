"""A relay process that dies (SIGKILL) right after publishing, before marking rows published.

Run by ``test_delivery_guarantees``: ``python -m tests.kit.relay_crash_process DB_URL BOOTSTRAP``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence

from services.kit.db import create_engine, create_session_factory
from services.kit.messaging import Record, create_producer, send_all
from services.kit.outbox import OutboxRelay


async def main(database_url: str, bootstrap: str) -> None:
    engine = create_engine(database_url)
    producer = create_producer(bootstrap)
    await producer.start()

    async def publish_then_die(records: Sequence[Record]) -> None:
        await send_all(producer, records)  # acknowledged by the broker...
        os.kill(os.getpid(), signal.SIGKILL)  # ...and the process dies before the mark

    await OutboxRelay(create_session_factory(engine), publish_then_die).run_once()
    raise SystemExit("unreachable: the relay should have been killed")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
