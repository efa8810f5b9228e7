"""Statements of the zones service: every read and write of its tables goes through here.

Nothing here commits: callers own the unit of work. Use of capacity changes only through
:func:`take` and :func:`shift`, each one conditional UPDATE of the counter row whose CHECK
constraint is the invariant; a hold changes state only through :func:`move`, an UPDATE
conditional on the state it leaves, so two racing transitions cannot both happen.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from contracts.v1.common import Sector, UnitType
from services.kit.db import UTCDateTime, insert_ignore
from services.zones.domain import Counter, HoldState, Zone
from services.zones.models import CAPACITY, HOLDS, REQUESTS, ZONES


async def _conn(session: AsyncSession) -> AsyncConnection:
    return await session.connection()


def _locking(statement: sa.Select[Any], session: AsyncSession) -> sa.Select[Any]:
    # SQLite has one writer at a time, so a row lock is both unsupported and unneeded there.
    if session.get_bind().dialect.name == "postgresql":
        return statement.with_for_update()
    return statement


# --- the catalogue -------------------------------------------------------------------------------


async def load_zones(session: AsyncSession) -> dict[str, Zone]:
    """Every zone with its current capacities, in id order (the default preference order)."""
    conn = await _conn(session)
    zones = (await conn.execute(sa.select(ZONES).order_by(ZONES.c.id))).all()
    counters = (await conn.execute(sa.select(CAPACITY))).all()
    capacity: dict[str, dict[UnitType, int]] = {}
    for row in counters:
        capacity.setdefault(row.zone_id, {})[UnitType(row.unit_type)] = row.capacity
    return {
        row.id: Zone(
            id=row.id,
            name=row.name,
            city=row.city,
            sectors=frozenset(Sector(s) for s in row.sectors),
            capacity=capacity.get(row.id, {}),
            active=row.active,
        )
        for row in zones
    }


async def add_zone(session: AsyncSession, zone: Zone, now: datetime, *, seed: bool) -> bool:
    """Insert ``zone`` and its counters; False when its id exists (``seed`` then ignores it)."""
    conn = await _conn(session)
    values = {
        "id": zone.id,
        "name": zone.name,
        "city": zone.city,
        "sectors": sorted(s.value for s in zone.sectors),
        "active": zone.active,
        "created_at": now,
        "updated_at": now,
    }
    statement = (
        insert_ignore(session.get_bind().dialect.name, ZONES, values)
        if seed
        else ZONES.insert().values(values)
    )
    if not seed and await zone_exists(session, zone.id):
        return False
    result = await conn.execute(statement)
    if seed and not result.rowcount:
        return False
    if zone.capacity:
        await conn.execute(
            CAPACITY.insert(),
            [
                {"zone_id": zone.id, "unit_type": u.value, "capacity": c, "held": 0, "allocated": 0}
                for u, c in zone.capacity.items()
            ],
        )
    return True


async def zone_exists(session: AsyncSession, zone_id: str) -> bool:
    conn = await _conn(session)
    found = await conn.execute(sa.select(ZONES.c.id).where(ZONES.c.id == zone_id))
    return found.first() is not None


async def set_active(session: AsyncSession, zone_id: str, active: bool, now: datetime) -> bool:
    """Activate or deactivate a zone; False when there is no such zone."""
    conn = await _conn(session)
    result = await conn.execute(
        ZONES.update().where(ZONES.c.id == zone_id).values(active=active, updated_at=now)
    )
    return bool(result.rowcount)


# --- the counters: the invariant ---------------------------------------------------------------


async def take(session: AsyncSession, zone_id: str, unit_type: UnitType, quantity: int) -> bool:
    """Hold ``quantity`` units if they are free: one conditional UPDATE; False if not free."""
    conn = await _conn(session)
    c = CAPACITY.c
    result = await conn.execute(
        CAPACITY.update()
        .where(
            c.zone_id == zone_id,
            c.unit_type == unit_type.value,
            c.held + c.allocated + quantity <= c.capacity,
        )
        .values(held=c.held + quantity)
    )
    return bool(result.rowcount)


# Built once, with bound parameters: a hold decides many messages a second, and building
# these expressions for each one cost more CPU than executing them.
_TAKE_AHEAD = (
    CAPACITY.update()
    .where(
        CAPACITY.c.zone_id == sa.bindparam("z"),
        CAPACITY.c.unit_type == sa.bindparam("u"),
        CAPACITY.c.held + CAPACITY.c.allocated + sa.bindparam("q") <= CAPACITY.c.capacity,
        ~sa.exists().where(
            HOLDS.c.zone_id == sa.bindparam("z"),
            HOLDS.c.unit_type == sa.bindparam("u"),
            HOLDS.c.state == HoldState.WAITLISTED.value,
            HOLDS.c.priority >= sa.bindparam("p"),
        ),
    )
    .values(held=CAPACITY.c.held + sa.bindparam("q"))
)
_SHIFT = (
    CAPACITY.update()
    .where(CAPACITY.c.zone_id == sa.bindparam("z"), CAPACITY.c.unit_type == sa.bindparam("u"))
    .values(
        held=CAPACITY.c.held + sa.bindparam("dh"),
        allocated=CAPACITY.c.allocated + sa.bindparam("da"),
    )
)


async def take_ahead_of_waitlist(
    session: AsyncSession, zone_id: str, unit_type: UnitType, quantity: int, priority: int
) -> bool:
    """Hold ``quantity`` units if they are free and nobody waits for them at ``priority`` or
    above (:func:`~services.zones.domain.may_take_before`): one conditional UPDATE."""
    conn = await _conn(session)
    result = await conn.execute(
        _TAKE_AHEAD, {"z": zone_id, "u": unit_type.value, "q": quantity, "p": priority}
    )
    return bool(result.rowcount)


async def lock_counters(
    session: AsyncSession, unit_types: Iterable[UnitType]
) -> dict[tuple[str, UnitType], Counter]:
    """The counter rows of ``unit_types`` in every zone, locked until the transaction ends
    (in key order, so concurrent batches lock alike; SQLite has one writer and no row locks)."""
    conn = await _conn(session)
    c = CAPACITY.c
    statement = (
        sa.select(c.zone_id, c.unit_type, c.capacity, c.held, c.allocated)
        .where(c.unit_type.in_(sorted(u.value for u in unit_types)))
        .order_by(c.zone_id, c.unit_type)
    )
    rows = await conn.execute(_locking(statement, session))
    return {
        (row.zone_id, UnitType(row.unit_type)): Counter(row.capacity, row.held, row.allocated)
        for row in rows
    }


async def waiting_by_priority(
    session: AsyncSession, unit_types: Iterable[UnitType]
) -> dict[tuple[str, UnitType], dict[int, int]]:
    """How many records wait in each zone's waitlist of ``unit_types``, by priority (one
    grouped count). With the counters of those unit types locked, a waitlist changes only in
    this transaction: every change of one also changes, or locks, its counter."""
    conn = await _conn(session)
    h = HOLDS.c
    rows = await conn.execute(
        sa.select(h.zone_id, h.unit_type, h.priority, sa.func.count())
        .where(
            h.state == HoldState.WAITLISTED.value,
            h.unit_type.in_(sorted(u.value for u in unit_types)),
        )
        .group_by(h.zone_id, h.unit_type, h.priority)
    )
    waiting: dict[tuple[str, UnitType], dict[int, int]] = {}
    for zone_id, unit_type, priority, count in rows:
        waiting.setdefault((zone_id, UnitType(unit_type)), {})[priority] = count
    return waiting


async def write_decided(
    session: AsyncSession,
    shifts: Sequence[tuple[str, UnitType, int, int]],
    holds: Sequence[dict[str, Any]],
) -> None:
    """Write what a batch decided in memory: the counters' changes (zone, unit type, held,
    allocated) and the new records (rows of :func:`hold_row`), one executemany each. The
    counters' CHECK constraint still refuses a capacity exceeded or a negative count."""
    conn = await _conn(session)
    changes = [
        {"z": zone_id, "u": unit_type.value, "dh": held, "da": allocated}
        for zone_id, unit_type, held, allocated in shifts
        if held or allocated
    ]
    if changes:
        await conn.execute(_SHIFT, changes)
    if holds:
        await conn.execute(HOLDS.insert(), list(holds))


