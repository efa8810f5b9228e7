"""Use cases of the zones service: each runs inside one unit of work and stages its events.

Message handlers, the expiry sweep and the admin routes all call these; none of them commits.
The rules come from :mod:`services.zones.domain`, the statements from
:mod:`services.zones.store`. A command that cannot be applied raises a
:class:`~services.kit.errors.FinalError` before anything is staged, and the caller's rollback
leaves no trace of it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from contracts.envelope import Actor
from contracts.v1.common import UnitType, ZoneUnits
from contracts.v1.zones import (
    AllocateZoneSpace,
    ConfirmZoneHold,
    HoldZoneSpace,
    ReleaseZoneSpace,
    WaitlistEntry,
    ZoneAllocated,
    ZoneHeld,
    ZoneHoldExpired,
    ZoneRefused,
    ZoneReleased,
    ZoneWaitlisted,
)
from services.kit.errors import BusinessRefusal, Conflict, NotFound
from services.kit.events import Origin, stage_event
from services.kit.uow import UnitOfWork
from services.zones import store
from services.zones.domain import (
    UNIT_LABELS,
    Counter,
    HoldState,
    Refusal,
    SpaceRequest,
    Zone,
    can_move,
    candidates,
    counter_change,
    expiry,
    may_take_before,
    no_capacity,
    waitlist_position,
    waking,
)

PRODUCER = "zones"
#: The actor of what the service does on its own (expiry).
SYSTEM = Actor.system("zones")


def _stage(uow: UnitOfWork, payload: BaseModel, **where: Any) -> None:
    stage_event(uow, payload, producer=PRODUCER, **where)


def _units(rows: Iterable[Any]) -> list[ZoneUnits]:
    return [ZoneUnits(zone_id=z, unit_type=u, quantity=q) for z, u, q in store.units_of(list(rows))]


# --- the counters of a batch ------------------------------------------------------------------

#: ``uow.memo`` key of the counter rows a batch of hold commands locked (:func:`preload`).
COUNTERS_MEMO = "zones.counters"
#: ``uow.memo`` key of the batch's allocation ids and those it claimed (:func:`preload`).
CLAIMS_MEMO = "zones.claims"
#: ``uow.memo`` key of what the batch decided in memory and has not written yet (:func:`preload`).
DECIDED_MEMO = "zones.decided"


@dataclass
class _Claims:
    asked: set[str]
    claimed: set[str]


@dataclass
class _Decided:
    """A batch's decisions on the counters it locked, written at commit (:func:`write_decided`)
    or before any statement that reads what they change."""

    #: Per (zone, unit type) of the locked counters: how many wait, by priority.
    waiting: dict[tuple[str, UnitType], dict[int, int]]
    #: Per counter: the change of (held, allocated) not written yet.
    shifts: dict[tuple[str, UnitType], list[int]] = field(default_factory=dict)
    #: New records not inserted yet (:func:`store.hold_row`).
    holds: list[dict[str, Any]] = field(default_factory=list)


async def preload(
    uow: UnitOfWork, batch: Sequence[HoldZoneSpace | AllocateZoneSpace], now: datetime
) -> None:
    """Claim the allocation ids of ``batch``, lock the counter rows of every unit type it asks
    for and count their waitlists, in three statements, keeping all in the memo.

    The claims are :func:`store.claim_request` for the whole batch: a repeated allocation id
    finds its claim, a concurrent one waits on it. With the counters locked until the commit,
    nothing else changes them or their waitlists, so the batch's holds are decided in memory,
    by the same rules (``domain.may_take_before``, ``waitlist_position``), and written once at
    commit (:func:`write_decided`), where the counters' CHECK constraint still decides. The memo
    stays exact because every counter change of this unit of work goes through :func:`_shift`
    or :func:`_took`, and every change of a waitlist through :func:`_left_waitlist` or the
    holds' own path; a statement that reads what the batch changed writes it first.
    """
    if not batch:
        return
    asked = [(command.allocation_id, command.application_id) for command in batch]
    claimed = await store.claim_requests(uow.session, asked, now)
    uow.memo[CLAIMS_MEMO] = _Claims({a for a, _ in asked}, claimed)
    unit_types = {r.unit_type for command in batch for r in command.requests}
    if unit_types:
        uow.memo[COUNTERS_MEMO] = await store.lock_counters(uow.session, unit_types)
        waiting = await store.waiting_by_priority(uow.session, unit_types)
        if DECIDED_MEMO not in uow.memo:
            uow.before_commit(lambda: write_decided(uow))
        uow.memo[DECIDED_MEMO] = _Decided(waiting)


async def write_decided(uow: UnitOfWork) -> None:
    """Write what the batch decided in memory and has not written yet (nothing otherwise)."""
    decided: _Decided | None = uow.memo.get(DECIDED_MEMO)
    if decided is None or not (decided.shifts or decided.holds):
        return
    shifts = [(z, u, dh, da) for (z, u), (dh, da) in sorted(decided.shifts.items())]
    holds = list(decided.holds)
    decided.shifts.clear()
    decided.holds.clear()
    await store.write_decided(uow.session, shifts, holds)


def _decided(uow: UnitOfWork, zone_id: str, unit_type: UnitType) -> _Decided | None:
    """The batch's in-memory decisions, if this counter is one the batch locked."""
    decided: _Decided | None = uow.memo.get(DECIDED_MEMO)
    if decided is None or _counter(uow, zone_id, unit_type) is None:
        return None
    return decided


