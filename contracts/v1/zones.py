"""Technology-zone commands and events: allocation requests, allocations, waitlist and releases.

Every message names an ``allocation_id`` chosen by the requester; the zones service treats it as
the idempotency key of the request, so a retried ``zone.allocate`` never allocates twice.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from contracts.envelope import UtcDatetime
from contracts.v1.common import (
    PAYLOAD_CONFIG,
    ZONE_SPACE_REQUEST_EXAMPLE,
    ZONE_UNITS_EXAMPLE,
    CompensationReason,
    Identifier,
    LongText,
    Sector,
    UnitType,
    ZoneRefusalReason,
    ZoneSpaceRequest,
    ZoneUnits,
)

_APP_ID = "app_01HZX3Q8W6"
_ALLOCATION_ID = "alloc_app_01HZX3Q8W6"

WAITLIST_ENTRY_EXAMPLE: JsonDict = {
    "zone_id": "zone-harbour-ai-hub",
    "unit_type": "gpu_rack_unit",
    "quantity": 2,
    "position": 3,
}


class WaitlistEntry(BaseModel):
    """Units that could not be allocated now, queued in one zone."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG, json_schema_extra={"examples": [WAITLIST_ENTRY_EXAMPLE]}
    )

    zone_id: Identifier = Field(
        description="The zone whose waitlist holds the entry.", examples=["zone-harbour-ai-hub"]
    )
    unit_type: UnitType = Field(description="The kind of space.", examples=["gpu_rack_unit"])
    quantity: int = Field(ge=1, le=10_000, description="Units waited for.", examples=[2])
    position: int = Field(
        ge=1, description="Position in that zone's waitlist, 1 = next.", examples=[3]
    )


class AllocateZoneSpace(BaseModel):
    """Command ``zone.allocate``: allocate technology-zone space to an approved application."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "allocation_id": _ALLOCATION_ID,
                    "application_id": _APP_ID,
                    "firm_id": "ACME",
                    "requests": [ZONE_SPACE_REQUEST_EXAMPLE],
                    "allow_waitlist": True,
                }
            ]
        },
    )

    allocation_id: Identifier = Field(
        description="Idempotency key of the request; every later zone message refers to it.",
        examples=[_ALLOCATION_ID],
    )
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    firm_id: Identifier = Field(description="The firm receiving the space.", examples=["ACME"])
    requests: list[ZoneSpaceRequest] = Field(
        min_length=1,
        max_length=10,
        description="The space to allocate, one entry per unit type.",
        examples=[[ZONE_SPACE_REQUEST_EXAMPLE]],
    )
    allow_waitlist: bool = Field(
        default=True,
        description="Queue what cannot be allocated now instead of refusing it.",
        examples=[True],
    )


class ReleaseZoneSpace(BaseModel):
    """Command ``zone.release``: release everything held or waitlisted for an allocation.

    This is a saga compensation; releasing an allocation that holds nothing is a no-op that
    still answers with ``zone.released``.
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "allocation_id": _ALLOCATION_ID,
                    "application_id": _APP_ID,
                    "reason_code": "budget_exhausted",
                    "reason": "The program budget cannot cover the award.",
                }
            ]
        },
    )

    allocation_id: Identifier = Field(
        description="The allocation to release.", examples=[_ALLOCATION_ID]
    )
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    reason_code: CompensationReason = Field(
        description="Why the space is released.",
        examples=["budget_exhausted", "application_withdrawn"],
    )
    reason: LongText = Field(
        description="Human-readable reason.",
        examples=["The program budget cannot cover the award."],
    )