async def shift(
    session: AsyncSession, zone_id: str, unit_type: UnitType, held: int, allocated: int
) -> None:
    """Change the counters by (``held``, ``allocated``); the CHECK refuses a negative result."""
    if held == 0 and allocated == 0:
        return
    conn = await _conn(session)
    result = await conn.execute(
        _SHIFT, {"z": zone_id, "u": unit_type.value, "dh": held, "da": allocated}
    )
    if result.rowcount != 1:
        raise LookupError(f"no counter for {zone_id}/{unit_type}")


@dataclass(frozen=True)
class Resized:
    """The outcome of a resize: done, or the use that stopped it (None: no such zone)."""

    done: bool
    held: int = 0
    allocated: int = 0
    exists: bool = True


async def resize(
    session: AsyncSession, zone_id: str, unit_type: UnitType, capacity: int
) -> Resized:
    """Set a capacity, unless what is held and allocated exceeds it (one conditional UPDATE)."""
    conn = await _conn(session)
    c = CAPACITY.c
    result = await conn.execute(
        CAPACITY.update()
        .where(
            c.zone_id == zone_id,
            c.unit_type == unit_type.value,
            c.held + c.allocated <= capacity,
        )
        .values(capacity=capacity)
    )
    if result.rowcount:
        return Resized(done=True)
    row = (
        await conn.execute(
            sa.select(c.held, c.allocated).where(
                c.zone_id == zone_id, c.unit_type == unit_type.value
            )
        )
    ).first()
    if row is not None:
        return Resized(done=False, held=row.held, allocated=row.allocated)
    if not await zone_exists(session, zone_id):
        return Resized(done=False, exists=False)
    await conn.execute(  # a unit type the zone did not offer yet
        CAPACITY.insert(),
        {
            "zone_id": zone_id,
            "unit_type": unit_type.value,
            "capacity": capacity,
            "held": 0,
            "allocated": 0,
        },
    )
    return Resized(done=True)