def _left_waitlist(uow: UnitOfWork, zone_id: str, unit_type: UnitType, priority: int) -> None:
    """Tell the batch's waitlist counts (if it counted this one) that an entry left it."""
    decided = _decided(uow, zone_id, unit_type)
    if decided is not None:
        waiting = decided.waiting.get((zone_id, unit_type), {})
        waiting[priority] = waiting.get(priority, 0) - 1


async def _claim(
    uow: UnitOfWork, command: HoldZoneSpace | AllocateZoneSpace, now: datetime
) -> bool:
    """Whether this command answers its allocation id (False: it was answered already)."""
    claims: _Claims | None = uow.memo.get(CLAIMS_MEMO)
    if claims is not None and command.allocation_id in claims.asked:
        if command.allocation_id not in claims.claimed:
            return False
        claims.claimed.discard(command.allocation_id)  # a repeat later in the batch: answered
        return True
    return await store.claim_request(
        uow.session, command.allocation_id, command.application_id, now
    )


def _counter(uow: UnitOfWork, zone_id: str, unit_type: UnitType) -> Counter | None:
    counters: dict[tuple[str, UnitType], Counter] | None = uow.memo.get(COUNTERS_MEMO)
    return counters.get((zone_id, unit_type)) if counters is not None else None


def _took(uow: UnitOfWork, zone_id: str, unit_type: UnitType, held: int, allocated: int) -> None:
    """Tell the batch's counters (if it locked this one) what the database just changed."""
    counter = _counter(uow, zone_id, unit_type)
    if counter is not None:
        counter.held += held
        counter.allocated += allocated


async def _shift(
    uow: UnitOfWork, zone_id: str, unit_type: UnitType, held: int, allocated: int
) -> None:
    decided = _decided(uow, zone_id, unit_type)
    if decided is None:
        await store.shift(uow.session, zone_id, unit_type, held, allocated)
    else:
        change = decided.shifts.setdefault((zone_id, unit_type), [0, 0])
        change[0] += held
        change[1] += allocated
    _took(uow, zone_id, unit_type, held, allocated)


async def _count(
    uow: UnitOfWork,
    zone_id: str,
    unit_type: UnitType,
    current: HoldState | None,
    target: HoldState,
    quantity: int,
) -> None:
    """Change the counters as a record of ``quantity`` units moves ``current`` → ``target``."""
    await _shift(uow, zone_id, unit_type, *counter_change(current, target, quantity))


