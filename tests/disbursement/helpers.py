"""A migrated disbursement database, awards to pay, and the simulated rail on a free port."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import catalog
from contracts.envelope import Actor, ActorKind, Envelope, utcnow
from contracts.money import Money
from contracts.v1.disbursement import OpenAward, ReleaseTranche, Tranche
from services.disbursement import commands
from services.disbursement.domain import parse_schedule, split
from services.disbursement.main import MIGRATIONS
from services.disbursement.models import AMOUNT_DECIMALS
from services.kit.db import create_engine, create_session_factory
from services.kit.events import Origin
from services.kit.migrations import upgrade_to_head
from services.kit.uow import UnitOfWorkFactory
from services.rail.app import create_app as create_rail
from services.rail.settings import Settings as RailSettings
from tests.support import free_port, serving

ADMIN = Origin(Actor(kind=ActorKind.ADMIN, id="admin@gaip.example"))
WORKFLOW = Origin(Actor.system("workflow"))
LEDGER_TRANSFERRED = "ledger.transferred"
SCHEDULE = parse_schedule("signing:40,milestone 1:30,milestone 2:30")


def stored(value: int) -> Decimal:
    """An amount as the ledger tables keep it (ten-thousandths) read by raw SQL."""
    return Decimal(value).scaleb(-AMOUNT_DECIMALS)


@dataclass
class Db:
    engine: AsyncEngine
    uow: UnitOfWorkFactory

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(sa.text(sql), params)).all())

    async def scalar(self, sql: str, **params: Any) -> Any:
        return (await self.rows(sql, **params))[0][0]

    async def balance(self, account: str) -> Decimal:
        found = await self.rows("SELECT balance FROM ledger_accounts WHERE id = :a", a=account)
        return stored(found[0][0]) if found else Decimal(0)

    async def events(self) -> list[dict[str, Any]]:
        """Every staged envelope, as JSON, in outbox order."""
        import json

        return [
            json.loads(bytes(v)) for (v,) in await self.rows("SELECT value FROM outbox ORDER BY id")
        ]

    async def event_types(self) -> list[str]:
        """The staged event types, leaving out the ledger's ``ledger.transferred`` movements."""
        return [e["type"] for e in await self.events() if e["type"] != LEDGER_TRANSFERRED]

    async def movements(self) -> list[dict[str, Any]]:
        """The payloads of the staged ``ledger.transferred`` events, in outbox order."""
        return [e["payload"] for e in await self.events() if e["type"] == LEDGER_TRANSFERRED]


@asynccontextmanager
async def disbursement_db(url: str) -> AsyncIterator[Db]:
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine, MIGRATIONS)
        yield Db(engine, UnitOfWorkFactory(create_session_factory(engine)))
    finally:
        await engine.dispose()


async def fund(db: Db, amount: str = "1000000.00", year: int = 2027) -> str:
    async with db.uow() as uow:
        budget_id = await commands.create_budget(
            uow,
            incentive_type="grant",
            fiscal_year=year,
            amount=Money.of(amount, "EUR"),
            origin=ADMIN,
            now=utcnow(),
        )
        await uow.commit()
    return budget_id


def award_command(award_id: str, total: str, budget_id: str = "grant-2027") -> OpenAward:
    amounts = split(Decimal(total), "EUR", SCHEDULE)
    return OpenAward(
        award_id=award_id,
        application_id=f"app-{award_id}",
        firm_id="ACME",
        budget_id=budget_id,
        total=Money.of(total, "EUR"),
        tranches=[
            Tranche(sequence=i + 1, amount=Money.of(a, "EUR"), milestone=share.name)
            for i, (a, share) in enumerate(zip(amounts, SCHEDULE, strict=True))
        ],
    )


async def open_award(db: Db, award_id: str, total: str = "250000.00") -> None:
    async with db.uow() as uow:
        await commands.open_award(uow, award_command(award_id, total), WORKFLOW, utcnow())
        await uow.commit()


async def release(db: Db, award_id: str, sequence: int = 1) -> str | None:
    async with db.uow() as uow:
        payment_id = await commands.release_tranche(
            uow,
            ReleaseTranche(
                award_id=award_id,
                application_id=f"app-{award_id}",
                sequence=sequence,
                approved_by="rev.nguyen@gaip.example",
            ),
            Origin(Actor.system("workflow"), uuid.uuid4(), uuid.uuid4()),
            utcnow(),
        )
        await uow.commit()
    return payment_id


@asynccontextmanager
async def running_rail(var_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The simulated rail under uvicorn on a free port, with its own SQLite file."""
    port = free_port()
    settings = RailSettings(port=port, var_dir=var_dir)
    async with serving(create_rail(settings), port) as client:
        yield client


def workflow_command(
    message_type: str, payload: Any, event_id: uuid.UUID | None = None
) -> Envelope[Any]:
    """A ``disbursement.commands`` envelope as the workflow sends it."""
    return catalog.make_envelope(
        message_type,
        payload,
        subject=payload.application_id,
        actor=Actor.system("workflow"),
        producer="workflow",
        correlation_id=uuid.uuid4(),
        event_id=event_id,
    )