async def free_units(session: AsyncSession, zone_id: str, unit_type: UnitType) -> int:
    conn = await _conn(session)
    c = CAPACITY.c
    row = (
        await conn.execute(
            sa.select(c.capacity - c.held - c.allocated).where(
                c.zone_id == zone_id, c.unit_type == unit_type.value
            )
        )
    ).first()
    return int(row[0]) if row is not None else 0


# --- holds ---------------------------------------------------------------------------------------


async def claim_request(
    session: AsyncSession, allocation_id: str, application_id: str, now: datetime
) -> bool:
    """Record that ``allocation_id`` is being answered; False when it was answered already.

    Insert-or-ignore: a concurrent duplicate waits on the key until this transaction ends,
    then sees the conflict.
    """
    return allocation_id in await claim_requests(session, [(allocation_id, application_id)], now)


async def claim_requests(
    session: AsyncSession, claims: Sequence[tuple[str, str]], now: datetime
) -> set[str]:
    """:func:`claim_request` for many (allocation id, application id) at once: one statement;
    returns the allocation ids claimed now (the others were answered already)."""
    conn = await _conn(session)
    claimed = dict(claims)
    if not claimed:
        return set()
    if conn.dialect.name == "postgresql":
        result = await conn.execute(
            _CLAIM_MANY_PG,
            {
                "allocation_ids": list(claimed),
                "application_ids": list(claimed.values()),
                "created_at": now,
            },
        )
        return set(result.scalars())
    rows = [
        {
            "allocation_id": allocation_id,
            "application_id": application_id,
            "outcome": "placed",
            "reason_code": None,
            "created_at": now,
        }
        for allocation_id, application_id in claimed.items()
    ]
    return set((await conn.execute(_CLAIM_MANY_SQLITE, rows)).scalars())


#: The claims of a batch in one statement of one constant text, whatever the batch size, so
#: PostgreSQL prepares it once (multi-row VALUES would be a new statement, compiled and
#: prepared, for every size).
_CLAIM_MANY_PG = sa.text(
    "INSERT INTO zone_requests (allocation_id, application_id, outcome, reason_code, created_at) "
    "SELECT c.allocation_id, c.application_id, 'placed', NULL, :created_at "
    "FROM unnest(CAST(:allocation_ids AS VARCHAR[]), CAST(:application_ids AS VARCHAR[])) "
    "AS c(allocation_id, application_id) "
    "ON CONFLICT DO NOTHING RETURNING allocation_id"
).bindparams(sa.bindparam("created_at", type_=UTCDateTime))
#: SQLite: an executemany with RETURNING, which SQLAlchemy pages into multi-row VALUES of one
#: cached statement.
_CLAIM_MANY_SQLITE = insert_ignore("sqlite", REQUESTS).returning(REQUESTS.c.allocation_id)


async def mark_refused(session: AsyncSession, allocation_id: str, reason_code: str) -> None:
    conn = await _conn(session)
    await conn.execute(
        REQUESTS.update()
        .where(REQUESTS.c.allocation_id == allocation_id)
        .values(outcome="refused", reason_code=reason_code)
    )


async def holds_of(session: AsyncSession, allocation_id: str, *, lock: bool = False) -> list[Any]:
    """The records of one allocation id (one per unit type), oldest first."""
    conn = await _conn(session)
    statement = sa.select(HOLDS).where(HOLDS.c.allocation_id == allocation_id)
    if lock:
        statement = _locking(statement, session)
    return list((await conn.execute(statement.order_by(HOLDS.c.id))).all())


_INSERT_HOLD = HOLDS.insert().returning(HOLDS.c.id)