# --- holds and allocations ---------------------------------------------------------------------


@dataclass
class _Placed:
    request: SpaceRequest
    zone_id: str
    state: HoldState


async def hold(
    uow: UnitOfWork,
    command: HoldZoneSpace | AllocateZoneSpace,
    origin: Origin,
    now: datetime,
    *,
    default_hold_seconds: int,
) -> None:
    """Place a command's requests: held (or allocated, for ``zone.allocate``), waitlisted, or
    refused as a whole. Repeating the allocation id changes nothing."""
    session = uow.session
    correlation_id = origin.correlation_id or uuid.uuid4()
    confirm_now = isinstance(command, AllocateZoneSpace)
    sector = command.sector if isinstance(command, HoldZoneSpace) else None
    priority = command.priority if isinstance(command, HoldZoneSpace) else 0
    hold_seconds = (
        command.hold_seconds if isinstance(command, HoldZoneSpace) else None
    ) or default_hold_seconds
    requests = [
        SpaceRequest(r.unit_type, r.quantity, tuple(r.preferred_zones)) for r in command.requests
    ]
    if len({r.unit_type for r in requests}) != len(requests):
        raise BusinessRefusal("a command asks for each unit type once")
    if not await _claim(uow, command, now):
        return  # the same allocation id again: it was answered when it was first applied

    zones = await catalogue(uow)
    placed: list[_Placed] = []
    refusal: Refusal | None = None
    for request in requests:
        choice = candidates(request, sector, zones)
        if isinstance(choice, Refusal):
            refusal = choice
            break
        taken = await _take_first(uow, request, choice, priority)
        if taken is not None:
            placed.append(_Placed(request, taken, HoldState.HELD))
        elif command.allow_waitlist:
            placed.append(_Placed(request, choice[0], HoldState.WAITLISTED))
        else:
            refusal = no_capacity(request)
            break
    if refusal is not None:
        for done in placed:  # all or nothing: give back what this command took
            if done.state is HoldState.HELD:
                await _shift(uow, done.zone_id, done.request.unit_type, -done.request.quantity, 0)
        await store.mark_refused(session, command.allocation_id, refusal.code.value)
        _stage(
            uow,
            ZoneRefused(
                allocation_id=command.allocation_id,
                application_id=command.application_id,
                reason_code=refusal.code,
                reason=refusal.reason,
                refused_at=now,
            ),
            subject=command.application_id,
            origin=origin,
            correlation_id=correlation_id,
            now=now,
        )
        return

    held_rows: list[tuple[str, UnitType, int]] = []
    waiting: list[WaitlistEntry] = []
    for done in placed:
        state = done.state
        if state is HoldState.HELD and confirm_now:
            await _count(
                uow, done.zone_id, done.request.unit_type, HoldState.HELD,
                HoldState.ALLOCATED, done.request.quantity,
            )  # fmt: skip
            state = HoldState.ALLOCATED
        row = store.hold_row(
            allocation_id=command.allocation_id,
            unit_type=done.request.unit_type,
            application_id=command.application_id,
            firm_id=command.firm_id,
            zone_id=done.zone_id,
            quantity=done.request.quantity,
            state=state,
            priority=priority,
            hold_seconds=hold_seconds,
            expires_at=expiry(now, hold_seconds) if state is HoldState.HELD else None,
            correlation_id=correlation_id,
            now=now,
        )
        if state is HoldState.WAITLISTED:
            waiting.append(
                WaitlistEntry(
                    zone_id=done.zone_id,
                    unit_type=done.request.unit_type,
                    quantity=done.request.quantity,
                    position=await _insert_waiting(uow, row, done, priority),
                )
            )
        else:
            await _insert(uow, row, done.zone_id, done.request.unit_type)
            held_rows.append((done.zone_id, done.request.unit_type, done.request.quantity))

    units = [ZoneUnits(zone_id=z, unit_type=u, quantity=q) for z, u, q in held_rows]
    common = {
        "subject": command.application_id,
        "origin": origin,
        "correlation_id": correlation_id,
        "now": now,
    }
    if units and confirm_now:
        _stage(
            uow,
            ZoneAllocated(
                allocation_id=command.allocation_id,
                application_id=command.application_id,
                units=units,
                complete=not waiting,
                allocated_at=now,
            ),
            **common,
        )
    elif units:
        _stage(
            uow,
            ZoneHeld(
                allocation_id=command.allocation_id,
                application_id=command.application_id,
                units=units,
                expires_at=expiry(now, hold_seconds),
                from_waitlist=False,
                held_at=now,
            ),
            **common,
        )
    if waiting:
        _stage(
            uow,
            ZoneWaitlisted(
                allocation_id=command.allocation_id,
                application_id=command.application_id,
                entries=waiting,
                waitlisted_at=now,
            ),
            **common,
        )


