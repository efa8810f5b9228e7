"""The zones admin API: add a zone, resize a unit type, deactivate a zone, read occupancy.

Routes are thin: they check the caller, call one use case of :mod:`services.zones.commands`
inside one unit of work and commit it once, or read through :mod:`services.zones.store`.
Admins change the catalogue; admins and auditors read it.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Request, Response

from contracts.envelope import utcnow
from contracts.v1.common import UnitType
from services.kit.auth import Principal, Role, require_roles
from services.kit.errors import NotFound
from services.kit.events import Origin
from services.kit.http import location, problem_responses, success_headers
from services.kit.runtime import Service
from services.zones import commands, store
from services.zones.domain import Zone
from services.zones.schemas import CapacityUpdate, UnitOccupancy, ZoneCreate, ZoneList, ZoneView

READERS: Final = (Role.ADMIN, Role.AUDITOR)

router = APIRouter(prefix="/v1/zones", tags=["zones"])

ZoneId = Annotated[
    str,
    Path(
        description="The zone id.",
        examples=["zone-north-tech-park"],
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
    ),
]
Admin = Annotated[Principal, require_roles(Role.ADMIN)]
Reader = Annotated[Principal, require_roles(*READERS)]


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return problem_responses(403, *statuses)


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def _view(request: Request, zone_id: str) -> ZoneView:
    async with _service(request).uow() as uow:
        views = await _views(uow.session, [zone_id])
    if not views:
        raise NotFound(f"zone {zone_id} not found")
    return views[0]


async def _views(session: Any, zone_ids: list[str] | None) -> list[ZoneView]:
    zones = await store.load_zones(session)
    use = await store.occupancy(session, zone_ids)
    by_zone: dict[str, list[UnitOccupancy]] = {}
    for o in use:
        by_zone.setdefault(o.zone_id, []).append(
            UnitOccupancy(
                unit_type=o.unit_type,
                capacity=o.capacity,
                held=o.held,
                allocated=o.allocated,
                free=o.free,
                waitlist=o.waitlist,
            )
        )
    return [
        ZoneView(
            id=z.id,
            name=z.name,
            city=z.city,
            sectors=sorted(z.sectors),
            active=z.active,
            occupancy=by_zone.get(z.id, []),
        )
        for z in zones.values()
        if zone_ids is None or z.id in zone_ids
    ]


@router.get("", summary="Every zone with its occupancy", responses=_responses())
async def list_zones(request: Request, _caller: Reader) -> ZoneList:
    """Capacity, held, allocated, free and waitlist length per zone and unit type."""
    async with _service(request).uow() as uow:
        return ZoneList(zones=await _views(uow.session, None))


@router.get("/{zone_id}", summary="One zone with its occupancy", responses=_responses(404))
async def get_zone(request: Request, zone_id: ZoneId, _caller: Reader) -> ZoneView:
    """Capacity, held, allocated, free and waitlist length per unit type."""
    return await _view(request, zone_id)


@router.post(
    "",
    status_code=201,
    summary="Add a zone",
    responses={**success_headers(201, location=True), **_responses(409)},
)
async def add_zone(
    request: Request, response: Response, body: ZoneCreate, _caller: Admin
) -> ZoneView:
    """Add a zone to the catalogue. 409 when the id is taken."""
    zone = Zone(
        id=body.id,
        name=body.name,
        city=body.city,
        sectors=frozenset(body.sectors),
        capacity=dict(body.capacity),
    )
    async with _service(request).uow() as uow:
        await commands.add_zone(uow, zone, utcnow())
        await uow.commit()
    response.headers["Location"] = location("/v1/zones", body.id)
    return await _view(request, body.id)


@router.put(
    "/{zone_id}/capacity/{unit_type}",
    summary="Resize a unit type",
    responses=_responses(404, 409),
)
async def resize(
    request: Request,
    zone_id: ZoneId,
    unit_type: Annotated[UnitType, Path(description="The kind of space.")],
    body: CapacityUpdate,
    caller: Admin,
) -> ZoneView:
    """Set the capacity of a unit type (adding it if the zone did not offer it).

    Refused (409, with what is held and allocated) below what is in use. Added capacity goes to
    the head of the waitlist as new holds.
    """
    async with _service(request).uow() as uow:
        await commands.resize(
            uow, zone_id, unit_type, body.capacity, Origin(caller.to_actor()), utcnow()
        )
        await uow.commit()
    return await _view(request, zone_id)


@router.post(
    "/{zone_id}/deactivate",
    summary="Deactivate a zone",
    responses=_responses(404),
)
async def deactivate(request: Request, zone_id: ZoneId, _caller: Admin) -> ZoneView:
    """No new holds in the zone; existing holds and allocations stand."""
    async with _service(request).uow() as uow:
        await commands.set_active(uow, zone_id, False, utcnow())
        await uow.commit()
    return await _view(request, zone_id)


@router.post(
    "/{zone_id}/activate",
    summary="Reactivate a zone",
    responses=_responses(404),
)
async def activate(request: Request, zone_id: ZoneId, _caller: Admin) -> ZoneView:
    """The zone takes new holds again."""
    async with _service(request).uow() as uow:
        await commands.set_active(uow, zone_id, True, utcnow())
        await uow.commit()
    return await _view(request, zone_id)
