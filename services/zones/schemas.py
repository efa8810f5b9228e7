"""Request and response bodies of the zones admin API."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from contracts.v1.common import Identifier, Sector, UnitType

#: A capacity: a whole number of units.
Units = Annotated[int, Field(ge=0, le=1_000_000)]

ZONE_EXAMPLE: JsonDict = {
    "id": "zone-gwadar-data-port",
    "name": "Gwadar Data Port",
    "city": "Gwadar",
    "sectors": ["fintech", "smart_governance"],
    "capacity": {"office_seat": 80, "gpu_rack_unit": 16},
}


class ZoneCreate(BaseModel):
    """A new zone for the catalogue."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [ZONE_EXAMPLE]})

    id: Identifier = Field(description="Zone id, unique.", examples=["zone-gwadar-data-port"])
    name: str = Field(
        min_length=1, max_length=200, description="Display name.", examples=["Gwadar Data Port"]
    )
    city: str = Field(min_length=1, max_length=100, description="City.", examples=["Gwadar"])
    sectors: list[Sector] = Field(
        default_factory=list,
        max_length=20,
        description="Sectors the zone suits; empty suits every sector.",
        examples=[["fintech"]],
    )
    capacity: dict[UnitType, Units] = Field(
        min_length=1,
        description="Capacity per unit type (office seats, m² of lab space, GPU rack units).",
        examples=[{"office_seat": 80, "gpu_rack_unit": 16}],
    )


class CapacityUpdate(BaseModel):
    """A unit type's new capacity."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"capacity": 64}]})

    capacity: int = Field(
        ge=0,
        le=1_000_000,
        description="The new capacity; refused (409) below what is held and allocated.",
        examples=[64],
    )


class UnitOccupancy(BaseModel):
    """Use of one unit type in one zone."""

    unit_type: UnitType = Field(description="The kind of space.", examples=["gpu_rack_unit"])
    capacity: int = Field(description="Units in all.", examples=[48])
    held: int = Field(description="Units held for offers not yet accepted.", examples=[4])
    allocated: int = Field(description="Units allocated.", examples=[20])
    free: int = Field(description="capacity - held - allocated.", examples=[24])
    waitlist: int = Field(description="Requests waiting for this unit type here.", examples=[0])


class ZoneView(BaseModel):
    """A zone with its occupancy."""

    id: str = Field(description="Zone id.", examples=["zone-north-tech-park"])
    name: str = Field(description="Display name.", examples=["North Tech Park"])
    city: str = Field(description="City.", examples=["Islamabad"])
    sectors: list[Sector] = Field(description="Sectors suited; empty: all.", examples=[["health"]])
    active: bool = Field(description="False once deactivated: no new holds.", examples=[True])
    occupancy: list[UnitOccupancy] = Field(description="Per unit type.")


class ZoneList(BaseModel):
    """Every zone of the catalogue."""

    zones: list[ZoneView] = Field(description="Zones in id order.")