async def _insert(uow: UnitOfWork, row: dict[str, Any], zone_id: str, unit_type: UnitType) -> int:
    """Insert a new record, or add it to the batch's (then its id is not known: 0)."""
    decided = _decided(uow, zone_id, unit_type)
    if decided is not None:
        decided.holds.append(row)
        return 0
    await write_decided(uow)
    return await store.insert_hold(uow.session, row)


async def _insert_waiting(
    uow: UnitOfWork, row: dict[str, Any], done: _Placed, priority: int
) -> int:
    """Insert a waitlisted record; returns its position in the zone's waitlist."""
    zone_id, unit_type = done.zone_id, done.request.unit_type
    decided = _decided(uow, zone_id, unit_type)
    if decided is not None:
        waiting = decided.waiting.setdefault((zone_id, unit_type), {})
        position = waitlist_position(priority, waiting)
        waiting[priority] = waiting.get(priority, 0) + 1
        decided.holds.append(row)
        return position
    hold_id = await _insert(uow, row, zone_id, unit_type)
    return await store.position(uow.session, hold_id, zone_id, unit_type, priority)


async def _take_first(
    uow: UnitOfWork, request: SpaceRequest, zone_ids: Sequence[str], priority: int
) -> str | None:
    """The first candidate zone that gives the units (nobody ahead waiting), or None.

    On a counter the batch locked, decided in memory (``domain.may_take_before`` on the
    waitlist's counts); otherwise one conditional UPDATE per zone tried, which carries the
    same rule, past the zones the batch's locked counters show without room."""
    unit_type, quantity = request.unit_type, request.quantity
    for zone_id in zone_ids:
        counter = _counter(uow, zone_id, unit_type)
        if counter is not None and counter.free < quantity:
            continue
        decided = _decided(uow, zone_id, unit_type)
        if decided is not None:
            waiting = decided.waiting.get((zone_id, unit_type), {})
            if not may_take_before(priority, (p for p, n in waiting.items() if n > 0)):
                continue
            await _shift(uow, zone_id, unit_type, quantity, 0)
            return zone_id
        await write_decided(uow)
        if await store.take_ahead_of_waitlist(uow.session, zone_id, unit_type, quantity, priority):
            _took(uow, zone_id, unit_type, quantity, 0)
            return zone_id
    return None


#: ``uow.memo`` key of the zone catalogue a batch of commands reads once.
CATALOGUE_MEMO = "zones.catalogue"


async def catalogue(uow: UnitOfWork) -> dict[str, Zone]:
    """The zones with their capacities: read once per unit of work (a consumer batch shares it;
    capacities change only through the admin API, in transactions of their own)."""
    zones: dict[str, Zone] | None = uow.memo.get(CATALOGUE_MEMO)
    if zones is None:
        zones = await store.load_zones(uow.session)
        uow.memo[CATALOGUE_MEMO] = zones
    return zones


