"""Admins' pages: zones and their occupancy, budgets over time, the reviewer registry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from contracts.v1.desk import ReviewerRole
from services.kit.auth import Principal, Role
from services.portal import charts, web
from services.portal.clients import FieldProblem, Problem
from services.portal.clients.disbursement import DisbursementClient
from services.portal.clients.review import ReviewClient
from services.portal.clients.zones import ZonesClient

router = APIRouter(prefix="/admin")

Admin = Annotated[Principal, web.role_of(Role.ADMIN)]
Zones = Annotated[ZonesClient, Depends(web.zones)]
Money = Annotated[DisbursementClient, Depends(web.disbursement)]
Desk = Annotated[ReviewClient, Depends(web.review)]

#: The width of a zone's bars, in SVG units.
BAR_WIDTH = 480


def _lines(text: str) -> list[str]:
    """One entry per line (or comma), blanks dropped."""
    return [p.strip() for p in text.replace(",", "\n").splitlines() if p.strip()]


# --- zones ---------------------------------------------------------------------------------------


def _bars(zones: list[dict[str, Any]]) -> dict[tuple[str, str], list[charts.Segment]]:
    return {
        (zone["id"], unit["unit_type"]): charts.stacked_bar(
            {"allocated": unit["allocated"], "held": unit["held"], "free": unit["free"]},
            BAR_WIDTH,
        )
        for zone in zones
        for unit in zone["occupancy"]
    }


@router.get("")
async def home(request: Request, person: Admin) -> Response:
    return RedirectResponse("/admin/zones", status_code=303)


@router.get("/zones")
async def zones_page(request: Request, person: Admin, zones: Zones) -> Response:
    found = await zones.zones()
    return web.render(
        request, "admin/zones.html", zones=found, bars=_bars(found), bar_width=BAR_WIDTH
    )


@router.post("/zones/{zone_id}/capacity/{unit_type}", dependencies=[web.Csrf])
async def resize(
    request: Request,
    zone_id: str,
    unit_type: str,
    person: Admin,
    zones: Zones,
    capacity: Annotated[str, Form()] = "",
) -> Response:
    field = f"capacity-{zone_id}-{unit_type}"
    problem: Problem | None = None
    if not capacity.strip().isdigit():
        problem = Problem(
            status=422,
            title="Invalid capacity",
            detail="",
            errors=[FieldProblem(field, "Enter the new capacity as a whole number")],
        )
    else:
        try:
            await zones.resize(zone_id, unit_type, int(capacity))
        except Problem as refused:
            if refused.status not in (409, 422):
                raise
            problem = refused
    if problem is None:
        return RedirectResponse(f"/admin/zones?resized={zone_id}#{zone_id}", status_code=303)
    found = await zones.zones()
    message = problem.errors[0].message if problem.errors else problem.detail or problem.title
    return web.render(
        request,
        "admin/zones.html",
        status_code=problem.status,
        zones=found,
        bars=_bars(found),
        bar_width=BAR_WIDTH,
        errors={field: message},
        entered={field: capacity},
    )


# --- budgets -------------------------------------------------------------------------------------


@router.get("/budgets")
async def budgets_page(request: Request, person: Admin, money: Money) -> Response:
    budgets = await money.budgets()
    drawn = []
    for budget in budgets:
        ledger = await money.ledger(budget["id"])
        steps = charts.balances_over_time(ledger["entries"])
        drawn.append((budget, charts.time_chart(steps), len(ledger["entries"])))
    return web.render(request, "admin/budgets.html", budgets=drawn)


# --- the reviewer registry -----------------------------------------------------------------------


def _entry(
    name: str,
    roles: list[str],
    affiliations: str,
    ownership: str,
    active: bool,
    identifiers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "name": name.strip(),
        "roles": roles,
        "affiliations": _lines(affiliations),
        "ownership_interests": _lines(ownership),
        "declared_identifiers": identifiers or [],
        "active": active,
    }


def _registry_page(
    request: Request,
    reviewers: list[dict[str, Any]],
    *,
    editing: dict[str, Any] | None = None,
    problem: Problem | None = None,
    values: dict[str, Any] | None = None,
) -> Response:
    errors: dict[str, str] = {}
    for error in problem.errors if problem else []:
        name = error.field.lstrip("#/").split("/")[-1].split(".")[-1] or "name"
        errors.setdefault(name, error.message)
    if problem is not None and not errors:
        errors["reviewer_id" if editing is None else "name"] = problem.detail or problem.title
    return web.render(
        request,
        "admin/registry.html" if editing is None else "admin/reviewer.html",
        status_code=problem.status if problem else 200,
        reviewers=reviewers,
        reviewer=editing,
        roles=[r.value for r in ReviewerRole],
        errors=errors,
        values=values or {},
    )


@router.get("/reviewers")
async def registry(request: Request, person: Admin, desk: Desk) -> Response:
    return _registry_page(request, await desk.reviewers())


@router.post("/reviewers", dependencies=[web.Csrf])
async def add_reviewer(
    request: Request,
    person: Admin,
    desk: Desk,
    reviewer_id: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    roles: Annotated[list[str] | None, Form()] = None,
    affiliations: Annotated[str, Form()] = "",
    ownership_interests: Annotated[str, Form()] = "",
) -> Response:
    entry = {
        "reviewer_id": reviewer_id.strip(),
        **_entry(name, roles or [], affiliations, ownership_interests, True),
    }
    try:
        await desk.add_reviewer(entry)
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        values = {**entry, "affiliations": affiliations, "ownership_interests": ownership_interests}
        return _registry_page(request, await desk.reviewers(), problem=problem, values=values)
    return RedirectResponse(f"/admin/reviewers?added={entry['reviewer_id']}", status_code=303)


@router.get("/reviewers/{reviewer_id}")
async def reviewer_page(request: Request, reviewer_id: str, person: Admin, desk: Desk) -> Response:
    return _registry_page(request, [], editing=await desk.reviewer(reviewer_id))


@router.post("/reviewers/{reviewer_id}", dependencies=[web.Csrf])
async def edit_reviewer(
    request: Request,
    reviewer_id: str,
    person: Admin,
    desk: Desk,
    name: Annotated[str, Form()] = "",
    roles: Annotated[list[str] | None, Form()] = None,
    affiliations: Annotated[str, Form()] = "",
    ownership_interests: Annotated[str, Form()] = "",
    active: Annotated[str, Form()] = "",
) -> Response:
    current = await desk.reviewer(reviewer_id)
    entry = _entry(
        name,
        roles or [],
        affiliations,
        ownership_interests,
        active == "yes",
        current.get("declared_identifiers"),
    )
    try:
        await desk.replace_reviewer(reviewer_id, entry)
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        values = {**entry, "affiliations": affiliations, "ownership_interests": ownership_interests}
        return _registry_page(request, [], editing=current, problem=problem, values=values)
    return RedirectResponse(f"/admin/reviewers?saved={reviewer_id}", status_code=303)


@router.post("/reviewers/{reviewer_id}/deactivate", dependencies=[web.Csrf])
async def deactivate_reviewer(
    request: Request, reviewer_id: str, person: Admin, desk: Desk
) -> Response:
    current = await desk.reviewer(reviewer_id)
    entry: dict[str, Any] = {
        k: current[k]
        for k in ("name", "roles", "affiliations", "ownership_interests", "declared_identifiers")
        if k in current
    }
    await desk.replace_reviewer(reviewer_id, {**entry, "active": False})
    return RedirectResponse(f"/admin/reviewers?deactivated={reviewer_id}", status_code=303)
