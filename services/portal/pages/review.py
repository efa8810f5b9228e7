"""Reviewers' and supervisors' pages: the inbox, a task, its decision, escalations."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from contracts.v1.common import Decision, FastTrackItem, ReviewStage
from services.kit.auth import Principal, Role
from services.portal import language, web
from services.portal.clients import Problem
from services.portal.clients.applications import ApplicationsClient
from services.portal.clients.review import ReviewClient

router = APIRouter()

STAFF = frozenset({Role.REVIEWER, Role.SUPERVISOR})


class NotStaff(Exception):
    """A firm, auditor or admin opened a reviewer page."""


def staff(person: web.Person) -> Principal:
    if person.role not in STAFF:
        raise NotStaff
    return person


Staff = Annotated[Principal, Depends(staff)]
Desk = Annotated[ReviewClient, Depends(web.review)]
Applications = Annotated[ApplicationsClient, Depends(web.applications)]


def _stage(value: str) -> str | None:
    return value if value in {s.value for s in ReviewStage} else None


@router.get("/inbox")
async def inbox(
    request: Request, person: Staff, desk: Desk, stage: Annotated[str, Query()] = ""
) -> Response:
    chosen = _stage(stage)
    params: dict[str, Any] = {"limit": 100}
    if chosen:
        params["stage"] = chosen
    page = await desk.inbox(**params)
    return web.render(
        request,
        "review/inbox.html",
        tasks=page["items"],
        stage=chosen or "",
        stages=[s.value for s in ReviewStage],
        heading="Your tasks",
    )


@router.get("/supervisor")
async def escalations(request: Request, person: Staff, desk: Desk) -> Response:
    if person.role is not Role.SUPERVISOR:
        return RedirectResponse("/inbox", status_code=303)
    page = await desk.escalations(limit=100)
    return web.render(
        request,
        "review/inbox.html",
        tasks=page["items"],
        stage="",
        stages=[],
        heading="Escalated tasks",
    )


async def _task_page(
    request: Request,
    task_id: str,
    desk: ReviewClient,
    applications: ApplicationsClient,
    *,
    refusal: str | None = None,
    problem: Problem | None = None,
    comment: str = "",
    chosen: str = "",
    declined: dict[str, str] | None = None,
) -> Response:
    task = await desk.task(task_id)
    try:
        application: dict[str, Any] | None = await applications.get(task["application_id"])
    except Problem:
        application = None
    earlier = [
        entry
        for entry in (application or {}).get("timeline", [])
        if entry.get("event") == "review.decision_recorded"
    ]
    kind = "milestone" if task["stage"] == ReviewStage.MILESTONE.value else "review"
    award = (application or {}).get("award") or {}
    milestones = [m for m in award.get("milestones", []) if kind == "milestone"]
    fast_track = (
        ((application or {}).get("content") or {}).get("incentives", {}).get("fast_track", [])
        if task["stage"] == ReviewStage.COMMITTEE.value
        else []
    )
    person = web.current(request)
    reassignable = (
        person is not None
        and person.role is Role.SUPERVISOR
        and task["status"] == "open"
        and task.get("escalation") is not None
        and task["reviewer_id"] != person.sub
    )
    reviewers = (
        [
            r
            for r in await desk.reviewers()
            if r.get("active", True)
            and r["reviewer_id"] != task["reviewer_id"]
            and "supervisor" not in r.get("roles", [])
        ]
        if reassignable
        else []
    )
    return web.render(
        request,
        "review/task.html",
        reassignable=reassignable,
        reviewers=reviewers,
        chosen=chosen,
        status_code=(problem.status if problem is not None else 200),
        task=task,
        application=application,
        earlier=earlier,
        refusal=refusal,
        comment=comment,
        choices=language.DECISION_CHOICE[kind],
        milestones=milestones,
        fast_track=fast_track,
        declined=declined or {},
    )


@router.get("/tasks/{task_id}")
async def task_page(
    request: Request, task_id: str, person: Staff, desk: Desk, applications: Applications
) -> Response:
    return await _task_page(request, task_id, desk, applications)


@router.post("/tasks/{task_id}/decision", dependencies=[web.Csrf])
async def decide(
    request: Request,
    task_id: str,
    person: Staff,
    desk: Desk,
    applications: Applications,
    decision: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
    requested_fields: Annotated[str, Form()] = "",
    fast_track_decline: Annotated[list[str] | None, Form()] = None,
) -> Response:
    return await _decide(
        request,
        task_id,
        desk,
        applications,
        decision,
        comment,
        requested_fields,
        fast_track_decline or [],
        in_place=False,
    )


@router.post("/tasks/{task_id}/supervisor-decision", dependencies=[web.Csrf])
async def decide_in_place(
    request: Request,
    task_id: str,
    person: Staff,
    desk: Desk,
    applications: Applications,
    decision: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
    requested_fields: Annotated[str, Form()] = "",
    fast_track_decline: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """A supervisor decides an escalated task in its reviewer's place."""
    if person.role is not Role.SUPERVISOR:
        return RedirectResponse(f"/tasks/{task_id}", status_code=303)
    return await _decide(
        request,
        task_id,
        desk,
        applications,
        decision,
        comment,
        requested_fields,
        fast_track_decline or [],
        in_place=True,
    )


