"""The disbursement service end to end through the broker and the simulated rail: payouts/s.

``n`` awards are opened and their signing tranche released by commands produced to
``disbursement.commands`` first (``award.open`` then ``tranche.release``, one application each,
on its partition, against one funded budget); then the simulated rail and the disbursement
service start in processes of their own (fresh PostgreSQL database, a unique consumer group
prefix, the payout worker polling every 50 ms). The service reserves each grant, releases the
tranche, stores the payment id and pays it through the rail; a consumer in this process counts
``tranche.paid`` on ``disbursement.events``. Afterwards every award must have exactly one
``tranche.paid``, and the database must agree: one payment per tranche, all paid; every
account's balance equal to its credits minus its debits; the balances summing to zero; no
account but the funding one negative.

The clock runs from the first payouts seen on the topic to the last.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from contracts import catalog
from contracts.envelope import Actor, utcnow
from contracts.money import Money
from contracts.schedule import parse_schedule, split
from contracts.topics import get_topic
from contracts.v1.disbursement import OpenAward, ReleaseTranche, Tranche
from services.cli.embedded import free_port
from services.disbursement import commands
from services.disbursement.main import MIGRATIONS
from services.disbursement.settings import Settings as DisbursementSettings
from services.kit.db import create_engine, create_session_factory
from services.kit.events import Origin
from services.kit.messaging import Record
from services.kit.migrations import upgrade_to_head
from services.kit.uow import UnitOfWorkFactory
from tests.bench.common import BenchError, Result, assert_exactly_once, header, read_all
from tests.bench.kit_hop import HOP_TARGET
from tests.bench.process import process, service_env, service_hop
from tests.bench.raw import RAW_HOP

PAYOUTS = "payouts"
INPUT_TOPIC = get_topic("disbursement.commands").name
OUTPUT_TOPIC = get_topic("disbursement.events").name
GRANT = Decimal("1000.00")
CURRENCY = "EUR"


def make_commands(n: int, budget_id: str) -> tuple[list[Record], list[str]]:
    """``award.open`` and ``tranche.release`` (signing) for ``n`` applications, in that order."""
    run = uuid.uuid4().hex[:6]
    schedule = parse_schedule(DisbursementSettings().tranche_schedule)
    amounts = split(GRANT, CURRENCY, schedule)
    tranches = [
        Tranche(sequence=i + 1, amount=Money.of(a, CURRENCY), milestone=share.name)
        for i, (a, share) in enumerate(zip(amounts, schedule, strict=True))
    ]
    records: list[Record] = []
    subjects: list[str] = []
    for i in range(n):
        subject = f"app_bench{run}{i:07d}"
        award_id = f"award_{subject}"
        payloads = (
            OpenAward(
                award_id=award_id,
                application_id=subject,
                firm_id="BENCH",
                budget_id=budget_id,
                total=Money.of(GRANT, CURRENCY),
                tranches=tranches,
            ),
            ReleaseTranche(
                award_id=award_id,
                application_id=subject,
                sequence=1,
                approved_by="bench@gaip.example",
            ),
        )
        for message_type, payload in zip(("award.open", "tranche.release"), payloads, strict=True):
            envelope = catalog.make_envelope(
                message_type,
                payload,
                subject=subject,
                actor=Actor.system("workflows"),
                producer="workflows",
                correlation_id=uuid.uuid4(),
            )
            records.append(
                Record(
                    topic=INPUT_TOPIC,
                    value=catalog.encode(envelope),
                    key=subject.encode(),
                    headers=tuple(envelope.headers()),
                )
            )
        subjects.append(subject)
    return records, subjects


async def fund_budget(database_url: str, n: int) -> str:
    """Migrate the service's database and fund one budget with every award's grant."""
    engine = create_engine(database_url)
    try:
        await upgrade_to_head(engine, MIGRATIONS)
        async with UnitOfWorkFactory(create_session_factory(engine))() as uow:
            budget_id = await commands.create_budget(
                uow,
                incentive_type="grant",
                fiscal_year=utcnow().year,
                amount=Money.of(GRANT * n, CURRENCY),
                origin=Origin(Actor.system("bench"), uuid.uuid4(), None),
                now=utcnow(),
            )
            await uow.commit()
    finally:
        await engine.dispose()
    return budget_id


async def check_ledger(database_url: str, n: int) -> None:
    """One paid payment per tranche; the ledger's balances agree with its transfers."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:

            async def scalar(sql: str) -> object:
                return (await conn.execute(sa.text(sql))).scalar_one()

            payments = await scalar("SELECT count(*) FROM payments")
            tranches = await scalar(
                "SELECT count(*) FROM (SELECT DISTINCT award_id, sequence FROM payments) AS t"
            )
            paid = await scalar("SELECT count(*) FROM payments WHERE state = 'paid'")
            off = await scalar(
                "SELECT count(*) FROM ledger_accounts a WHERE a.balance <> ("
                " coalesce((SELECT sum(amount) FROM ledger_transfers WHERE credit = a.id), 0)"
                " - coalesce((SELECT sum(amount) FROM ledger_transfers WHERE debit = a.id), 0))"
            )
            total = await scalar("SELECT coalesce(sum(balance), 0) FROM ledger_accounts")
            negative = await scalar(
                "SELECT count(*) FROM ledger_accounts WHERE balance < 0 AND kind <> 'funding'"
            )
    finally:
        await engine.dispose()
    if (payments, tranches, paid) != (n, n, n):
        raise BenchError(f"{PAYOUTS}: {payments} payments, {tranches} tranches, {paid} paid")
    if off or total != 0 or negative:
        raise BenchError(
            f"{PAYOUTS}: {off} balances off their transfers, sum {total}, {negative} negative"
        )


async def bench_payouts(
    bootstrap: str,
    database_url: str,
    workdir: Path,
    n: int,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> Result:
    """Signing tranches paid per second through the rail; exactly once, the ledger checked."""
    budget_id = await fund_budget(database_url, n)
    records, subjects = make_commands(n, budget_id)
    rail_port = free_port()
    rail_env = service_env(
        bootstrap,
        workdir / "rail",
        INCENTIVES_RAIL_PORT=str(rail_port),
        INCENTIVES_RAIL_HOST="127.0.0.1",
    )
    rail_url = f"http://127.0.0.1:{rail_port}"
    async with process(
        ["-m", "services.rail.main"],
        env=rail_env,
        log_path=workdir / "rail.log",
        health_url=f"{rail_url}/health",
    ):
        hop = await service_hop(
            "disbursement",
            bootstrap,
            database_url,
            workdir,
            records,
            subjects,
            OUTPUT_TOPIC,
            ("tranche.paid",),
            what=PAYOUTS,
            extra_env={
                "INCENTIVES_DISBURSEMENT_RAIL_URL": rail_url,
                "INCENTIVES_DISBURSEMENT_PAYOUT_INTERVAL_SECONDS": "0.05",
            },
            on_progress=on_progress,
        )
    wanted = set(subjects)
    paid = [
        r
        for r in await read_all(bootstrap, OUTPUT_TOPIC)
        if (r.key or b"").decode() in wanted and header(r, "type") == "tranche.paid"
    ]
    counted = assert_exactly_once(PAYOUTS, subjects, paid, lambda r: bytes(r.key).decode())
    await check_ledger(database_url, counted)
    return Result(
        PAYOUTS,
        counted,
        hop.seconds,
        baseline=RAW_HOP,
        target=HOP_TARGET,
        note=(
            f"disbursement service and simulated rail in their own processes, {hop.timing}; "
            "one tranche.paid and one paid payment per tranche, the ledger balanced, checked"
        ),
    )
