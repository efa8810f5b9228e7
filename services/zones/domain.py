"""The zones rules, free of I/O: the catalogue, the allocation policy, holds and the waitlist.

The store applies these rules to the database, where the capacity invariant
(``held + allocated <= capacity`` per zone and unit type) is enforced by a CHECK constraint on
a counter row changed by one conditional UPDATE; :class:`ZoneBook` applies them in memory, for
tests and as the executable statement of the policy.

The policy, in order:

1. **Candidates.** A request names zones in order of preference (empty means every zone, in
   catalogue order). A candidate must exist, be active, offer the unit type and suit the
   firm's sector (a zone that lists no sectors suits all). No candidate at all refuses the
   request, with the reason of the most preferred zone.
   A zone too small for the whole quantity is no candidate either.
2. **Free space.** The first candidate with enough free units, and nobody waiting there for
   that unit type with the same or a higher program priority, gets a *hold*: a pending
   reservation with an expiry.
3. **Waitlist.** Otherwise the request waits on its first candidate's waitlist, or is refused
   (``no_capacity``) when the request allows no waitlist. A command is all or nothing: when one
   of its requests is refused, nothing of it is held.
4. **Holds** end once: confirmed (an allocation), released, or expired. Released and expired
   units, and capacity added by a resize, go to the head of the waitlist as a new hold:
   highest program priority first, then first come, first served. The head is never skipped
   for a smaller request behind it.
5. **Idempotency.** An allocation id is answered once (held, waitlisted or refused), and each
   (allocation id, unit type) has one hold record; repeating a command changes nothing.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from contracts.v1.common import Sector, UnitType, ZoneRefusalReason

#: Unit names for plain-language answers.
UNIT_LABELS: Mapping[UnitType, str] = {
    UnitType.OFFICE_SEAT: "office seats",
    UnitType.LAB_SPACE: "m² of lab space",
    UnitType.GPU_RACK_UNIT: "GPU rack units",
}


class HoldState(StrEnum):
    """Where one (allocation id, unit type) stands."""

    WAITLISTED = "waitlisted"
    HELD = "held"
    ALLOCATED = "allocated"
    RELEASED = "released"
    EXPIRED = "expired"


#: The lifecycle: a waitlist entry becomes a hold; a hold is confirmed, released or expires;
#: an allocation can still be released (a cancelled award gives its space back).
TRANSITIONS: Mapping[HoldState, frozenset[HoldState]] = {
    HoldState.WAITLISTED: frozenset({HoldState.HELD, HoldState.RELEASED}),
    HoldState.HELD: frozenset({HoldState.ALLOCATED, HoldState.RELEASED, HoldState.EXPIRED}),
    HoldState.ALLOCATED: frozenset({HoldState.RELEASED}),
    HoldState.RELEASED: frozenset(),
    HoldState.EXPIRED: frozenset(),
}

#: States that count against capacity, and in which counter.
COUNTED: Mapping[HoldState, str] = {HoldState.HELD: "held", HoldState.ALLOCATED: "allocated"}


def can_move(current: HoldState, target: HoldState) -> bool:
    """Whether the lifecycle allows ``current`` → ``target``."""
    return target in TRANSITIONS[current]


def counter_change(current: HoldState | None, target: HoldState, quantity: int) -> tuple[int, int]:
    """(change of held, change of allocated) when a record of ``quantity`` units moves."""
    held = allocated = 0
    if current is HoldState.HELD:
        held -= quantity
    elif current is HoldState.ALLOCATED:
        allocated -= quantity
    if target is HoldState.HELD:
        held += quantity
    elif target is HoldState.ALLOCATED:
        allocated += quantity
    return held, allocated


def waitlist_order(priority: int, sequence: int) -> tuple[int, int]:
    """Sort key of a waitlist entry: higher program priority first, then arrival order."""
    return (-priority, sequence)


def may_take_before(priority: int, waiting: Iterable[int]) -> bool:
    """Whether a newcomer of ``priority`` may take free units ahead of the waiting entries.

    Only when every entry already waiting has a lower program priority: among equals it is
    first come, first served.
    """
    return all(other < priority for other in waiting)


def waitlist_position(priority: int, waiting: Mapping[int, int]) -> int:
    """The position (1 = next) of a newcomer of ``priority`` joining a waitlist that holds
    ``waiting[p]`` entries of each priority ``p``: behind every entry of its priority or above
    (:func:`waitlist_order`: they all arrived earlier)."""
    return 1 + sum(count for other, count in waiting.items() if other >= priority)


def expiry(now: datetime, hold_seconds: int) -> datetime:
    """When a hold taken at ``now`` lapses."""
    return now + timedelta(seconds=hold_seconds)


# --- catalogue ----------------------------------------------------------------------------------


class CatalogueError(ValueError):
    """A catalogue file that does not describe zones correctly."""


@dataclass(frozen=True)
class Zone:
    """A technology zone: where it is, what it suits and what it offers."""

    id: str
    name: str
    city: str
    #: The sectors the zone suits; empty means every sector.
    sectors: frozenset[Sector]
    capacity: Mapping[UnitType, int]
    active: bool = True

    def suits(self, sector: Sector | None) -> bool:
        """Whether a firm of ``sector`` fits here (no sector given fits everywhere)."""
        return sector is None or not self.sectors or sector in self.sectors

    def offers(self, unit_type: UnitType) -> bool:
        """Whether the zone has that kind of space at all."""
        return unit_type in self.capacity


def parse_catalogue(text: str) -> list[Zone]:
    """Zones from the TOML catalogue (``[[zone]]`` tables); :class:`CatalogueError` if wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"catalogue is not TOML: {exc}") from exc
    zones: list[Zone] = []
    seen: set[str] = set()
    for index, raw in enumerate(data.get("zone", [])):
        where = f"zone #{index + 1}"
        try:
            zone_id = str(raw["id"])
            zone = Zone(
                id=zone_id,
                name=str(raw["name"]),
                city=str(raw["city"]),
                sectors=frozenset(Sector(s) for s in raw.get("sectors", [])),
                capacity={UnitType(k): int(v) for k, v in raw["capacity"].items()},
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise CatalogueError(f"{where}: {exc!r}") from exc
        if zone_id in seen:
            raise CatalogueError(f"{where}: duplicate id {zone_id}")
        if any(v < 0 for v in zone.capacity.values()):
            raise CatalogueError(f"{where}: negative capacity")
        seen.add(zone_id)
        zones.append(zone)
    if not zones:
        raise CatalogueError("catalogue lists no zones")
    return zones


# --- the allocation policy ---------------------------------------------------------------------


@dataclass(frozen=True)
class SpaceRequest:
    """A quantity of one unit type, with zones in order of preference."""

    unit_type: UnitType
    quantity: int
    preferred_zones: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refusal:
    """Why a request cannot be placed anywhere."""

    code: ZoneRefusalReason
    reason: str


def candidates(
    request: SpaceRequest, sector: Sector | None, zones: Mapping[str, Zone]
) -> list[str] | Refusal:
    """The zones that may take ``request``, most preferred first, or why there are none."""
    wanted = list(request.preferred_zones) or list(zones)
    label = UNIT_LABELS[request.unit_type]
    fit: list[str] = []
    first_problem: Refusal | None = None
    for zone_id in dict.fromkeys(wanted):
        zone = zones.get(zone_id)
        problem: Refusal | None = None
        if zone is None:
            problem = Refusal(ZoneRefusalReason.UNKNOWN_ZONE, f"There is no zone {zone_id}.")
        elif not zone.active:
            problem = Refusal(ZoneRefusalReason.UNKNOWN_ZONE, f"{zone.name} takes no new requests.")
        elif not zone.offers(request.unit_type):
            problem = Refusal(
                ZoneRefusalReason.UNIT_TYPE_NOT_OFFERED, f"{zone.name} offers no {label}."
            )
        elif zone.capacity[request.unit_type] < request.quantity:
            problem = Refusal(
                ZoneRefusalReason.NO_CAPACITY,
                f"{zone.name} has {zone.capacity[request.unit_type]} {label} in all.",
            )
        elif not zone.suits(sector):
            problem = Refusal(
                ZoneRefusalReason.INVALID_REQUEST,
                f"{zone.name} does not host the {sector} sector.",
            )
        if problem is None:
            fit.append(zone_id)
        elif first_problem is None:
            first_problem = problem
    if fit:
        return fit
    return first_problem or Refusal(ZoneRefusalReason.UNKNOWN_ZONE, "No zone is available.")


def no_capacity(request: SpaceRequest) -> Refusal:
    """The refusal of a request that found no free space and may not wait."""
    return Refusal(
        ZoneRefusalReason.NO_CAPACITY,
        f"No zone has {request.quantity} {UNIT_LABELS[request.unit_type]} free, "
        "and the request does not wait.",
    )


# --- the policy in memory -----------------------------------------------------------------------


@dataclass
class Counter:
    """Capacity and use of one unit type in one zone."""

    capacity: int
    held: int = 0
    allocated: int = 0

    @property
    def free(self) -> int:
        return self.capacity - self.held - self.allocated


@dataclass(frozen=True)
class HoldRecord:
    """One (allocation id, unit type): its zone, quantity and state."""

    allocation_id: str
    unit_type: UnitType
    zone_id: str
    quantity: int
    state: HoldState
    sequence: int
    priority: int = 0
    hold_seconds: int = 0
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Placed:
    """The outcome of one hold command: records that changed, or the refusal."""

    records: tuple[HoldRecord, ...] = ()
    refusal: Refusal | None = None
    repeated: bool = False


class Refused(Exception):
    """A command that cannot be applied in the records' current state."""


@dataclass
class ZoneBook:
    """The allocation policy applied in memory: the reference the database store follows."""

    zones: dict[str, Zone]
    counters: dict[tuple[str, UnitType], Counter] = field(default_factory=dict)
    records: dict[tuple[str, UnitType], HoldRecord] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)
    _sequence: int = 0

    @classmethod
    def of(cls, zones: Iterable[Zone]) -> ZoneBook:
        book = cls(zones={z.id: z for z in zones})
        for zone in book.zones.values():
            for unit_type, capacity in zone.capacity.items():
                book.counters[(zone.id, unit_type)] = Counter(capacity)
        return book

    def waitlist(self, zone_id: str, unit_type: UnitType) -> list[HoldRecord]:
        """The zone's waitlist for ``unit_type``, head first."""
        waiting = [
            r
            for r in self.records.values()
            if r.state is HoldState.WAITLISTED and r.zone_id == zone_id and r.unit_type == unit_type
        ]
        return sorted(waiting, key=lambda r: waitlist_order(r.priority, r.sequence))

    def _try_take(self, zone_id: str, unit_type: UnitType, quantity: int) -> bool:
        counter = self.counters[(zone_id, unit_type)]
        if counter.free < quantity:
            return False
        counter.held += quantity
        return True

    def _move(self, record: HoldRecord, target: HoldState, **changes: object) -> HoldRecord:
        if not can_move(record.state, target):
            raise Refused(f"{record.allocation_id}: {record.state} cannot become {target}")
        held, allocated = counter_change(record.state, target, record.quantity)
        counter = self.counters[(record.zone_id, record.unit_type)]
        counter.held += held
        counter.allocated += allocated
        moved = replace(record, state=target, **changes)  # type: ignore[arg-type]
        self.records[(record.allocation_id, record.unit_type)] = moved
        return moved

    def hold(
        self,
        allocation_id: str,
        requests: Sequence[SpaceRequest],
        *,
        sector: Sector | None,
        now: datetime,
        hold_seconds: int,
        allow_waitlist: bool = True,
        priority: int = 0,
    ) -> Placed:
        """Place every request of one command, all or nothing."""
        if allocation_id in self.answered:
            return Placed(repeated=True)
        self.answered.add(allocation_id)
        placed: list[HoldRecord] = []
        for request in requests:
            choice = candidates(request, sector, self.zones)
            refusal: Refusal | None = choice if isinstance(choice, Refusal) else None
            record: HoldRecord | None = None
            if isinstance(choice, list):
                for zone_id in choice:
                    waiting = self.waitlist(zone_id, request.unit_type)
                    if not may_take_before(priority, (w.priority for w in waiting)):
                        continue
                    if self._try_take(zone_id, request.unit_type, request.quantity):
                        record = self._record(
                            allocation_id, request, zone_id, HoldState.HELD, priority,
                            hold_seconds, expiry(now, hold_seconds),
                        )  # fmt: skip
                        break
                if record is None and allow_waitlist:
                    record = self._record(
                        allocation_id, request, choice[0], HoldState.WAITLISTED, priority,
                        hold_seconds, None,
                    )  # fmt: skip
                elif record is None:
                    refusal = no_capacity(request)
            if refusal is not None:
                for done in placed:  # all or nothing
                    if done.state is HoldState.HELD:
                        self.counters[(done.zone_id, done.unit_type)].held -= done.quantity
                    del self.records[(done.allocation_id, done.unit_type)]
                return Placed(refusal=refusal)
            assert record is not None
            self.records[(allocation_id, request.unit_type)] = record
            placed.append(record)
        return Placed(records=tuple(placed))

    def _record(
        self,
        allocation_id: str,
        request: SpaceRequest,
        zone_id: str,
        state: HoldState,
        priority: int,
        hold_seconds: int,
        expires_at: datetime | None,
    ) -> HoldRecord:
        self._sequence += 1
        return HoldRecord(
            allocation_id=allocation_id,
            unit_type=request.unit_type,
            zone_id=zone_id,
            quantity=request.quantity,
            state=state,
            sequence=self._sequence,
            priority=priority,
            hold_seconds=hold_seconds,
            expires_at=expires_at,
        )

    def _of(self, allocation_id: str) -> list[HoldRecord]:
        return [r for r in self.records.values() if r.allocation_id == allocation_id]

    def confirm(self, allocation_id: str, now: datetime) -> list[HoldRecord]:
        """Turn the allocation's holds into allocations; :class:`Refused` if none is held."""
        del now
        records = self._of(allocation_id)
        held = [r for r in records if r.state is HoldState.HELD]
        if not held:
            if records and all(r.state is HoldState.ALLOCATED for r in records):
                return []  # repeated: already confirmed
            raise Refused(f"{allocation_id} holds nothing to confirm")
        return [self._move(r, HoldState.ALLOCATED) for r in held]

    def release(self, allocation_id: str, now: datetime) -> list[HoldRecord]:
        """Give back everything of the allocation; wakes the waitlists it frees."""
        released = [
            self._move(r, HoldState.RELEASED)
            for r in self._of(allocation_id)
            if can_move(r.state, HoldState.RELEASED)
        ]
        self._wake({(r.zone_id, r.unit_type) for r in released}, now)
        return released

    def expire(self, now: datetime) -> list[HoldRecord]:
        """Expire every hold due at ``now``; wakes the waitlists it frees."""
        due = [
            r
            for r in self.records.values()
            if r.state is HoldState.HELD and r.expires_at is not None and r.expires_at <= now
        ]
        expired = [self._move(r, HoldState.EXPIRED) for r in due]
        self._wake({(r.zone_id, r.unit_type) for r in expired}, now)
        return expired

    def resize(self, zone_id: str, unit_type: UnitType, capacity: int, now: datetime) -> None:
        """Set a capacity; :class:`Refused` below what is held and allocated."""
        counter = self.counters[(zone_id, unit_type)]
        if capacity < counter.held + counter.allocated:
            raise Refused(f"{zone_id} uses {counter.held + counter.allocated} {unit_type}")
        counter.capacity = capacity
        zone = self.zones[zone_id]
        self.zones[zone_id] = replace(zone, capacity={**zone.capacity, unit_type: capacity})
        self._wake({(zone_id, unit_type)}, now)

    def _wake(self, freed: Iterable[tuple[str, UnitType]], now: datetime) -> list[HoldRecord]:
        woken: list[HoldRecord] = []
        for zone_id, unit_type in sorted(freed):
            waiting = self.waitlist(zone_id, unit_type)
            free = self.counters[(zone_id, unit_type)].free
            for record in waiting[: waking([r.quantity for r in waiting], free)]:
                taken = self._try_take(zone_id, unit_type, record.quantity)
                assert taken
                moved = replace(
                    record, state=HoldState.HELD, expires_at=expiry(now, record.hold_seconds)
                )
                self.records[(record.allocation_id, record.unit_type)] = moved
                woken.append(moved)
        return woken


def waking(quantities: Sequence[int], free: int) -> int:
    """How many waitlist entries, head first, freed units turn into holds.

    Entries are served in order while they fit; the first that does not fit stops the rest, so
    a large request is never starved by smaller ones behind it.
    """
    served = 0
    for quantity in quantities:
        if quantity > free:
            break
        free -= quantity
        served += 1
    return served
