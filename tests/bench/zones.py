"""The zones service end to end through the broker: allocation requests decided per second.

``n`` ``zone.hold`` commands (one allocation each: one office seat in any zone, waitlist
allowed) are produced to ``zones.commands`` first; then the zones service starts in a process
of its own (uvicorn, fresh PostgreSQL database seeded from the shipped catalogue, a unique
consumer group prefix) and decides them, publishing ``zone.held`` or ``zone.waitlisted`` (or
``zone.refused``) through its outbox relay. A consumer in this process counts the outcomes on
``zones.events``; afterwards every allocation must have exactly one outcome, and the database
must agree: ``held + allocated <= capacity`` for every zone and unit type, the held counters
equal to the held units, and one answer per allocation.

The clock runs from the first outcomes seen on the topic (after startup, migrations and the
group join) to the last; the rate counts only the outcomes after that first fetch.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from contracts import catalog
from contracts.envelope import Actor
from contracts.topics import get_topic
from contracts.v1.common import UnitType
from contracts.v1.zones import HoldZoneSpace, ZoneSpaceRequest
from services.kit.db import create_engine
from services.kit.messaging import Record
from tests.bench.common import BenchError, Result, assert_exactly_once, header, read_all
from tests.bench.kit_hop import HOP_TARGET
from tests.bench.process import ServiceHop, service_hop
from tests.bench.raw import RAW_HOP

ZONES = "zone allocations"
INPUT_TOPIC = get_topic("zones.commands").name
OUTPUT_TOPIC = get_topic("zones.events").name
#: The outcome of a hold request: exactly one per allocation.
OUTCOMES = frozenset({"zone.held", "zone.waitlisted", "zone.refused"})


def make_holds(n: int) -> tuple[list[Record], list[str]]:
    """``n`` encoded ``zone.hold`` commands, one allocation (and application) each."""
    run = uuid.uuid4().hex[:6]
    base_payload = HoldZoneSpace(
        allocation_id="alloc_bench",
        application_id="app_bench",
        firm_id="BENCH",
        sector=None,
        requests=[ZoneSpaceRequest(unit_type=UnitType.OFFICE_SEAT, quantity=1)],
        allow_waitlist=True,
        hold_seconds=3600,
        priority=0,
    )
    base = catalog.make_envelope(
        "zone.hold",
        base_payload,
        subject="app_bench",
        actor=Actor.system("workflows"),
        producer="workflows",
        correlation_id=uuid.uuid4(),
    )
    records: list[Record] = []
    subjects: list[str] = []
    for i in range(n):
        subject = f"app_bench{run}{i:07d}"
        envelope = base.model_copy(
            update={
                "event_id": uuid.uuid4(),
                "correlation_id": uuid.uuid4(),
                "subject": subject,
                "payload": base_payload.model_copy(
                    update={"application_id": subject, "allocation_id": f"alloc_{subject}"}
                ),
            }
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


async def check_zone_invariants(database_url: str, allocations: int) -> str:
    """The database agrees with the events: capacity kept, counters equal to the holds."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            over = (
                await conn.execute(
                    sa.text("SELECT count(*) FROM zone_capacity WHERE held + allocated > capacity")
                )
            ).scalar_one()
            mismatched = (
                await conn.execute(
                    sa.text(
                        "SELECT count(*) FROM zone_capacity c WHERE c.held <> ("
                        " SELECT coalesce(sum(h.quantity), 0) FROM zone_holds h"
                        " WHERE h.zone_id = c.zone_id AND h.unit_type = c.unit_type"
                        " AND h.state = 'held')"
                    )
                )
            ).scalar_one()
            decided = (
                await conn.execute(sa.text("SELECT count(*) FROM zone_requests"))
            ).scalar_one()
            held = (
                await conn.execute(sa.text("SELECT count(*) FROM zone_holds WHERE state = 'held'"))
            ).scalar_one()
    finally:
        await engine.dispose()
    if over or mismatched:
        raise BenchError(
            f"{ZONES}: {over} counters over capacity, {mismatched} held counters off the holds"
        )
    if decided != allocations:
        raise BenchError(f"{ZONES}: {decided} allocations in the database, {allocations} sent")
    return f"{held} held, {allocations - held} waitlisted"


async def bench_zones(
    bootstrap: str,
    database_url: str,
    workdir: Path,
    n: int,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> Result:
    """Allocation requests decided per second by the zones service; exactly once, invariants."""
    records, subjects = make_holds(n)
    hop: ServiceHop = await service_hop(
        "zones",
        bootstrap,
        database_url,
        workdir,
        records,
        subjects,
        OUTPUT_TOPIC,
        OUTCOMES,
        what=ZONES,
        on_progress=on_progress,
    )
    wanted = set(subjects)
    outcomes = [
        r
        for r in await read_all(bootstrap, OUTPUT_TOPIC)
        if (r.key or b"").decode() in wanted and header(r, "type") in OUTCOMES
    ]
    decided = assert_exactly_once(ZONES, subjects, outcomes, lambda r: bytes(r.key).decode())
    state = await check_zone_invariants(database_url, decided)
    return Result(
        ZONES,
        decided,
        hop.seconds,
        baseline=RAW_HOP,
        target=HOP_TARGET,
        note=(
            f"zones service in its own process, {hop.timing}; one outcome per allocation and "
            f"held + allocated <= capacity checked ({state})"
        ),
    )