class ZoneAllocated(BaseModel):
    """Event ``zone.allocated``: units were allocated (all of a request, or part of it when the
    rest was waitlisted)."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "allocation_id": _ALLOCATION_ID,
                    "application_id": _APP_ID,
                    "units": [ZONE_UNITS_EXAMPLE],
                    "complete": True,
                    "allocated_at": "2027-01-02T11:00:03Z",
                }
            ]
        },
    )

    allocation_id: Identifier = Field(
        description="The allocation request answered.", examples=[_ALLOCATION_ID]
    )
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    units: list[ZoneUnits] = Field(
        min_length=1,
        max_length=100,
        description="The units allocated, zone by zone.",
        examples=[[ZONE_UNITS_EXAMPLE]],
    )
    complete: bool = Field(
        description="True when the whole request is allocated; false when part is waitlisted.",
        examples=[True, False],
    )
    allocated_at: UtcDatetime = Field(
        description="When the units were allocated, in UTC.", examples=["2027-01-02T11:00:03Z"]
    )


class ZoneWaitlisted(BaseModel):
    """Event ``zone.waitlisted``: units of a request could not be allocated and were queued."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "allocation_id": _ALLOCATION_ID,
                    "application_id": _APP_ID,
                    "entries": [WAITLIST_ENTRY_EXAMPLE],
                    "waitlisted_at": "2027-01-02T11:00:03Z",
                }
            ]
        },
    )

    allocation_id: Identifier = Field(
        description="The allocation request answered.", examples=[_ALLOCATION_ID]
    )
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    entries: list[WaitlistEntry] = Field(
        min_length=1,
        max_length=100,
        description="What was queued, and where.",
        examples=[[WAITLIST_ENTRY_EXAMPLE]],
    )
    waitlisted_at: UtcDatetime = Field(
        description="When the units were queued, in UTC.", examples=["2027-01-02T11:00:03Z"]
    )


class ZoneReleased(BaseModel):
    """Event ``zone.released``: an allocation's units and waitlist entries were given back."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "allocation_id": _ALLOCATION_ID,
                    "application_id": _APP_ID,
                    "units": [ZONE_UNITS_EXAMPLE],
                    "reason_code": "budget_exhausted",
                    "reason": "The program budget cannot cover the award.",
                    "released_at": "2027-01-02T11:00:09Z",
                }
            ]
        },
    )

    allocation_id: Identifier = Field(
        description="The allocation released.", examples=[_ALLOCATION_ID]
    )
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    units: list[ZoneUnits] = Field(
        default_factory=list,
        max_length=100,
        description="The units given back to zone capacity; empty when nothing was held.",
        examples=[[ZONE_UNITS_EXAMPLE], []],
    )
    reason_code: CompensationReason = Field(
        description="Why the space was released.", examples=["budget_exhausted"]
    )
    reason: LongText = Field(
        description="Human-readable reason.",
        examples=["The program budget cannot cover the award."],
    )
    released_at: UtcDatetime = Field(
        description="When the space was released, in UTC.", examples=["2027-01-02T11:00:09Z"]
    )


class ZoneRefused(BaseModel):
    """Event ``zone.refused``: an allocation request was refused and nothing was held."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "allocation_id": _ALLOCATION_ID,
                    "application_id": _APP_ID,
                    "reason_code": "no_capacity",
                    "reason": "No GPU rack units are free and the request allows no waitlist.",
                    "refused_at": "2027-01-02T11:00:03Z",
                }
            ]
        },
    )

    allocation_id: Identifier = Field(
        description="The allocation request refused.", examples=[_ALLOCATION_ID]
    )
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    reason_code: ZoneRefusalReason = Field(
        description="Why it was refused.", examples=["no_capacity", "unknown_zone"]
    )
    reason: LongText = Field(
        description="Human-readable reason.",
        examples=["No GPU rack units are free and the request allows no waitlist."],
    )
    refused_at: UtcDatetime = Field(
        description="When it was refused, in UTC.", examples=["2027-01-02T11:00:03Z"]
    )


# --- holds: two-phase allocation (hold, then confirm, release or expiry) -------------------------

_EXPIRES_AT = "2027-01-16T11:00:03Z"


