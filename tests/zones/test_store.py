"""The zones use cases on a real database: holds, allocations, expiry, release, the waitlist
and the capacity invariant held by the database itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from contracts.v1.zones import (
    AllocateZoneSpace,
    ConfirmZoneHold,
    HoldZoneSpace,
    ReleaseZoneSpace,
)
from services.kit.errors import BusinessRefusal, Conflict, NotFound
from services.zones import commands
from tests.zones.helpers import GPU, SEAT, WORKFLOW, Db, hold_command, origin, zones_db

NOW = datetime(2027, 1, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Db]:
    async with zones_db(f"sqlite+aiosqlite:///{tmp_path / 'zones.db'}") as db:
        yield db


async def _hold(db: Db, *args: object, now: datetime = NOW, **kwargs: object) -> None:
    async with db.uow() as uow:
        command = hold_command(*args, **kwargs)  # type: ignore[arg-type]
        await commands.hold(uow, command, origin(), now, default_hold_seconds=60)
        await uow.commit()


def _confirm(allocation_id: str) -> ConfirmZoneHold:
    return ConfirmZoneHold(allocation_id=allocation_id, application_id=f"app-{allocation_id}")


async def test_a_hold_takes_the_first_preferred_zone_with_room(db: Db) -> None:
    await _hold(db, "a1", (GPU, 3, ["z-b", "z-a"]))
    assert await db.counter("z-a", GPU) == (4, 3, 0)
    [(kind, payload)] = await db.events()
    assert kind == "zone.held"
    assert payload["units"] == [{"zone_id": "z-a", "unit_type": "gpu_rack_unit", "quantity": 3}]
    assert payload["expires_at"] == "2027-01-02T09:01:00Z"


async def test_repeating_an_allocation_id_changes_nothing(db: Db) -> None:
    await _hold(db, "a1", (GPU, 1, ["z-b"]))
    await _hold(db, "a1", (GPU, 1, ["z-b"]))
    assert await db.counter("z-b", GPU) == (2, 1, 0)
    assert [k for k, _ in await db.events()] == ["zone.held"]


async def test_a_refused_request_holds_nothing_of_the_command(db: Db) -> None:
    await _hold(db, "a1", (SEAT, 5, ["z-a"]), (GPU, 3, ["z-b"]), allow_waitlist=False)
    assert await db.counter("z-a", SEAT) == (10, 0, 0)
    assert await db.states() == {}
    [(kind, payload)] = await db.events()
    assert kind == "zone.refused"
    assert payload["reason_code"] == "no_capacity"


async def test_unsuited_sector_and_unknown_zone_are_refused_with_the_reason(db: Db) -> None:
    from contracts.v1.common import Sector

    await _hold(db, "a1", (SEAT, 1, ["z-a"]), sector=Sector.FINTECH)
    await _hold(db, "a2", (GPU, 1, ["z-nowhere"]))
    reasons = [p["reason_code"] for _, p in await db.events()]
    assert reasons == ["invalid_request", "unknown_zone"]


async def test_allocate_holds_and_confirms_at_once(db: Db) -> None:
    command = AllocateZoneSpace(
        allocation_id="a1",
        application_id="app-a1",
        firm_id="ACME",
        requests=hold_command("a1", (GPU, 2, ["z-b"])).requests,
    )
    async with db.uow() as uow:
        await commands.hold(uow, command, origin(), NOW, default_hold_seconds=60)
        await uow.commit()
    assert await db.counter("z-b", GPU) == (2, 0, 2)
    assert [k for k, _ in await db.events()] == ["zone.allocated"]


async def test_confirm_turns_a_live_hold_into_an_allocation(db: Db) -> None:
    await _hold(db, "a1", (GPU, 2, ["z-b"]))
    async with db.uow() as uow:
        await commands.confirm(uow, _confirm("a1"), origin(), NOW + timedelta(seconds=30))
        await uow.commit()
    assert await db.counter("z-b", GPU) == (2, 0, 2)
    assert (await db.events())[-1][1]["complete"] is True


async def test_confirming_an_expired_hold_is_refused_and_changes_nothing(db: Db) -> None:
    await _hold(db, "a1", (GPU, 2, ["z-b"]))
    async with db.uow() as uow:
        with pytest.raises(BusinessRefusal, match="no live hold"):
            await commands.confirm(uow, _confirm("a1"), origin(), NOW + timedelta(seconds=61))
    assert await db.counter("z-b", GPU) == (2, 2, 0)


async def test_expiry_frees_units_and_wakes_the_waitlist_by_priority_then_arrival(db: Db) -> None:
    await _hold(db, "a1", (GPU, 2, ["z-b"]))
    await _hold(db, "late", (GPU, 1, ["z-b"]))
    await _hold(db, "later", (GPU, 1, ["z-b"]))
    await _hold(db, "vip", (GPU, 1, ["z-b"]), priority=5)
    waitlisted = [
        p["entries"][0]["position"] for k, p in await db.events() if k == "zone.waitlisted"
    ]
    assert waitlisted == [1, 2, 1]
    async with db.uow() as uow:
        expired = await commands.expire_due(uow, NOW + timedelta(seconds=61))
        await uow.commit()
    assert expired == 1
    states = await db.states()
    assert states["a1/gpu_rack_unit"] == "expired"
    assert states["vip/gpu_rack_unit"] == "held"
    assert states["late/gpu_rack_unit"] == "held"
    assert states["later/gpu_rack_unit"] == "waitlisted"
    woken = [
        p["allocation_id"] for k, p in await db.events() if k == "zone.held" and p["from_waitlist"]
    ]
    assert woken == ["vip", "late"]
    assert await db.counter("z-b", GPU) == (2, 2, 0)


async def test_release_gives_everything_back_and_wakes_the_head(db: Db) -> None:
    await _hold(db, "a1", (GPU, 2, ["z-b"]))
    await _hold(db, "w1", (GPU, 2, ["z-b"]))
    async with db.uow() as uow:
        await commands.release(
            uow,
            ReleaseZoneSpace(
                allocation_id="a1",
                application_id="app-a1",
                reason_code="application_withdrawn",
                reason="The firm withdrew.",
            ),
            origin(),
            NOW,
        )
        await uow.commit()
    assert (await db.states())["w1/gpu_rack_unit"] == "held"
    kinds = [k for k, _ in await db.events()]
    assert kinds[-2:] == ["zone.released", "zone.held"]


async def test_resize_is_refused_below_use_and_added_capacity_wakes_the_waitlist(db: Db) -> None:
    await _hold(db, "a1", (GPU, 2, ["z-b"]))
    await _hold(db, "w1", (GPU, 1, ["z-b"]))
    async with db.uow() as uow:
        with pytest.raises(Conflict, match="cannot go below 2"):
            await commands.resize(uow, "z-b", GPU, 1, WORKFLOW, NOW)
    async with db.uow() as uow:
        with pytest.raises(NotFound):
            await commands.resize(uow, "z-nowhere", GPU, 1, WORKFLOW, NOW)
    async with db.uow() as uow:
        await commands.resize(uow, "z-b", GPU, 3, WORKFLOW, NOW)
        await uow.commit()
    assert await db.counter("z-b", GPU) == (3, 3, 0)
    assert (await db.states())["w1/gpu_rack_unit"] == "held"


async def test_a_deactivated_zone_takes_no_new_holds_and_keeps_existing_ones(db: Db) -> None:
    await _hold(db, "a1", (GPU, 1, ["z-b"]))
    async with db.uow() as uow:
        await commands.set_active(uow, "z-b", False, NOW)
        await uow.commit()
    await _hold(db, "a2", (GPU, 1, ["z-b"]))
    assert (await db.events())[-1][0] == "zone.refused"
    assert (await db.states())["a1/gpu_rack_unit"] == "held"


async def test_the_database_itself_refuses_over_allocation(db: Db) -> None:
    async with db.engine.begin() as conn:
        with pytest.raises(IntegrityError):
            await conn.execute(
                sa.text("UPDATE zone_capacity SET allocated = capacity + 1 WHERE zone_id = 'z-b'")
            )


async def _batch(db: Db, *steps: HoldZoneSpace | ReleaseZoneSpace) -> None:
    """Commands applied as the consumer applies a batch: the holds preloaded, then in order."""
    async with db.uow() as uow:
        await commands.preload(uow, [c for c in steps if isinstance(c, HoldZoneSpace)], NOW)
        for command in steps:
            if isinstance(command, HoldZoneSpace):
                await commands.hold(uow, command, origin(), NOW, default_hold_seconds=60)
            else:
                await commands.release(uow, command, origin(), NOW)
        await uow.commit()


def _release(allocation_id: str) -> ReleaseZoneSpace:
    return ReleaseZoneSpace(
        allocation_id=allocation_id,
        application_id=f"app-{allocation_id}",
        reason_code="administrative",
        reason="Released.",
    )


async def test_a_batch_gives_the_same_positions_as_one_command_at_a_time(tmp_path: Path) -> None:
    steps = [
        hold_command("a1", (GPU, 2, ["z-b"])),
        hold_command("late", (GPU, 1, ["z-b"])),
        hold_command("vip", (GPU, 1, ["z-b"]), priority=5),
        hold_command("later", (GPU, 1, ["z-b"])),
        hold_command("vip2", (GPU, 1, ["z-b"]), priority=5),
        hold_command("mid", (GPU, 1, ["z-b"]), priority=2),
        hold_command("last", (GPU, 1, ["z-b"])),
    ]
    seen = []
    for name, batched in (("one", False), ("batch", True)):
        async with zones_db(f"sqlite+aiosqlite:///{tmp_path / name}.db") as db:
            if batched:
                await _batch(db, *steps)
            else:
                for command in steps:
                    async with db.uow() as uow:
                        await commands.hold(uow, command, origin(), NOW, default_hold_seconds=60)
                        await uow.commit()
            positions = {
                p["allocation_id"]: p["entries"][0]["position"]
                for k, p in await db.events()
                if k == "zone.waitlisted"
            }
            seen.append((positions, await db.states(), await db.counter("z-b", GPU)))
    assert seen[0] == seen[1]
    positions, states, counter = seen[1]
    assert positions == {"late": 1, "vip": 1, "later": 3, "vip2": 2, "mid": 3, "last": 6}
    assert counter == (2, 2, 0)
    assert states["a1/gpu_rack_unit"] == "held"
    assert sum(state == "waitlisted" for state in states.values()) == 6


async def test_a_hold_after_a_release_in_one_batch_sees_the_waitlist_the_release_woke(
    db: Db,
) -> None:
    await _hold(db, "a1", (GPU, 2, ["z-b"]))
    await _hold(db, "waiting", (GPU, 1, ["z-b"]))
    # The release wakes `waiting` (1 of the 2 units); nobody waits now, so `next` takes the
    # other unit rather than queueing behind an entry that left the waitlist.
    await _batch(db, _release("a1"), hold_command("next", (GPU, 1, ["z-b"])))
    states = await db.states()
    assert states["waiting/gpu_rack_unit"] == "held"
    assert states["next/gpu_rack_unit"] == "held"
    assert await db.counter("z-b", GPU) == (2, 2, 0)