async def _decide(
    request: Request,
    task_id: str,
    desk: ReviewClient,
    applications: ApplicationsClient,
    decision: str,
    comment: str,
    requested_fields: str,
    fast_track_decline: list[str],
    *,
    in_place: bool,
) -> Response:
    fields = [f.strip() for f in requested_fields.replace("\n", ",").split(",") if f.strip()]
    form = await request.form()
    declined = {
        item: str(form.get(f"fast_track_reason_{item}", "")).strip()
        for item in fast_track_decline
        if item in {i.value for i in FastTrackItem}
    }
    said = None
    if decision not in {d.value for d in Decision} or not comment.strip():
        said = "Choose a decision and write a comment."
    elif any(not reason for reason in declined.values()):
        said = "Say why you do not approve each fast-track item you decline."
    if said is not None:
        return await _task_page(
            request,
            task_id,
            desk,
            applications,
            refusal=said,
            problem=Problem(status=422, title="Invalid decision", detail=""),
            comment=comment,
            declined=declined,
        )
    try:
        await desk.decide(
            task_id,
            decision,
            comment.strip(),
            fields,
            [{"item": item, "reason": reason} for item, reason in declined.items()],
            in_place=in_place,
        )
    except Problem as problem:
        if problem.status not in (403, 404, 409, 422, 503):
            raise
        said = language.refusal(
            problem.reason, problem.detail, language.conflicts_in(problem.detail)
        )
        return await _task_page(
            request,
            task_id,
            desk,
            applications,
            refusal=said,
            problem=problem,
            comment=comment,
            declined=declined,
        )
    return RedirectResponse(f"/tasks/{task_id}?decided=1", status_code=303)


@router.post("/tasks/{task_id}/reassign", dependencies=[web.Csrf])
async def reassign(
    request: Request,
    task_id: str,
    person: Staff,
    desk: Desk,
    applications: Applications,
    reviewer_id: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """A supervisor gives an escalated task to another reviewer; refusals in plain words."""
    if not reviewer_id or not reason.strip():
        return await _task_page(
            request,
            task_id,
            desk,
            applications,
            refusal="Choose a reviewer and say why the task moves.",
            problem=Problem(status=422, title="Invalid reassignment", detail=""),
            chosen=reviewer_id,
        )
    try:
        moved = await desk.reassign(task_id, reviewer_id, reason.strip())
    except Problem as problem:
        if problem.status not in (403, 404, 409, 422, 503):
            raise
        said = language.reassignment_refusal(
            problem.reason, problem.detail, reviewer_id, language.conflicts_in(problem.detail)
        )
        return await _task_page(
            request, task_id, desk, applications, refusal=said, problem=problem, chosen=reviewer_id
        )
    return RedirectResponse(f"/supervisor?reassigned={moved['reviewer_id']}", status_code=303)