class HoldZoneSpace(BaseModel):
    """Command ``zone.hold``: hold technology-zone space for an offer, for a limited time.

    The hold is the first phase of an allocation: ``zone.confirm`` turns it into an
    allocation, ``zone.release`` gives it back, and it expires on its own at ``expires_at``.
    Space that is not free now waits on the zone's waitlist (unless ``allow_waitlist`` is
    false) and becomes a hold, announced by ``zone.held``, when it is freed.
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "allocation_id": _ALLOCATION_ID,
                    "application_id": _APP_ID,
                    "firm_id": "ACME",
                    "sector": "health",
                    "requests": [ZONE_SPACE_REQUEST_EXAMPLE],
                    "allow_waitlist": True,
                    "hold_seconds": 1_209_600,
                    "priority": 0,
                }
            ]
        },
    )

    allocation_id: Identifier = Field(
        description="Idempotency key of the request; every later zone message refers to it.",
        examples=[_ALLOCATION_ID],
    )
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    firm_id: Identifier = Field(description="The firm the space is held for.", examples=["ACME"])
    sector: Sector | None = Field(
        default=None,
        description="The firm's sector; only zones that suit it are considered. Null: any zone.",
        examples=["health", None],
    )
    requests: list[ZoneSpaceRequest] = Field(
        min_length=1,
        max_length=10,
        description="The space to hold, one entry per unit type.",
        examples=[[ZONE_SPACE_REQUEST_EXAMPLE]],
    )
    allow_waitlist: bool = Field(
        default=True,
        description="Queue what cannot be held now instead of refusing the whole request.",
        examples=[True],
    )
    hold_seconds: int | None = Field(
        default=None,
        ge=1,
        le=31_536_000,
        description="How long the hold lasts before it expires; null: the service's default.",
        examples=[1_209_600, None],
    )
    priority: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Program priority on the waitlist: higher first, equal ones in arrival order.",
        examples=[0, 10],
    )


class ConfirmZoneHold(BaseModel):
    """Command ``zone.confirm``: turn an allocation's holds into allocations (offer accepted).

    Answered by ``zone.allocated``. Confirming an allocation that holds nothing (its hold
    expired or was released) is refused and dead-lettered with the reason.
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [{"allocation_id": _ALLOCATION_ID, "application_id": _APP_ID}]
        },
    )

    allocation_id: Identifier = Field(
        description="The allocation whose holds are confirmed.", examples=[_ALLOCATION_ID]
    )
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )


class ZoneHeld(BaseModel):
    """Event ``zone.held``: units are held for an allocation until ``expires_at``."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "allocation_id": _ALLOCATION_ID,
                    "application_id": _APP_ID,
                    "units": [ZONE_UNITS_EXAMPLE],
                    "expires_at": _EXPIRES_AT,
                    "from_waitlist": False,
                    "held_at": "2027-01-02T11:00:03Z",
                }
            ]
        },
    )

    allocation_id: Identifier = Field(
        description="The allocation request answered.", examples=[_ALLOCATION_ID]
    )
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    units: list[ZoneUnits] = Field(
        min_length=1,
        max_length=100,
        description="The units held, zone by zone.",
        examples=[[ZONE_UNITS_EXAMPLE]],
    )
    expires_at: UtcDatetime = Field(
        description="When the hold lapses unless it is confirmed, in UTC.",
        examples=[_EXPIRES_AT],
    )
    from_waitlist: bool = Field(
        description="True when freed units went to this request from the waitlist.",
        examples=[False, True],
    )
    held_at: UtcDatetime = Field(
        description="When the units were held, in UTC.", examples=["2027-01-02T11:00:03Z"]
    )


class ZoneHoldExpired(BaseModel):
    """Event ``zone.hold_expired``: a hold was not confirmed in time; its units are free again."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "allocation_id": _ALLOCATION_ID,
                    "application_id": _APP_ID,
                    "units": [ZONE_UNITS_EXAMPLE],
                    "expired_at": _EXPIRES_AT,
                }
            ]
        },
    )

    allocation_id: Identifier = Field(
        description="The allocation whose hold lapsed.", examples=[_ALLOCATION_ID]
    )
    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.", examples=[_APP_ID]
    )
    units: list[ZoneUnits] = Field(
        min_length=1,
        max_length=100,
        description="The units given back to zone capacity.",
        examples=[[ZONE_UNITS_EXAMPLE]],
    )
    expired_at: UtcDatetime = Field(
        description="When the hold lapsed, in UTC.", examples=[_EXPIRES_AT]
    )