def hold_row(
    *,
    allocation_id: str,
    unit_type: UnitType,
    application_id: str,
    firm_id: str,
    zone_id: str,
    quantity: int,
    state: HoldState,
    priority: int,
    hold_seconds: int,
    expires_at: datetime | None,
    correlation_id: uuid.UUID,
    now: datetime,
) -> dict[str, Any]:
    """The columns of a new record (its id is the database's)."""
    return {
        "allocation_id": allocation_id,
        "unit_type": unit_type.value,
        "application_id": application_id,
        "firm_id": firm_id,
        "zone_id": zone_id,
        "quantity": quantity,
        "state": state.value,
        "priority": priority,
        "hold_seconds": hold_seconds,
        "expires_at": expires_at,
        "correlation_id": correlation_id,
        "created_at": now,
        "updated_at": now,
    }


async def insert_hold(session: AsyncSession, row: dict[str, Any]) -> int:
    """Insert one record (a :func:`hold_row`), returning its id; the unique (allocation id,
    unit type) refuses a second one."""
    conn = await _conn(session)
    result = await conn.execute(_INSERT_HOLD, row)
    return int(result.scalar_one())


async def move(
    session: AsyncSession,
    hold_id: int,
    current: HoldState,
    target: HoldState,
    now: datetime,
    *,
    expires_at: datetime | None = None,
) -> bool:
    """Move a record from ``current`` to ``target``; False if it was no longer ``current``."""
    conn = await _conn(session)
    result = await conn.execute(
        HOLDS.update()
        .where(HOLDS.c.id == hold_id, HOLDS.c.state == current.value)
        .values(state=target.value, updated_at=now, expires_at=expires_at)
    )
    return bool(result.rowcount)


async def waitlist(
    session: AsyncSession, zone_id: str, unit_type: UnitType, *, limit: int = 100
) -> list[Any]:
    """The zone's waitlist for ``unit_type``, head first (priority, then arrival)."""
    conn = await _conn(session)
    h = HOLDS.c
    statement = (
        sa.select(HOLDS)
        .where(
            h.zone_id == zone_id,
            h.unit_type == unit_type.value,
            h.state == HoldState.WAITLISTED.value,
        )
        .order_by(h.priority.desc(), h.id)
        .limit(limit)
    )
    return list((await conn.execute(_locking(statement, session))).all())


_AHEAD = (
    sa.select(sa.func.count())
    .select_from(HOLDS)
    .where(
        HOLDS.c.zone_id == sa.bindparam("z"),
        HOLDS.c.unit_type == sa.bindparam("u"),
        HOLDS.c.state == HoldState.WAITLISTED.value,
        sa.or_(
            HOLDS.c.priority > sa.bindparam("p"),
            sa.and_(HOLDS.c.priority == sa.bindparam("p"), HOLDS.c.id < sa.bindparam("id")),
        ),
    )
)


async def position(
    session: AsyncSession, hold_id: int, zone_id: str, unit_type: UnitType, priority: int
) -> int:
    """A waitlisted record's position in its zone's waitlist, 1 = next (one count)."""
    conn = await _conn(session)
    ahead = await conn.execute(
        _AHEAD, {"z": zone_id, "u": unit_type.value, "p": priority, "id": hold_id}
    )
    return int(ahead.scalar_one()) + 1


async def due(session: AsyncSession, now: datetime, *, limit: int) -> list[Any]:
    """Holds whose expiry has come, oldest first."""
    conn = await _conn(session)
    h = HOLDS.c
    statement = (
        sa.select(HOLDS)
        .where(h.state == HoldState.HELD.value, h.expires_at <= now)
        .order_by(h.expires_at, h.id)
        .limit(limit)
    )
    return list((await conn.execute(statement)).all())


# --- occupancy -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Occupancy:
    """Use of one unit type in one zone."""

    zone_id: str
    unit_type: UnitType
    capacity: int
    held: int
    allocated: int
    waitlist: int

    @property
    def free(self) -> int:
        return self.capacity - self.held - self.allocated


async def occupancy(
    session: AsyncSession, zone_ids: Iterable[str] | None = None
) -> list[Occupancy]:
    """Capacity, held, allocated and waitlist length per zone and unit type."""
    conn = await _conn(session)
    c, h = CAPACITY.c, HOLDS.c
    waiting = (
        sa.select(sa.func.count())
        .select_from(HOLDS)
        .where(
            h.zone_id == c.zone_id,
            h.unit_type == c.unit_type,
            h.state == HoldState.WAITLISTED.value,
        )
        .scalar_subquery()
    )
    statement = sa.select(c.zone_id, c.unit_type, c.capacity, c.held, c.allocated, waiting)
    if zone_ids is not None:
        statement = statement.where(c.zone_id.in_(list(zone_ids)))
    rows = await conn.execute(statement.order_by(c.zone_id, c.unit_type))
    return [
        Occupancy(r[0], UnitType(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in rows
    ]


def units_of(rows: Sequence[Any]) -> list[tuple[str, UnitType, int]]:
    """(zone, unit type, quantity) of records, for events."""
    return [(r.zone_id, UnitType(r.unit_type), int(r.quantity)) for r in rows]