async def confirm(uow: UnitOfWork, command: ConfirmZoneHold, origin: Origin, now: datetime) -> None:
    """Turn the allocation's live holds into allocations; refused when none is live."""
    session = uow.session
    await write_decided(uow)
    rows = await store.holds_of(session, command.allocation_id, lock=True)
    live = [
        r
        for r in rows
        if r.state == HoldState.HELD.value and r.expires_at is not None and r.expires_at > now
    ]
    if not live:
        if rows and all(r.state == HoldState.ALLOCATED.value for r in rows):
            return  # confirmed already
        states = ", ".join(f"{r.unit_type} {r.state}" for r in rows) or "nothing held"
        raise BusinessRefusal(f"allocation {command.allocation_id} has no live hold ({states})")
    for row in live:
        if not await store.move(session, row.id, HoldState.HELD, HoldState.ALLOCATED, now):
            raise BusinessRefusal(f"allocation {command.allocation_id} changed while confirming")
        await _count(uow, row.zone_id, UnitType(row.unit_type), HoldState.HELD,
                     HoldState.ALLOCATED, row.quantity)  # fmt: skip
    waiting = any(r.state == HoldState.WAITLISTED.value for r in rows)
    _stage(
        uow,
        ZoneAllocated(
            allocation_id=command.allocation_id,
            application_id=command.application_id,
            units=_units(live),
            complete=not waiting and len(live) == len(rows),
            allocated_at=now,
        ),
        subject=command.application_id,
        origin=origin,
        correlation_id=origin.correlation_id or live[0].correlation_id,
        now=now,
    )


async def release(
    uow: UnitOfWork, command: ReleaseZoneSpace, origin: Origin, now: datetime
) -> None:
    """Give back everything of the allocation (a compensation) and wake the freed waitlists."""
    session = uow.session
    await write_decided(uow)
    rows = await store.holds_of(session, command.allocation_id, lock=True)
    freed: list[Any] = []
    for row in rows:
        state = HoldState(row.state)
        if not can_move(state, HoldState.RELEASED):
            continue
        if not await store.move(session, row.id, state, HoldState.RELEASED, now):
            raise BusinessRefusal(f"allocation {command.allocation_id} changed while releasing")
        await _count(uow, row.zone_id, UnitType(row.unit_type), state,
                     HoldState.RELEASED, row.quantity)  # fmt: skip
        if state is HoldState.WAITLISTED:
            _left_waitlist(uow, row.zone_id, UnitType(row.unit_type), row.priority)
        else:
            freed.append(row)
    correlation_id = origin.correlation_id or (rows[0].correlation_id if rows else uuid.uuid4())
    _stage(
        uow,
        ZoneReleased(
            allocation_id=command.allocation_id,
            application_id=command.application_id,
            units=_units(freed),
            reason_code=command.reason_code,
            reason=command.reason,
            released_at=now,
        ),
        subject=command.application_id,
        origin=origin,
        correlation_id=correlation_id,
        now=now,
    )
    await wake(uow, {(r.zone_id, UnitType(r.unit_type)) for r in freed}, origin, now)


async def expire_due(uow: UnitOfWork, now: datetime, *, limit: int = 200) -> int:
    """Expire the holds whose time has come (the sweep); returns how many expired."""
    session = uow.session
    await write_decided(uow)
    origin = Origin(SYSTEM)
    expired: dict[str, list[Any]] = {}
    for row in await store.due(session, now, limit=limit):
        if not await store.move(session, row.id, HoldState.HELD, HoldState.EXPIRED, now):
            continue  # confirmed or released meanwhile
        await _shift(uow, row.zone_id, UnitType(row.unit_type), -row.quantity, 0)
        expired.setdefault(row.allocation_id, []).append(row)
    for allocation_id, rows in expired.items():
        _stage(
            uow,
            ZoneHoldExpired(
                allocation_id=allocation_id,
                application_id=rows[0].application_id,
                units=_units(rows),
                expired_at=now,
            ),
            subject=rows[0].application_id,
            origin=origin,
            correlation_id=rows[0].correlation_id,
            now=now,
        )
    freed = {(r.zone_id, UnitType(r.unit_type)) for rows in expired.values() for r in rows}
    await wake(uow, freed, origin, now)
    return sum(len(rows) for rows in expired.values())


