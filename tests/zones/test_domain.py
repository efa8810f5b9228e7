"""The allocation policy in memory: placement, holds, expiry, release and the waitlist."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from contracts.v1.common import Sector, UnitType, ZoneRefusalReason
from services.zones.domain import (
    CatalogueError,
    HoldState,
    Refused,
    SpaceRequest,
    Zone,
    ZoneBook,
    candidates,
    parse_catalogue,
)
from tests.tiers import examples

NOW = datetime(2027, 1, 2, 9, 0, tzinfo=UTC)
GPU = UnitType.GPU_RACK_UNIT
SEAT = UnitType.OFFICE_SEAT
CATALOGUE = Path(__file__).parents[2] / "services" / "zones" / "catalogue.toml"


def _zones() -> list[Zone]:
    return [
        Zone("z-a", "A", "Lahore", frozenset({Sector.HEALTH}), {GPU: 4, SEAT: 10}),
        Zone("z-b", "B", "Karachi", frozenset(), {GPU: 2}),
    ]


def test_shipped_catalogue_has_the_three_cities_and_the_example_zones() -> None:
    zones = {z.id: z for z in parse_catalogue(CATALOGUE.read_text())}
    assert {"Islamabad", "Lahore", "Karachi"} <= {z.city for z in zones.values()}
    assert {"zone-north-tech-park", "zone-harbour-ai-hub"} <= set(zones)
    for zone in zones.values():
        assert zone.capacity
        assert all(v >= 0 for v in zone.capacity.values())
    assert all(zones["zone-harbour-ai-hub"].offers(u) for u in UnitType)


@pytest.mark.parametrize(
    "text",
    ["", "[[zone]]\nid='x'\n", "[[zone]]\nid='x'\nname='X'\ncity='C'\ncapacity={sofa=1}\n", "=;"],
)
def test_a_wrong_catalogue_is_refused(text: str) -> None:
    with pytest.raises(CatalogueError):
        parse_catalogue(text)


def test_candidates_follow_preference_and_sector_fit() -> None:
    zones = {z.id: z for z in _zones()}
    assert candidates(SpaceRequest(GPU, 1, ("z-b", "z-a")), Sector.HEALTH, zones) == ["z-b", "z-a"]
    assert candidates(SpaceRequest(GPU, 1, ("z-a", "z-b")), Sector.FINTECH, zones) == ["z-b"]
    refusal = candidates(SpaceRequest(SEAT, 1, ("z-b",)), None, zones)
    assert not isinstance(refusal, list)
    assert refusal.code is ZoneRefusalReason.UNIT_TYPE_NOT_OFFERED
    unknown = candidates(SpaceRequest(SEAT, 1, ("z-x",)), None, zones)
    assert not isinstance(unknown, list)
    assert unknown.code is ZoneRefusalReason.UNKNOWN_ZONE


def test_first_preferred_zone_with_room_takes_the_hold() -> None:
    book = ZoneBook.of(_zones())
    placed = book.hold("a1", [SpaceRequest(GPU, 3, ("z-b", "z-a"))], sector=None, now=NOW,
                       hold_seconds=60)  # fmt: skip
    assert [(r.zone_id, r.state) for r in placed.records] == [("z-a", HoldState.HELD)]
    assert book.counters[("z-a", GPU)].held == 3


def test_a_command_is_all_or_nothing() -> None:
    book = ZoneBook.of(_zones())
    placed = book.hold(
        "a1",
        [SpaceRequest(SEAT, 5, ("z-a",)), SpaceRequest(GPU, 9, ("z-a",))],
        sector=None,
        now=NOW,
        hold_seconds=60,
        allow_waitlist=False,
    )
    assert placed.refusal is not None
    assert placed.refusal.code is ZoneRefusalReason.NO_CAPACITY
    assert book.records == {}
    assert book.counters[("z-a", SEAT)].held == 0


def test_repeating_a_command_changes_nothing() -> None:
    book = ZoneBook.of(_zones())
    request = [SpaceRequest(GPU, 1, ("z-b",))]
    book.hold("a1", request, sector=None, now=NOW, hold_seconds=60)
    again = book.hold("a1", request, sector=None, now=NOW, hold_seconds=60)
    assert again.repeated
    assert book.counters[("z-b", GPU)].held == 1


def test_expiry_frees_space_and_wakes_the_waitlist_by_priority_then_arrival() -> None:
    book = ZoneBook.of(_zones())
    book.hold("a1", [SpaceRequest(GPU, 2, ("z-b",))], sector=None, now=NOW, hold_seconds=60)
    book.hold("late", [SpaceRequest(GPU, 1, ("z-b",))], sector=None, now=NOW, hold_seconds=60)
    book.hold("early", [SpaceRequest(GPU, 1, ("z-b",))], sector=None, now=NOW, hold_seconds=60,
              priority=0)  # fmt: skip
    book.hold("vip", [SpaceRequest(GPU, 2, ("z-b",))], sector=None, now=NOW, hold_seconds=60,
              priority=5)  # fmt: skip
    assert [r.allocation_id for r in book.waitlist("z-b", GPU)] == ["vip", "late", "early"]
    expired = book.expire(NOW + timedelta(seconds=61))
    assert [r.allocation_id for r in expired] == ["a1"]
    assert book.records[("vip", GPU)].state is HoldState.HELD
    assert book.records[("late", GPU)].state is HoldState.WAITLISTED


def test_confirm_turns_holds_into_allocations_once() -> None:
    book = ZoneBook.of(_zones())
    book.hold("a1", [SpaceRequest(GPU, 2, ("z-b",))], sector=None, now=NOW, hold_seconds=60)
    assert [r.state for r in book.confirm("a1", NOW)] == [HoldState.ALLOCATED]
    assert book.confirm("a1", NOW) == []
    assert book.counters[("z-b", GPU)].allocated == 2
    with pytest.raises(Refused):
        book.confirm("nobody", NOW)


def test_resize_is_refused_below_use() -> None:
    book = ZoneBook.of(_zones())
    book.hold("a1", [SpaceRequest(GPU, 2, ("z-b",))], sector=None, now=NOW, hold_seconds=60)
    with pytest.raises(Refused):
        book.resize("z-b", GPU, 1, NOW)
    book.resize("z-b", GPU, 2, NOW)


ALLOCATIONS = [f"a{i}" for i in range(8)]


class AllocationMachine(RuleBasedStateMachine):
    """Any sequence of commands keeps the invariant and the waitlist's order."""

    def __init__(self) -> None:
        super().__init__()
        self.book = ZoneBook.of(_zones())
        self.now = NOW
        self.ever_held: set[tuple[str, UnitType]] = set()

    @rule(
        allocation=st.sampled_from(ALLOCATIONS),
        unit=st.sampled_from([GPU, SEAT]),
        quantity=st.integers(1, 5),
        prefer=st.lists(st.sampled_from(["z-a", "z-b"]), max_size=2, unique=True),
        wait=st.booleans(),
        priority=st.integers(0, 2),
    )
    def hold(
        self,
        allocation: str,
        unit: UnitType,
        quantity: int,
        prefer: list[str],
        wait: bool,
        priority: int,
    ) -> None:
        before = dict(self.book.records)
        placed = self.book.hold(
            allocation,
            [SpaceRequest(unit, quantity, tuple(prefer))],
            sector=None,
            now=self.now,
            hold_seconds=30,
            allow_waitlist=wait,
            priority=priority,
        )
        if placed.refusal is not None or placed.repeated:
            assert self.book.records == before

    @rule(allocation=st.sampled_from(ALLOCATIONS))
    def confirm(self, allocation: str) -> None:
        try:
            for record in self.book.confirm(allocation, self.now):
                assert record.state is HoldState.ALLOCATED
        except Refused:
            pass

    @rule(allocation=st.sampled_from(ALLOCATIONS))
    def release(self, allocation: str) -> None:
        self.book.release(allocation, self.now)
        for key, record in self.book.records.items():
            if key[0] == allocation:
                assert record.state in (HoldState.RELEASED, HoldState.EXPIRED)

    @rule(seconds=st.integers(1, 40))
    def tick(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        self.book.expire(self.now)

    @rule(zone=st.sampled_from(["z-a", "z-b"]), capacity=st.integers(0, 12))
    def resize(self, zone: str, capacity: int) -> None:
        if (zone, GPU) in self.book.counters:
            try:
                self.book.resize(zone, GPU, capacity, self.now)
            except Refused:
                counter = self.book.counters[(zone, GPU)]
                assert capacity < counter.held + counter.allocated

    @invariant()
    def counters_match_records_and_capacity(self) -> None:
        for (zone_id, unit), counter in self.book.counters.items():
            records = [
                r for r in self.book.records.values() if (r.zone_id, r.unit_type) == (zone_id, unit)
            ]
            assert counter.held == sum(r.quantity for r in records if r.state is HoldState.HELD)
            assert counter.allocated == sum(
                r.quantity for r in records if r.state is HoldState.ALLOCATED
            )
            assert 0 <= counter.held + counter.allocated <= counter.capacity

    @invariant()
    def a_waitlist_head_that_fits_is_never_left_waiting(self) -> None:
        for (zone_id, unit), counter in self.book.counters.items():
            waiting = self.book.waitlist(zone_id, unit)
            if waiting:
                assert waiting[0].quantity > counter.free

    @invariant()
    def no_hold_outlives_its_expiry(self) -> None:
        for record in self.book.records.values():
            if record.state is HoldState.HELD:
                assert record.expires_at is not None
                assert record.expires_at > self.now


TestAllocationMachine = AllocationMachine.TestCase
TestAllocationMachine.settings = settings(
    max_examples=examples(150), stateful_step_count=40, deadline=None
)
