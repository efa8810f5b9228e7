"""The database store follows the allocation policy: any sequence of commands leaves the same
holds, states and counters in the database as in the in-memory :class:`ZoneBook`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from contracts.v1.common import UnitType
from contracts.v1.zones import ConfirmZoneHold, HoldZoneSpace, ReleaseZoneSpace
from services.kit.errors import BusinessRefusal, Conflict
from services.kit.uow import UnitOfWork
from services.zones import commands
from services.zones.domain import Refused, SpaceRequest, ZoneBook
from services.zones.main import MIGRATIONS
from tests.stateful import DatabaseMachine, TemplateDatabase
from tests.tiers import examples
from tests.zones.helpers import GPU, SEAT, SMALL, WORKFLOW, hold_command

START = datetime(2027, 1, 2, 9, 0, tzinfo=UTC)
ALLOCATIONS = [f"a{i}" for i in range(16)]

#: A hold: allocation, unit type, quantity, preferred zones, waitlist allowed, priority.
HoldStep = tuple[str, UnitType, int, list[str], bool, int]
HOLDS = st.tuples(
    st.sampled_from(ALLOCATIONS),
    st.sampled_from([GPU, SEAT]),
    st.integers(1, 3),
    st.lists(st.sampled_from(["z-a", "z-b"]), max_size=2, unique=True),
    st.booleans(),
    st.integers(0, 2),
)


class StoreAgainstPolicy(DatabaseMachine):
    template = TemplateDatabase(MIGRATIONS, lambda uow: commands.seed(uow, SMALL, START))

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.book = ZoneBook.of(SMALL)

    def _book_hold(self, step: HoldStep) -> HoldZoneSpace:
        """Apply a hold to the book; the same command for the database."""
        allocation, unit, quantity, prefer, wait, priority = step
        self.book.hold(
            allocation,
            [SpaceRequest(unit, quantity, tuple(prefer))],
            sector=None,
            now=self.now,
            hold_seconds=30,
            allow_waitlist=wait,
            priority=priority,
        )
        return hold_command(
            allocation,
            (unit, quantity, prefer),
            allow_waitlist=wait,
            priority=priority,
            hold_seconds=30,
        )

    def _book_release(self, allocation: str) -> ReleaseZoneSpace:
        self.book.release(allocation, self.now)
        return ReleaseZoneSpace(
            allocation_id=allocation,
            application_id=f"app-{allocation}",
            reason_code="administrative",
            reason="Released.",
        )

    @rule(step=HOLDS)
    def hold(self, step: HoldStep) -> None:
        command = self._book_hold(step)
        self.in_unit(
            lambda uow: commands.hold(uow, command, WORKFLOW, self.now, default_hold_seconds=30)
        )

    @rule(steps=st.lists(st.one_of(HOLDS, st.sampled_from(ALLOCATIONS)), min_size=1, max_size=8))
    def batch(self, steps: list[HoldStep | str]) -> None:
        """Holds and releases in one unit of work, as the consumer applies a batch: the holds'
        counters are locked and read once (``commands.preload``), then each runs in order."""
        planned = [
            self._book_release(step) if isinstance(step, str) else self._book_hold(step)
            for step in steps
        ]

        async def apply(uow: UnitOfWork) -> None:
            await commands.preload(
                uow, [c for c in planned if isinstance(c, HoldZoneSpace)], self.now
            )
            for command in planned:
                if isinstance(command, HoldZoneSpace):
                    await commands.hold(uow, command, WORKFLOW, self.now, default_hold_seconds=30)
                else:
                    await commands.release(uow, command, WORKFLOW, self.now)

        self.in_unit(apply)

    @rule(allocation=st.sampled_from(ALLOCATIONS))
    def confirm(self, allocation: str) -> None:
        try:
            self.book.confirm(allocation, self.now)
            refused = False
        except Refused:
            refused = True
        command = ConfirmZoneHold(allocation_id=allocation, application_id=f"app-{allocation}")
        try:
            self.in_unit(lambda uow: commands.confirm(uow, command, WORKFLOW, self.now))
            assert not refused
        except BusinessRefusal:
            assert refused

    @rule(allocation=st.sampled_from(ALLOCATIONS))
    def release(self, allocation: str) -> None:
        command = self._book_release(allocation)
        self.in_unit(lambda uow: commands.release(uow, command, WORKFLOW, self.now))

    @rule(seconds=st.integers(1, 40))
    def tick(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        self.book.expire(self.now)
        self.in_unit(lambda uow: commands.expire_due(uow, self.now))

    @rule(zone=st.sampled_from(["z-a", "z-b"]), capacity=st.integers(0, 8))
    def resize(self, zone: str, capacity: int) -> None:
        try:
            self.book.resize(zone, GPU, capacity, self.now)
            refused = False
        except Refused:
            refused = True
        try:
            self.in_unit(lambda uow: commands.resize(uow, zone, GPU, capacity, WORKFLOW, self.now))
            assert not refused
        except Conflict:
            assert refused

    @invariant()
    def same_records_and_counters(self) -> None:
        holds = {
            (a, u): (z, st_)
            for a, u, z, st_ in self.rows(
                "SELECT allocation_id, unit_type, zone_id, state FROM zone_holds"
            )
        }
        counters = {
            (z, u): (c, h, al)
            for z, u, c, h, al in self.rows(
                "SELECT zone_id, unit_type, capacity, held, allocated FROM zone_capacity"
            )
        }
        expected = {
            (a, u.value): (r.zone_id, r.state.value) for (a, u), r in self.book.records.items()
        }
        assert holds == expected
        assert counters == {
            (z, u.value): (c.capacity, c.held, c.allocated)
            for (z, u), c in self.book.counters.items()
        }


TestStoreAgainstPolicy = StoreAgainstPolicy.TestCase
TestStoreAgainstPolicy.settings = settings(
    max_examples=examples(40), stateful_step_count=30, deadline=None
)