async def wake(
    uow: UnitOfWork, freed: Iterable[tuple[str, UnitType]], origin: Origin, now: datetime
) -> int:
    """Offer freed units to the head of each waitlist as new holds; returns how many woke."""
    session = uow.session
    await write_decided(uow)
    woken = 0
    for zone_id, unit_type in sorted(freed):
        waiting = await store.waitlist(session, zone_id, unit_type)
        free = await store.free_units(session, zone_id, unit_type)
        for row in waiting[: waking([r.quantity for r in waiting], free)]:
            if not await store.take(session, zone_id, unit_type, row.quantity):
                break  # taken concurrently: the head waits for the next release
            _took(uow, zone_id, unit_type, row.quantity, 0)
            expires_at = expiry(now, row.hold_seconds)
            if not await store.move(
                session, row.id, HoldState.WAITLISTED, HoldState.HELD, now, expires_at=expires_at
            ):
                await _shift(uow, zone_id, unit_type, -row.quantity, 0)
                continue
            _left_waitlist(uow, zone_id, unit_type, row.priority)
            woken += 1
            _stage(
                uow,
                ZoneHeld(
                    allocation_id=row.allocation_id,
                    application_id=row.application_id,
                    units=_units([row]),
                    expires_at=expires_at,
                    from_waitlist=True,
                    held_at=now,
                ),
                subject=row.application_id,
                origin=Origin(origin.actor, causation_id=origin.causation_id),
                correlation_id=row.correlation_id,
                now=now,
            )
    return woken


# --- administration ----------------------------------------------------------------------------


async def add_zone(uow: UnitOfWork, zone: Zone, now: datetime) -> None:
    """Add a zone to the catalogue; :class:`Conflict` when its id is taken."""
    if not await store.add_zone(uow.session, zone, now, seed=False):
        raise Conflict(f"zone {zone.id} exists already")


async def seed(uow: UnitOfWork, zones: Iterable[Zone], now: datetime) -> int:
    """Add the catalogue's zones that are not in the database yet; returns how many."""
    added = 0
    for zone in zones:
        added += await store.add_zone(uow.session, zone, now, seed=True)
    return added


async def resize(
    uow: UnitOfWork, zone_id: str, unit_type: UnitType, capacity: int, origin: Origin, now: datetime
) -> None:
    """Set a unit type's capacity; :class:`Conflict` below what is held and allocated."""
    await write_decided(uow)
    uow.memo.pop(COUNTERS_MEMO, None)  # a capacity changes: later holds read the rows again
    uow.memo.pop(DECIDED_MEMO, None)
    outcome = await store.resize(uow.session, zone_id, unit_type, capacity)
    if not outcome.exists:
        raise NotFound(f"zone {zone_id} not found")
    if not outcome.done:
        used = outcome.held + outcome.allocated
        raise Conflict(
            f"zone {zone_id} holds {outcome.held} and has allocated {outcome.allocated} "
            f"{UNIT_LABELS[unit_type]}; its capacity cannot go below {used}",
            extensions={"held": outcome.held, "allocated": outcome.allocated, "minimum": used},
        )
    await wake(uow, {(zone_id, unit_type)}, origin, now)


async def set_active(uow: UnitOfWork, zone_id: str, active: bool, now: datetime) -> None:
    """Deactivate (no new holds; existing ones stand) or reactivate a zone."""
    if not await store.set_active(uow.session, zone_id, active, now):
        raise NotFound(f"zone {zone_id} not found")
