"""Run one payout round against a database and a rail, then exit (a process to SIGKILL).

``python -m tests.disbursement.payout_process DATABASE_URL RAIL_URL``
"""

from __future__ import annotations

import asyncio
import sys

from services.disbursement.payouts import pay_due
from services.disbursement.rail import RailClient
from services.kit.db import create_engine, create_session_factory
from services.kit.uow import UnitOfWorkFactory


async def main(database_url: str, rail_url: str) -> None:
    engine = create_engine(database_url)
    rail = RailClient(rail_url, timeout=60)
    try:
        await pay_due(UnitOfWorkFactory(create_session_factory(engine)), rail)
    finally:
        await rail.aclose()
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
